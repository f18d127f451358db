"""The ``lowcode`` command: set up a database, define objects and fields, read and write records.

Every command goes through the same services as any other transport; errors are printed as
structured JSON on stderr with exit status 1, never as a stack trace.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import click

from ..metadata.actors import SYSTEM_ACTOR
from ..metadata.errors import FieldError, LowcodeError, NotFound, ValidationFailed
from ..runtime import Runtime
from ..runtime.security.credentials import password_problem
from ..runtime.security.service import ADMINISTRATOR

DEFAULT_DATABASE_URL = "sqlite:///lowcode.db"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _print(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))


def _parse_value(text: str) -> Any:
    """``12.5`` and ``["a"]`` are JSON; anything that is not JSON is a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _assignments(pairs: tuple[str, ...]) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"'{pair}' is not name=value", param_hint="VALUES")
        values[name] = _parse_value(text)
    return values


@contextmanager
def _runtime(ctx: click.Context) -> Iterator[Runtime]:
    runtime = Runtime.connect(ctx.obj["database_url"], ctx.obj["redis_url"])
    try:
        yield runtime.install()
    except LowcodeError as error:
        click.echo(json.dumps({"error": error.as_dict()}, indent=2, ensure_ascii=False, default=_json_default), err=True)
        sys.exit(1)
    finally:
        runtime.close()


@click.group()
@click.option("--database-url", envvar="LOWCODE_DATABASE_URL", default=DEFAULT_DATABASE_URL, show_default=True,
              help="SQLAlchemy URL: sqlite:///file.db or postgresql://user:password@host/db.")
@click.option("--redis-url", envvar="LOWCODE_REDIS_URL", default=None, help="redis://host:port/db (optional).")
@click.pass_context
def main(ctx: click.Context, database_url: str, redis_url: str | None) -> None:
    """lowcode: a metadata-driven low-code platform."""
    ctx.obj = {"database_url": database_url, "redis_url": redis_url}


@main.command("init")
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the platform tables and system objects (safe to run again)."""
    with _runtime(ctx) as rt:
        click.echo(f"Initialised {ctx.obj['database_url']} at metadata version {rt.catalog().version}.")


# -- objects ---------------------------------------------------------------------------------
@main.group("object")
def object_group() -> None:
    """Define objects."""


@object_group.command("create")
@click.argument("api_name")
@click.option("--label", required=True)
@click.option("--plural-api-name")
@click.option("--plural-label")
@click.option("--description", default="")
@click.pass_context
def object_create(ctx, api_name, label, plural_api_name, plural_label, description):
    """Create an object and its table."""
    definition = {"api_name": api_name, "label": label, "description": description}
    if plural_api_name:
        definition["plural_api_name"] = plural_api_name
    if plural_label:
        definition["plural_label"] = plural_label
    with _runtime(ctx) as rt:
        _print(rt.metadata.create_object(SYSTEM_ACTOR, definition).as_dict())


@object_group.command("list")
@click.pass_context
def object_list(ctx):
    """List objects with their field counts."""
    with _runtime(ctx) as rt:
        for obj in sorted(rt.catalog().objects.values(), key=lambda o: o.api_name):
            click.echo(f"{obj.api_name:<24} {obj.label:<24} {len(obj.fields)} fields")


@object_group.command("show")
@click.argument("api_name")
@click.pass_context
def object_show(ctx, api_name):
    """Show an object's definition."""
    with _runtime(ctx) as rt:
        _print(rt.catalog().object(api_name).as_dict())


@object_group.command("delete")
@click.argument("api_name")
@click.pass_context
def object_delete(ctx, api_name):
    """Delete an object, its table and its records."""
    with _runtime(ctx) as rt:
        rt.metadata.delete_object(SYSTEM_ACTOR, api_name)
        click.echo(f"Deleted {api_name}.")


# -- fields ----------------------------------------------------------------------------------
@main.group("field")
def field_group() -> None:
    """Define fields."""


