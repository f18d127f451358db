"""The GraphiQL IDE page (the browser loads GraphiQL itself from a CDN)."""
from __future__ import annotations

GRAPHIQL_VERSION = "3.8.3"
REACT_VERSION = "18.3.1"

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>lowcode GraphiQL</title>
  <style>body {{ margin: 0; height: 100vh; }} #graphiql {{ height: 100vh; }}</style>
  <link rel="stylesheet" href="https://unpkg.com/graphiql@{graphiql}/graphiql.min.css">
</head>
<body>
  <div id="graphiql">Loading GraphiQL&hellip;</div>
  <script crossorigin src="https://unpkg.com/react@{react}/umd/react.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/react-dom@{react}/umd/react-dom.production.min.js"></script>
  <script crossorigin src="https://unpkg.com/graphiql@{graphiql}/graphiql.min.js"></script>
  <script>
    const fetcher = GraphiQL.createFetcher({{ url: window.location.pathname }});
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {{
        fetcher,
        defaultEditorToolsVisibility: "headers",
        headers: JSON.stringify({{ Authorization: "Bearer <paste the API token>" }}, null, 2),
        shouldPersistHeaders: true,
      }})
    );
  </script>
</body>
</html>
"""


def graphiql_page() -> str:
    return _PAGE.format(graphiql=GRAPHIQL_VERSION, react=REACT_VERSION)
