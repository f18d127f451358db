"""``lowcode notify``: operators deliver a test notification to users by username."""
from __future__ import annotations

import json

from click.testing import CliRunner
from lowcode.metadata import SYSTEM_ACTOR as S
from lowcode.runtime import Runtime
from lowcode.server.cli import main


def test_notify_delivers_to_the_named_users_and_refuses_unknown_names(database_url):
    rt = Runtime.connect(database_url).install()
    try:
        ids = {name: rt.security.create_user(S, {"username": name})["id"] for name in ("ann", "bob")}
        runner = CliRunner()
        result = runner.invoke(main, ["--database-url", database_url, "notify", "ann", "bob", "--title", "Test", "--body", "Hello"],
                               catch_exceptions=False)
        assert (result.exit_code, result.output) == (0, "Delivered to 2 user(s).\n")
        for name in ("ann", "bob"):
            actor = rt.security.authenticate(rt.security.issue_token(S, "t", user_id=ids[name])["token"])
            [only] = rt.notifications.inbox(actor).notifications
            assert (only.kind, only.title, only.body) == ("announcement", "Test", "Hello")

        result = runner.invoke(main, ["--database-url", database_url, "notify", "ann", "nobody", "--title", "Test"])
        assert result.exit_code == 1
        assert json.loads(result.stderr)["error"]["code"] == "NOT_FOUND"
        actor = rt.security.authenticate(rt.security.issue_token(S, "t", user_id=ids["ann"])["token"])
        assert rt.notifications.unread_count(actor) == 1
    finally:
        rt.close()
