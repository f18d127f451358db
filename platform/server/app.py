"""The HTTP server: a Flask app factory over the GraphQL endpoint.

``POST /graphql`` answers GraphQL requests, ``GET /graphql`` serves the GraphiQL IDE, ``GET
/healthz`` reports whether the database (and Redis) answer, ``POST /auth/sign-in`` trades a
username and password for a session token and ``POST /auth/sign-out`` revokes it. Every GraphQL
request carries ``Authorization: Bearer <token>``: a session or API token of a user, or the
optional service token from the environment (``LOWCODE_API_TOKEN``), which acts as the platform
itself (for automation and bootstrapping; leave it unset to admit users only).

Production: ``gunicorn -w 4 -b 0.0.0.0:8000 'lowcode.server.app:create_app()'``.
"""
from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Flask, Response, jsonify, request
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from ..graphql.endpoint import GraphQLEndpoint
from ..graphql.limits import Limits
from ..metadata.actors import SYSTEM_ACTOR, Actor
from ..metadata.errors import LowcodeError, Unauthenticated
from ..runtime import Runtime
from .graphiql import graphiql_page

DEFAULT_DATABASE_URL = "sqlite:///lowcode.db"
MAX_BODY_BYTES = 10 * 1024 * 1024

log = logging.getLogger("lowcode.server")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    api_token: str = ""
    limits: Limits = Limits()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> "Settings":
        """``LOWCODE_DATABASE_URL``, ``LOWCODE_REDIS_URL``, ``LOWCODE_API_TOKEN`` and the limits
        (``LOWCODE_MAX_DEPTH``, ``LOWCODE_DEFAULT_PAGE_SIZE``, ``LOWCODE_MAX_PAGE_SIZE``,
        ``LOWCODE_MAX_BULK``, ``LOWCODE_MAX_COST``)."""
        return cls(
            database_url=environ.get("LOWCODE_DATABASE_URL") or DEFAULT_DATABASE_URL,
            redis_url=environ.get("LOWCODE_REDIS_URL") or None,
            api_token=environ.get("LOWCODE_API_TOKEN", ""),
            limits=Limits.from_environment(environ),
        )


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    settings = settings or Settings.from_environment()
    if runtime is None:
        runtime = Runtime.connect(settings.database_url, settings.redis_url).install()
        runtime.warm_on_announcements()
    endpoint = GraphQLEndpoint(runtime, settings.limits)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.json.compact = True
    app.extensions["lowcode"] = {"runtime": runtime, "endpoint": endpoint, "settings": settings}
    service_token = settings.api_token.encode()

    def bearer_token() -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        return token if scheme.lower() == "bearer" and token else None

    def caller() -> Actor:
        token = bearer_token()
        if token is None:
            raise Unauthenticated("Send 'Authorization: Bearer <token>': sign in at /auth/sign-in or use an API token.")
        if service_token and hmac.compare_digest(token.encode(), service_token):
            return SYSTEM_ACTOR
        return runtime.security.authenticate(token)

    @app.post("/auth/sign-in")
    def sign_in():
        body = request.get_json(silent=True) if request.is_json else None
        if not isinstance(body, dict):
            return _errors(400, "Send JSON {\"username\": ..., \"password\": ...}.", "BAD_REQUEST")
        try:
            session = runtime.security.sign_in(body.get("username"), body.get("password"), request.remote_addr or "")
        except LowcodeError as error:
            return _error(error)
        return jsonify({"token": session["token"], "expiresAt": session["expires_at"].isoformat(),
                        "user": {"id": session["user_id"], "username": body["username"]}})

    @app.post("/auth/sign-out")
    def sign_out():
        token = bearer_token()
        if token is None:
            return _errors(401, "Send 'Authorization: Bearer <token>' with the session to end.", "UNAUTHENTICATED")
        runtime.security.sign_out(token)
        return Response(status=204)

    @app.post("/graphql")
    def graphql_request():
        try:
            actor = caller()
        except LowcodeError as error:
            response = _error(error)
            response.headers["WWW-Authenticate"] = 'Bearer realm="lowcode"'
            return response
        if not request.is_json:
            return _errors(415, "Send the request as JSON (Content-Type: application/json).", "BAD_QUERY")
        body = request.get_json(silent=True)
        if body is None:
            return _errors(400, "The request body is not valid JSON.", "BAD_QUERY")
        status, payload = endpoint.run(actor, body)
        return jsonify(payload), status

    @app.get("/graphql")
    def graphiql():
        return Response(graphiql_page(), mimetype="text/html")

    @app.get("/healthz")
    def healthz():
        checks: dict[str, Any] = {}
        healthy = True
        try:
            with runtime.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
            checks["metadataVersion"] = runtime.catalogs.current().version
            checks["policyVersionLoaded"] = runtime.policies.version
        except Exception:
            log.exception("Health check: the database does not answer")
            checks["database"] = "unavailable"
            healthy = False
        if runtime.redis is not None:
            try:
                runtime.redis.ping()
                checks["redis"] = "ok"
            except Exception:
                log.exception("Health check: Redis does not answer")
                checks["redis"] = "unavailable"
                healthy = False
        checks["status"] = "ok" if healthy else "unavailable"
        return jsonify(checks), 200 if healthy else 503

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        code = "NOT_FOUND" if status == 404 else "BAD_QUERY" if status < 500 else "INTERNAL"
        return _errors(status, error.description or error.name, code)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("Unexpected error serving %s %s", request.method, request.path)
        return _errors(500, "An internal error occurred; it was logged for the operators.", "INTERNAL")

    return app


def _error(error: LowcodeError) -> Response:
    extensions = {k: v for k, v in error.as_dict().items() if k != "message"}
    response = jsonify({"errors": [{"message": error.message, "extensions": extensions}]})
    response.status_code = error.http_status
    if "retry_after" in error.ctx:
        response.headers["Retry-After"] = str(error.ctx["retry_after"])
    return response


def _errors(status: int, message: str, code: str) -> Response:
    response = jsonify({"errors": [{"message": message, "extensions": {"code": code}}]})
    response.status_code = status
    return response

