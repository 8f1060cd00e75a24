"""The merchant app's JSON API under ``/api/v1``: what the pages use and the tests drive.

Every route is declared with :func:`api_route`, which gives it, in one place:
the merchant's authentication (the shop is the session's or the session
token's, never the URL's), its query and body loaded through marshmallow
schemas (a bad value is a 400 naming each field, before the view runs), its
answer dumped through a schema, and its entry in the OpenAPI document served
at ``/api/v1/openapi.json``.

Errors are always JSON here, whatever the client accepts::

    {"error": "invalid", "message": "words", "fields": [{"field": "path", "message": "words"}]}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, current_app, jsonify, request
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields
from werkzeug.exceptions import HTTPException

from connector.merchant.auth import current_shop_id
from jobs.shop_settings import Problem, SettingsError

log = logging.getLogger(__name__)
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
PREFIX = "/api/v1"
VERSION = "1.0.0"
#: the largest body a merchant's request needs (a flow's copy in five languages fits)
MAX_BODY_BYTES = 256 * 1024


class ApiError(Exception):
    """An answer other than success, with the words a merchant (or a developer) reads."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Iterable[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)


def invalid(problems: Iterable[Problem] | Iterable[tuple[str, str]], message: str = "") -> ApiError:
    """A 400 naming every bad field (nothing was saved)."""
    listed = [
        (problem.where, problem.message) if isinstance(problem, Problem) else problem
        for problem in problems
    ]
    return ApiError(
        400, "invalid", message or "Some values were not accepted; nothing was saved.", listed
    )


def error_answer(error: ApiError) -> Response:
    body: dict[str, Any] = {"error": error.code, "message": error.message}
    if error.fields:
        body["fields"] = [{"field": name, "message": words} for name, words in error.fields]
    response = jsonify(body)
    response.status_code = error.status
    return response


def _flatten(messages: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[str, str]]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from _flatten(value, (*path, str(key)))
    elif isinstance(messages, list | tuple) and all(isinstance(item, str) for item in messages):
        for item in messages:
            yield ".".join(path) or "_body", item
    elif isinstance(messages, list | tuple):
        for item in messages:
            yield from _flatten(item, path)
    else:
        yield ".".join(path) or "_body", str(messages)


@dataclass(frozen=True)
class Route:
    """One API route as the OpenAPI document describes it."""

    rule: str
    method: str
    summary: str
    query: type[Schema] | None
    body: type[Schema] | None
    answer: type[Schema] | None
    status: int
    errors: tuple[int, ...] = field(default=(400, 401, 404))


ROUTES: list[Route] = []


def _openapi_path(rule: str) -> str:
    """``/flows/<name>`` and ``/x/<int:id>`` → ``/flows/{name}``, ``/x/{id}``."""
    parts = []
    for part in rule.split("/"):
        if part.startswith("<") and part.endswith(">"):
            part = "{" + part[1:-1].split(":")[-1] + "}"
        parts.append(part)
    return PREFIX + "/".join(parts)


def api_route(
    rule: str,
    *,
    methods: tuple[str, ...] = ("GET",),
    summary: str,
    query: type[Schema] | None = None,
    body: type[Schema] | None = None,
    answer: type[Schema] | None = None,
    status: int = 200,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare an API view: ``view(shop_id, **url_values, query=..., body=...)``.

    The view returns what ``answer`` dumps (or a :class:`Response` as is) and
    raises :class:`ApiError` (or ``SettingsError``, answered as a 400 per field).
    """

    def declare(view: Callable[..., Any]) -> Callable[..., Any]:
        for method in methods:
            ROUTES.append(Route(rule, method, summary, query, body, answer, status))

        @wraps(view)
        def handle(**url_values: Any) -> Any:
            shop_id = current_shop_id()
            if shop_id is None:
                raise ApiError(
                    401, "unauthorized", "Sign in through your shop's admin to use triggerpost."
                )
            extra: dict[str, Any] = {}
            if query is not None:
                extra["query"] = _load(query(unknown=EXCLUDE), request.args.to_dict())
            if body is not None:
                if not request.is_json:
                    raise ApiError(415, "unsupported_media_type", "Send the body as JSON.")
                payload = request.get_json(silent=True)
                if not isinstance(payload, dict):
                    raise invalid([("_body", "The body must be a JSON object.")])
                extra["body"] = _load(body(unknown=RAISE), payload)
            try:
                result = view(shop_id, **url_values, **extra)
            except SettingsError as exc:
                raise invalid(exc.problems) from exc
            if isinstance(result, Response):
                return result
            dumped = answer().dump(result) if answer is not None else result
            return jsonify(dumped), status

        blueprint.add_url_rule(rule, view_func=handle, methods=list(methods))
        return handle

    return declare


def _load(schema: Schema, data: Mapping[str, Any]) -> Any:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise invalid(_flatten(exc.messages)) from exc


@blueprint.before_request
def _bounded() -> None:
    """Refused before anything reads the body (the CSRF check may open the stream first)."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", "The request is too large.")


@blueprint.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    if error.status >= 400 and error.status != 401:
        log.info("API %s %s: %s %s", request.method, request.path, error.status, error.message)
    return error_answer(error)


@blueprint.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    """Flask's own refusals (404, 405, 413, CSRF's 400/403) as JSON here too."""
    code = (error.name or "error").lower().replace(" ", "_")
    return error_answer(ApiError(error.code or 500, code, error.description or error.name))


# --- the OpenAPI document --------------------------------------------------------------


class ErrorField(Schema):
    field = fields.String(required=True, metadata={"description": "the field's path"})
    message = fields.String(required=True)


class ErrorAnswer(Schema):
    error = fields.String(required=True, metadata={"description": "a short code"})
    message = fields.String(required=True, metadata={"description": "the reason, in words"})
    problems = fields.List(fields.Nested(ErrorField), data_key="fields")


def openapi_document() -> dict[str, Any]:
    spec = APISpec(
        title="triggerpost merchant API",
        version=VERSION,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "What the merchant app's pages use: flows, settings, previews, "
            "test sends, timelines and analytics of the signed-in shop."
        },
    )
    spec.components.schema("Error", schema=ErrorAnswer)
    spec.components.security_scheme(
        "sessionToken",
        {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    )
    spec.components.security_scheme(
        "cookieSession", {"type": "apiKey", "in": "cookie", "name": "session"}
    )
    by_path: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "security": [{"sessionToken": []}, {"cookieSession": []}],
            "responses": {
                str(route.status): {
                    "description": "done",
                    **(
                        {"content": {"application/json": {"schema": route.answer}}}
                        if route.answer is not None
                        else {}
                    ),
                },
                **{
                    str(code): {
                        "description": "refused",
                        "content": {"application/json": {"schema": "Error"}},
                    }
                    for code in route.errors
                },
            },
        }
        parameters = [
            {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
            for name in _path_names(route.rule)
        ]
        if route.query is not None:
            parameters.append({"in": "query", "schema": route.query})
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body}},
            }
        by_path.setdefault(_openapi_path(route.rule), {})[route.method.lower()] = operation
    for path, operations in sorted(by_path.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _path_names(rule: str) -> list[str]:
    return [
        part[1:-1].split(":")[-1]
        for part in rule.split("/")
        if part.startswith("<") and part.endswith(">")
    ]


@blueprint.get("/openapi.json")
def openapi() -> Response:
    """Public: the document describes the API, it holds no shop's data."""
    document = current_app.extensions.get("triggerpost.openapi")
    if document is None:
        document = current_app.extensions["triggerpost.openapi"] = openapi_document()
    return jsonify(document)