@field_group.command("add")
@click.argument("object_name")
@click.argument("api_name")
@click.option("--type", "type_", required=True, help="text, integer, decimal, currency, picklist, lookup, ...")
@click.option("--label", required=True)
@click.option("--required", is_flag=True)
@click.option("--unique", is_flag=True)
@click.option("--indexed", is_flag=True)
@click.option("--tracked", is_flag=True)
@click.option("--default", "default", default=None, help="A JSON value (or plain text).")
@click.option("--option", "options", multiple=True, help="name=value, the value in JSON, e.g. max_length=80.")
@click.pass_context
def field_add(ctx, object_name, api_name, type_, label, required, unique, indexed, tracked, default, options):
    """Add a field (and its column) to an object."""
    definition = {
        "api_name": api_name, "label": label, "type": type_, "required": required, "unique": unique,
        "indexed": indexed, "tracked": tracked, "options": _assignments(options),
    }
    if default is not None:
        definition["default"] = _parse_value(default)
    with _runtime(ctx) as rt:
        _print(rt.metadata.create_field(SYSTEM_ACTOR, object_name, definition).as_dict())


@field_group.command("delete")
@click.argument("object_name")
@click.argument("api_name")
@click.pass_context
def field_delete(ctx, object_name, api_name):
    """Drop a field and its column."""
    with _runtime(ctx) as rt:
        rt.metadata.delete_field(SYSTEM_ACTOR, object_name, api_name)
        click.echo(f"Deleted {object_name}.{api_name}.")


# -- records ---------------------------------------------------------------------------------
@main.group("record")
def record_group() -> None:
    """Read and write records."""


@record_group.command("create")
@click.argument("object_name")
@click.argument("values", nargs=-1)
@click.pass_context
def record_create(ctx, object_name, values):
    """Create a record from name=value pairs (values in JSON or plain text)."""
    with _runtime(ctx) as rt:
        _print(rt.records.create(SYSTEM_ACTOR, object_name, _assignments(values)))


@record_group.command("update")
@click.argument("object_name")
@click.argument("record_id")
@click.argument("values", nargs=-1)
@click.option("--expected-version", type=int, default=None)
@click.pass_context
def record_update(ctx, object_name, record_id, values, expected_version):
    """Change some fields of a record."""
    with _runtime(ctx) as rt:
        _print(rt.records.update(SYSTEM_ACTOR, object_name, record_id, _assignments(values), expected_version=expected_version))


@record_group.command("get")
@click.argument("object_name")
@click.argument("record_id")
@click.pass_context
def record_get(ctx, object_name, record_id):
    with _runtime(ctx) as rt:
        _print(rt.records.get(SYSTEM_ACTOR, object_name, record_id))


@record_group.command("delete")
@click.argument("object_name")
@click.argument("record_id")
@click.pass_context
def record_delete(ctx, object_name, record_id):
    """Move a record to the recycle bin."""
    with _runtime(ctx) as rt:
        rt.records.delete(SYSTEM_ACTOR, object_name, record_id)
        click.echo(f"Moved {record_id} to the recycle bin.")


@record_group.command("list")
@click.argument("object_name")
@click.option("--filter", "filter_", default=None, help='JSON, e.g. {"amount": {"gte": 100}}')
@click.option("--order-by", multiple=True, help="A field name, '-' prefixed for descending.")
@click.option("--first", default=20, show_default=True)
@click.option("--after", default=None, help="The cursor printed after the previous page.")
@click.option("--fields", default=None, help="Comma-separated field names.")
@click.pass_context
def record_list(ctx, object_name, filter_, order_by, first, after, fields):
    """List records as a table, with the total and the cursor of the next page."""
    try:
        filter_value = json.loads(filter_) if filter_ else None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--filter") from None
    with _runtime(ctx) as rt:
        obj = rt.catalog().object(object_name)
        names = fields.split(",") if fields else [f.api_name for f in obj.fields]
        page = rt.records.query(SYSTEM_ACTOR, object_name, filter=filter_value, order_by=list(order_by),
                                first=first, after=after, fields=names, total=True)
        _table(["id", *names], page.records)
        more = f"; next page: --after {page.end_cursor}" if page.has_next_page else ""
        click.echo(f"{len(page.records)} of {page.total_count} record(s){more}")


