"""The API's endpoint registry: one decorator validates input and documents it in OpenAPI.

Because the same declaration both routes a request and describes it, the OpenAPI document
cannot drift from the endpoints that exist (a test checks the two agree).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from appliance import __version__
from appliance.errors import InvalidInput, RequestError
from appliance.sdk.base import TEXT_HINT, Body, unstorable_value

_PATH_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")
MAX_BODY_BYTES = 1 << 20


class UnsupportedMediaType(RequestError):
    status = 415


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    summary: str
    tag: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    is_authenticated: bool
    errors: tuple[int, ...]
    media_type: str = "application/json"
    path_params: tuple[str, ...] = field(default=())
    raw_body: str | None = None  # the media type of a body read as a stream of bytes, not parsed

    @property
    def openapi_path(self) -> str:
        return _PATH_PARAM.sub(r"{\1}", self.path)


OPERATIONS: list[Operation] = []


def _field_name(location: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in location) or "body"


def _invalid(err: ValidationError, where: str) -> InvalidInput:
    problems = err.errors(include_url=False)
    first = problems[0]
    name = _field_name(first["loc"])
    error = InvalidInput(f"Invalid {where} field '{name}': {first['msg']}.",
                         "; ".join(f"{_field_name(p['loc'])}: {p['msg']}" for p in problems),
                         field=name)
    error.validations = [{"field": _field_name(p["loc"]), "detail": p["msg"]} for p in problems]  # type: ignore[attr-defined]
    return error


def parse_json_body(model: type[BaseModel]) -> BaseModel:
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Request body must be JSON, got Content-Type {request.mimetype or '(none)'!r}.",
            "Send the body with 'Content-Type: application/json'.")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise InvalidInput(f"Request body is larger than {MAX_BODY_BYTES} bytes.")
    raw = request.get_data(cache=False)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"Request body is not valid JSON: {err}.",
                           "Check quoting and commas; the body must be one JSON object.") from err
    if not isinstance(data, dict):
        raise InvalidInput(f"Request body must be a JSON object, got {type(data).__name__}.")
    if refused := unstorable_value(data, is_strict_text=issubclass(model, Body)):
        name, why = refused
        raise InvalidInput(f"Invalid body field '{name}': it {why}.", TEXT_HINT, field=name)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise _invalid(err, "body") from err


def parse_query(model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(request.args.to_dict())
    except ValidationError as err:
        raise _invalid(err, "query") from err


def endpoint(
    blueprint: Blueprint,
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    is_authenticated: bool = True,
    errors: tuple[int, ...] = (),
    media_type: str = "application/json",
    raw_body: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a view: parsed `body`/`query` models are passed as keyword arguments."""
    full_path = (blueprint.url_prefix or "") + path
    auth_errors = (401, 403) if is_authenticated else ()
    input_errors = (400,) if (body or query) else ()
    operation = Operation(method, full_path, summary, tag, body, query, response, status,
                          is_authenticated, tuple(sorted({*auth_errors, *input_errors, *errors})),
                          media_type, tuple(_PATH_PARAM.findall(path)), raw_body)

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def handle(**kwargs: Any) -> Any:
            if body is not None:
                kwargs["body"] = parse_json_body(body)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return view(**kwargs)

        blueprint.add_url_rule(path, endpoint=view.__name__, view_func=handle, methods=[method])
        OPERATIONS.append(operation)
        return handle

    return register


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string"},
        "detail": {"type": "string"},
        "validations": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "detail": {"type": "string"}}}},
    },
}
_STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 400: "Invalid input",
                401: "Not authenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict",
                410: "No longer the caller's", 413: "Body too large", 415: "Body is not JSON",
                429: "Too many attempts", 503: "Unavailable"}


def _operation_doc(op: Operation) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
    if op.response is not None:
        ok["content"] = {op.media_type: {"schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}
    elif op.status != 204:
        ok["content"] = {op.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    for code in op.errors:
        responses[str(code)] = {"description": _STATUS_TEXT.get(code, "Error"), "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    doc: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                           "operationId": f"{op.method.lower()}_{op.openapi_path}", "responses": responses}
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
              for p in op.path_params]
    if op.query is not None:
        schema = op.query.model_json_schema()
        params += [{"name": name, "in": "query", "required": name in schema.get("required", []),
                    "schema": {k: v for k, v in prop.items() if k != "title"},
                    "description": prop.get("description", "")}
                   for name, prop in schema["properties"].items()]
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
    elif op.raw_body is not None:
        doc["requestBody"] = {"required": True, "content": {op.raw_body: {
            "schema": {"type": "string", "format": "binary"}}}}
    doc["security"] = [{"bearer": []}, {"cookie": []}] if op.is_authenticated else []
    return doc


def openapi_document() -> dict[str, Any]:
    models = {m for op in OPERATIONS for m in (op.body, op.response) if m is not None}
    _, schemas = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                    ref_template="#/components/schemas/{model}")
    components = {**schemas.get("$defs", {}), "Error": _ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for op in sorted(OPERATIONS, key=lambda o: (o.openapi_path, o.method)):
        paths.setdefault(op.openapi_path, {})[op.method.lower()] = _operation_doc(op)
    return {
        "openapi": "3.0.3",
        "info": {"title": "Appliance control plane API", "version": __version__,
                 "description": "Errors are JSON objects {\"message\", \"detail\"}."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "appliance_session_token"},
            },
        },
    }


def json_response(model: BaseModel, status: int = 200) -> Response:
    """Serialise through the declared model, so the answer is exactly what OpenAPI and the CLI expect."""
    # pydantic's own serialiser (in Rust) writes the JSON in one pass, with no intermediate dicts.
    return Response(model.model_dump_json(), status=status, mimetype="application/json")
