"""/openapi.json built from the marshmallow schemas and the routes' `@doc` metadata."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask
from marshmallow import Schema

from webhook.schemas import MAX_ID, ErrorSchema

F = TypeVar("F", bound=Callable[..., Any])

_CONVERTERS = {
    "int": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
    "default": {"type": "string"},
    "string": {"type": "string"},
}
_RULE_ARG = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")


def doc(
    *,
    summary: str,
    tag: str,
    auth: str | None = "admin",
    body: type[Schema] | Schema | None = None,
    query: type[Schema] | None = None,
    responses: dict[int, type[Schema] | Schema | None],
    extra_headers: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Attach OpenAPI metadata to a view function (one HTTP method per view)."""

    def decorate(view: F) -> F:
        view._apidoc = {  # type: ignore[attr-defined]
            "summary": summary,
            "tag": tag,
            "auth": auth,
            "body": body,
            "query": query,
            "responses": responses,
            "headers": extra_headers,
        }
        return view

    return decorate


class _Plugin(MarshmallowPlugin):
    """MarshmallowPlugin plus the schema-level keywords a schema declares in `openapi_extra`
    (rules its `@validates_schema` enforces that no single field can express)."""

    # APISpec calls `schema_helper(name, definition, schema=..., **more)`; BasePlugin and
    # MarshmallowPlugin name the second parameter differently, so it is taken as *args.
    def schema_helper(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        json_schema: dict[str, Any] | None = super().schema_helper(name, *args, **kwargs)
        extra = getattr(kwargs.get("schema"), "openapi_extra", None)
        if json_schema is not None and extra:
            json_schema = {**json_schema, **extra}
        return json_schema


class HtmlBlueprint(Blueprint):
    """A blueprint of HTML pages (the admin web UI): not part of the JSON API, so its routes
    need no `@doc` and are left out of /openapi.json."""


def _is_html(app: Flask, endpoint: str) -> bool:
    """True when the endpoint belongs to an :class:`HtmlBlueprint` (`bp.view` or `a.b.view`)."""
    blueprint = app.blueprints.get(endpoint.rpartition(".")[0])
    return isinstance(blueprint, HtmlBlueprint)


def build_spec(app: Flask) -> dict[str, Any]:
    """Return the OpenAPI 3 document for every route of the app."""
    spec = APISpec(
        title="ado-webhook",
        version="0.1.0",
        openapi_version="3.0.3",
        plugins=[_Plugin()],
        info={"description": "Security findings ⇄ Azure DevOps work items, by push."},
    )
    spec.components.security_scheme("admin", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("hookBasic", {"type": "http", "scheme": "basic"})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or _is_html(app, rule.endpoint):
            continue
        view = app.view_functions[rule.endpoint]
        meta = getattr(view, "_apidoc", None)
        if meta is None:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) has no @doc metadata")
        path = _RULE_ARG.sub(lambda m: "{" + m.group("name") + "}", rule.rule)
        params: list[dict[str, Any]] = [
            {
                "name": m.group("name"),
                "in": "path",
                "required": True,
                "schema": _CONVERTERS.get(m.group("conv") or "default", {"type": "string"}),
            }
            for m in _RULE_ARG.finditer(rule.rule)
        ]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(meta, params, rule.endpoint)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _operation(
    meta: dict[str, Any], path_params: list[dict[str, Any]], endpoint: str
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": meta["summary"],
        "tags": [meta["tag"]],
        "operationId": endpoint.replace(".", "_"),
        "parameters": list(path_params),
        "responses": {},
    }
    if meta["query"] is not None:
        op["parameters"].append({"in": "query", "schema": meta["query"]})
    for header in meta["headers"]:
        op["parameters"].append(
            {"in": "header", "name": header, "required": True, "schema": {"type": "string"}}
        )
    if meta["auth"] == "admin":
        op["security"] = [{"admin": []}]
    elif meta["auth"] == "basic":
        op["security"] = [{"hookBasic": []}]
    else:
        op["security"] = []
    if meta["body"] is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": meta["body"]}},
        }
    for status, schema in meta["responses"].items():
        entry: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "response")}
        if schema is not None:
            entry["content"] = {"application/json": {"schema": schema}}
        op["responses"][str(status)] = entry
    op["responses"]["default"] = {
        "description": "error",
        "content": {"application/json": {"schema": "Error"}},
    }
    return op


_DESCRIPTIONS = {
    200: "OK",
    201: "created",
    202: "accepted and durably stored",
    204: "no content",
    503: "not ready",
}