def _table(columns: list[str], records: list[dict[str, Any]]) -> None:
    def text(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, (list, dict)):
            return json.dumps(value, ensure_ascii=False, default=_json_default)
        return str(value)

    rows = [[text(r.get(c)) for c in columns] for r in records]
    widths = [min(40, max([len(c), *(len(row[i]) for row in rows)])) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        click.echo("  ".join(cell[:w].ljust(w) for cell, w in zip(row, widths)))


# -- users -----------------------------------------------------------------------------------
ROOT_UNIT_NAME = "Organization"
"""The root org unit ``user create --admin`` makes when the tree is still empty."""


@main.group("user")
def user_group() -> None:
    """Manage users: create the first administrator, reset passwords, issue API tokens."""


def _read_password(from_stdin: bool, prompt: str = "Password") -> str:
    """The new password: the whole of standard input (one trailing newline removed) with
    ``--password-stdin``, else typed twice without echo (re-asked while it is too short)."""
    if from_stdin:
        text = click.get_text_stream("stdin").read()
        for ending in ("\r\n", "\n"):
            if text.endswith(ending):
                return text[: -len(ending)]
        return text

    def acceptable(value: str) -> str:
        if problem := password_problem(value):
            raise click.UsageError(f"The password {problem}.")
        return value

    return click.prompt(prompt, hide_input=True, confirmation_prompt=True, value_proc=acceptable)


def _user(rt: Runtime, username: str) -> dict[str, Any]:
    """The live user named ``username`` (NOT_FOUND otherwise)."""
    found = rt.records.query(SYSTEM_ACTOR, "user", filter={"username": {"eq": username}}, first=1).records
    if not found:
        raise NotFound(f"There is no user named '{username}'.", field="username")
    return found[0]


def _all(rt: Runtime, object_name: str, **query: Any) -> list[dict[str, Any]]:
    return rt.records.every(SYSTEM_ACTOR, object_name, **query)


def _ambiguous_unit(message: str) -> ValidationFailed:
    return ValidationFailed.of([FieldError("AMBIGUOUS", "unit", message)])


def _admin_unit(rt: Runtime, unit: str | None) -> dict[str, Any] | None:
    """The org unit where ``--admin`` gives the administrator role: ``--unit`` (an id or a unique
    name), else the only root unit; ``None`` when the tree is empty (a root is made then). With
    several roots the choice is the caller's: ``--unit`` is required."""
    if unit is not None:
        try:
            by_id = {"id": {"eq": str(uuid.UUID(unit))}}
        except ValueError:
            by_id = None
        found = _all(rt, "org_unit", filter=by_id or {"name": {"eq": unit}}, order_by=["path"])
        if not found:
            raise NotFound(f"There is no org unit with id or name '{unit}'.", field="unit")
        if len(found) > 1:
            raise _ambiguous_unit(f"{len(found)} org units are named '{unit}'; give the id of one of them: "
                                  + ", ".join(f"{u['id']} ({u['path']})" for u in found))
        return found[0]
    roots = _all(rt, "org_unit", filter={"parent": {"is_null": True}}, order_by=["name"])
    if len(roots) > 1:
        raise _ambiguous_unit(f"The org tree has {len(roots)} root units; choose the administrator's unit with --unit: "
                              + ", ".join(f"{u['name']} ({u['id']})" for u in roots))
    return roots[0] if roots else None


@user_group.command("create")
@click.argument("username")
@click.option("--email", default=None)
@click.option("--full-name", default=None)
@click.option("--admin", is_flag=True,
              help="Also give the user the built-in administrator role, in the root org unit (made, named "
                   f"'{ROOT_UNIT_NAME}', when the tree is empty; with several roots name one with --unit).")
@click.option("--unit", default=None, help="With --admin: the org unit (id or unique name) of the administrator role.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@click.pass_context
def user_create(ctx, username, email, full_name, admin, unit, password_stdin):
    """Create a user who signs in with a password (typed twice unless --password-stdin)."""
    if unit is not None and not admin:
        raise click.UsageError("--unit only says where --admin gives the administrator role; add --admin.")
    values = {"username": username}
    if email is not None:
        values["email"] = email
    if full_name is not None:
        values["full_name"] = full_name
    with _runtime(ctx) as rt:
        # Everything that can be refused is checked before the password is asked for.
        target = _admin_unit(rt, unit) if admin else None
        if rt.records.query(SYSTEM_ACTOR, "user", filter={"username": {"eq": username}}, first=1).records:
            raise ValidationFailed.of([FieldError("DUPLICATE_VALUE", "username", "is already used by another record; it must be unique")])
        password = _read_password(password_stdin)
        user = rt.security.create_user(SYSTEM_ACTOR, values, password)
        result = {"id": user["id"], "username": user["username"], "email": user["email"], "full_name": user["full_name"],
                  "active": user["active"], "memberships": []}
        if admin:
            if target is None:
                target = rt.security.create_unit(SYSTEM_ACTOR, ROOT_UNIT_NAME)
            rt.security.add_membership(SYSTEM_ACTOR, user["id"], target["id"], ADMINISTRATOR)
            result["memberships"].append({"unit_id": target["id"], "unit": target["name"], "role": ADMINISTRATOR})
        _print(result)


@user_group.command("list")
@click.pass_context
def user_list(ctx):
    """List the users with their roles (role@unit)."""
    with _runtime(ctx) as rt:
        users = _all(rt, "user", order_by=["username"], fields=["username", "full_name", "email", "active"])
        units = {u["id"]: u["name"] for u in _all(rt, "org_unit", fields=["name"])}
        roles: dict[str, list[str]] = {}
        for m in rt.security.memberships(SYSTEM_ACTOR):
            roles.setdefault(m["user_id"], []).append(f"{m['role']}@{units.get(m['unit_id'], m['unit_id'])}")
        rows = [{**u, "active": "yes" if u["active"] else "no", "roles": ", ".join(roles.get(u["id"], []))} for u in users]
        _table(["username", "full_name", "email", "active", "roles", "id"], rows)
        click.echo(f"{len(rows)} user(s)")


@user_group.command("password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input instead of prompting.")
@click.pass_context
def user_password(ctx, username, password_stdin):
    """Set a user's password (a reset: the current one is not needed); their sessions end."""
    with _runtime(ctx) as rt:
        user = _user(rt, username)
        rt.security.set_password(SYSTEM_ACTOR, user["id"], _read_password(password_stdin, "New password"))
        click.echo(f"Changed the password of {username}; their signed-in sessions were ended.")


@user_group.command("token")
@click.argument("username")
@click.option("--name", required=True, help="What the token is for (shown in token lists).")
@click.option("--expires-in-days", type=click.IntRange(min=1), default=None, help="Without it the token does not expire.")
@click.pass_context
def user_token(ctx, username, name, expires_in_days):
    """Issue an API token for a user: printed once, on standard output alone (for scripts); it acts
    as that user with their roles."""
    expires_at = datetime.now(timezone.utc) + timedelta(days=expires_in_days) if expires_in_days else None
    with _runtime(ctx) as rt:
        user = _user(rt, username)
        issued = rt.security.issue_token(SYSTEM_ACTOR, name, expires_at=expires_at, user_id=user["id"])
        until = f"expires {issued['expires_at'].isoformat()}" if issued["expires_at"] else "does not expire"
        click.echo(f"API token '{issued['name']}' for {username} (id {issued['id']}, {until}); "
                   "it is not shown again: store it now.", err=True)
        click.echo(issued["token"])


# -- apps ------------------------------------------------------------------------------------
@main.group("app")
def app_group() -> None:
    """Install, upgrade and uninstall apps (folders under apps/ with a manifest)."""


@app_group.command("list")
@click.pass_context
def app_list(ctx):
    """The apps found or installed, with installed and available versions."""
    with _runtime(ctx) as rt:
        apps = rt.apps.list()
        _table(["name", "title", "installed_version", "available_version"], apps)


@app_group.command("install")
@click.argument("app")
@click.pass_context
def app_install(ctx, app):
    """Install APP (a name under apps/, or a folder) with everything it brings, all or nothing."""
    with _runtime(ctx) as rt:
        _print(rt.apps.install_app(SYSTEM_ACTOR, app))


@app_group.command("upgrade")
@click.argument("app")
@click.pass_context
def app_upgrade(ctx, app):
    """Apply the difference between the installed manifest of APP and its new one, keeping data."""
    with _runtime(ctx) as rt:
        _print(rt.apps.upgrade_app(SYSTEM_ACTOR, app))


@app_group.command("uninstall")
@click.argument("name")
@click.option("--export", "export_to", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="First write the app's records to this JSON file.")
@click.pass_context
def app_uninstall(ctx, name, export_to):
    """Remove what the app NAME owns (its objects and their records too)."""
    with _runtime(ctx) as rt:
        done = rt.apps.uninstall_app(SYSTEM_ACTOR, name, export=export_to is not None)
        if export_to is not None:
            export_to.write_text(json.dumps(done.pop("exported"), ensure_ascii=False, indent=1, default=_json_default), encoding="utf-8")
            done["exported_to"] = str(export_to)
        else:
            done.pop("exported")
        _print(done)


# -- jobs ------------------------------------------------------------------------------------
@main.command("worker")
@click.option("--burst", is_flag=True, help="Run the jobs that are due (and, with Redis, queued), then exit.")
@click.option("--poll", default=1.0, show_default=True, type=click.FloatRange(min=0.05),
              help="Seconds between schedule ticks and sweeps of the database.")
@click.option("--import", "modules", multiple=True, metavar="MODULE",
              help="Import MODULE first, for the job handlers it registers (repeatable; the current folder is searched).")
@click.pass_context
def worker(ctx, burst, poll, modules):
    """Run background and scheduled jobs: from the RQ queue with --redis-url, else by polling the
    database. Start as many as needed; each job runs once."""
    from ..runtime.jobs.worker import work

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise click.BadParameter(f"cannot import {module}: {error}", param_hint="--import") from None
    with _runtime(ctx) as rt:
        work(rt, burst=burst, poll=poll)


@main.group("job")
def job_group() -> None:
    """See and retry background jobs; declare periodic ones."""


@job_group.command("list")
@click.option("--status", type=click.Choice(["queued", "running", "succeeded", "failed"]), default=None)
@click.option("--kind", default=None)
@click.option("--first", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print every field as JSON (the whole error text included).")
@click.pass_context
def job_list(ctx, status, kind, first, as_json):
    """The newest jobs first, with their status, attempts and last error."""
    with _runtime(ctx) as rt:
        jobs = [job.as_dict() for job in rt.jobs.list(SYSTEM_ACTOR, status=status, kind=kind, limit=first)]
        if as_json:
            _print(jobs)
            return
        _table(["id", "kind", "status", "attempts", "run_at", "last_error"], jobs)
        click.echo(f"{len(jobs)} job(s)")


@job_group.command("retry")
@click.argument("job_id")
@click.pass_context
def job_retry(ctx, job_id):
    """Queue a failed job again, due now, with a fresh count of attempts."""
    with _runtime(ctx) as rt:
        _print(rt.jobs.retry(SYSTEM_ACTOR, job_id).as_dict())


@job_group.command("schedule")
@click.argument("name")
@click.argument("kind")
@click.option("--every", "every_seconds", required=True, type=click.IntRange(min=1), help="Seconds between runs.")
@click.option("--payload", default=None, help="The job's payload, in JSON.")
@click.pass_context
def job_schedule(ctx, name, kind, every_seconds, payload):
    """Enqueue a KIND job every so many seconds (once per slot, whatever the number of workers)."""
    try:
        value = json.loads(payload) if payload else None
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--payload") from None
    with _runtime(ctx) as rt:
        _print(rt.jobs.schedules.schedule(name, kind, every_seconds, value))


@main.command("notify")
@click.argument("usernames", nargs=-1, required=True)
@click.option("--title", required=True, help="1 to 255 characters.")
@click.option("--body", default="", help="The text under the title.")
@click.option("--kind", default="announcement", show_default=True)
@click.pass_context
def notify(ctx, usernames, title, body, kind):
    """Deliver a notification to these users' inboxes (to check that delivery works)."""
    with _runtime(ctx) as rt:
        user_ids = [_user(rt, name)["id"] for name in usernames]
        delivered = rt.notifications.notify(user_ids, kind, title, body)
        click.echo(f"Delivered to {delivered} user(s).")


@main.command("demo")
@click.option("--database", "database_path", type=click.Path(dir_okay=False, path_type=Path), default="lowcode-demo.db",
              show_default=True, help="The SQLite file to build; deleted first when it exists.")
@click.option("--scale", default="full", show_default=True,
              help="How much data: small, full (thousands of accounts) or a number (1 = full).")
@click.option("--seed", default=8, show_default=True, type=int, help="The random seed: the same seed gives the same data.")
@click.option("--no-serve", is_flag=True, help="Build, print the users and their tokens, and exit.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def demo(database_path, scale, seed, no_serve, host, port):
    """Build a group company's CRM (the crm, manufacturing and media apps, an org tree of about
    forty people, thousands of records) in an embedded SQLite file, then serve it with GraphiQL.

    The file is rebuilt from scratch on every run; --database-url and LOWCODE_DATABASE_URL do not
    apply to it."""
    from .demo import build_demo, remove_database, summary, user_lines
    from .demo_volumes import parse_scale

    try:
        factor = parse_scale(scale)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--scale") from None
    if remove_database(database_path):
        click.echo(f"Deleted the previous demo database {database_path}; building it again.")

    def progress(label, length):
        return click.progressbar(length=length, label=f"{label:<28}", show_pos=True, width=30)

    try:
        result = build_demo(database_path, scale=factor, seed=seed, progress=progress)
    except LowcodeError as error:
        click.echo(json.dumps({"error": error.as_dict()}, indent=2, ensure_ascii=False, default=_json_default), err=True)
        sys.exit(1)
    for line in summary(result):
        click.echo(line)
    click.echo()
    for line in user_lines(result, f"http://{host}:{port}"):
        click.echo(line)
    if no_serve:
        return
    from ..runtime.jobs import JobRunner
    from .app import Settings, create_app

    app = create_app(Settings(database_url=result.database_url, api_token=""))
    runner = JobRunner(app.extensions["lowcode"]["runtime"]).start()
    try:
        app.run(host=host, port=port, threaded=True)
    finally:
        runner.stop()


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--token", envvar="LOWCODE_API_TOKEN", default=None,
              help="An optional service token that acts as the platform itself (automation); users sign in instead.")
@click.pass_context
def serve(ctx, host, port, token):
    """Serve the GraphQL API (POST /graphql) and GraphiQL (GET /graphql) with Flask's server.

    For production run several workers with gunicorn:
    gunicorn -w 4 -b 0.0.0.0:8000 'lowcode.server.app:create_app()'
    """
    from ..graphql.limits import Limits
    from .app import Settings, create_app

    try:
        limits = Limits.from_environment()
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    settings = Settings(database_url=ctx.obj["database_url"], redis_url=ctx.obj["redis_url"], api_token=token or "", limits=limits)
    try:
        app = create_app(settings)
    except LowcodeError as error:
        click.echo(json.dumps({"error": error.as_dict()}, indent=2, ensure_ascii=False), err=True)
        sys.exit(1)
    runner = None
    if not ctx.obj["redis_url"]:
        from ..runtime.jobs import JobRunner

        runner = JobRunner(app.extensions["lowcode"]["runtime"]).start()
        click.echo("Background jobs run in this process (no Redis configured).")
    click.echo(f"GraphiQL: http://{host}:{port}/graphql")
    click.echo(f"Sign in: POST http://{host}:{port}/auth/sign-in {{\"username\", \"password\"}}, then send "
               "'Authorization: Bearer <token>' (the first administrator: lowcode user create --admin).")
    try:
        app.run(host=host, port=port, threaded=True)
    finally:
        if runner is not None:
            runner.stop()
