"""What every service's OpenAPI document says beyond what its routes declare.

Routes read some path parameters through dependencies that take the request (titiler's factories
mounted under `/presets/{preset}`, stac-fastapi's aggregation under `/collections/{id}`), so
FastAPI leaves them out and generated clients cannot fill them; and every operation can answer
the node's errors (bad input, a missing or wrong key, a hidden resource, rate and time limits),
which the routes do not list. `complete_openapi` adds both to the document the app serves, each
error with the service's own error shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

# The node's error shape, `{"code", "description"}` (STAC API and the node's own APIs).
NODE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["code", "description"],
    "properties": {"code": {"type": "string"}, "description": {"type": "string"}},
}
# titiler's, `{"detail": ...}` (a message, or FastAPI's list of validation problems).
DETAIL_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {}},
}
# The tiler's: titiler's shape for what titiler-pgstac and the tiler answer, the node's for what
# the access control in front of them answers (401, 403, 429).
TILER_ERROR: dict[str, Any] = {"anyOf": [DETAIL_ERROR, NODE_ERROR]}
ERRORS = {
    "400": "The request is invalid: the message names the parameter and the problem",
    "401": "An API key is needed, or the key given is unknown, revoked or expired",
    "403": "The key lacks the scope this operation needs",
    "404": "No such resource, or not one the caller may see",
    "413": "The request body is larger than the service accepts",
    "429": "Too many requests for this key; retry after the Retry-After header",
    "500": "An unexpected failure; the message carries the request id to quote",
    "503": "The database is unreachable or the request exceeded the time limit",
}
PATH_PARAMETER = re.compile(r"{(\w+)}")
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def complete_document(
    doc: dict[str, Any], error_schema: dict[str, Any], name: str
) -> dict[str, Any]:
    """`doc` with every path parameter declared and the node's errors on every operation (one
    response object per status in `components`, referred to from each operation)."""
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})[name] = error_schema
    shared = components.setdefault("responses", {})
    for status, description in ERRORS.items():
        shared[f"{name}{status}"] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    _tuple_items_as_arrays(doc)
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"}
            for param in PATH_PARAMETER.findall(path):
                if param not in declared:
                    operation.setdefault("parameters", []).append(
                        {
                            "name": param,
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    )
            responses = operation.setdefault("responses", {})
            for status in ERRORS:
                responses.setdefault(status, {"$ref": f"#/components/responses/{name}{status}"})
    return doc


def _tuple_items_as_arrays(node: Any) -> None:
    """Tuples (`"prefixItems": [a, b]` as pydantic writes them, or `"items": [a, b]` as older
    upstream models do, which OpenAPI 3.1 does not allow) written as an array of exactly that
    many items, each one of the member schemas: schemathesis 4 turns `prefixItems` back into
    the tuple form and then refuses it, so no response of such an operation could be checked."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            members = current.pop("prefixItems", None) or current.get("items")
            if isinstance(members, list):
                unique = [m for i, m in enumerate(members) if m not in members[:i]]
                current["items"] = unique[0] if len(unique) == 1 else {"anyOf": unique}
                current.setdefault("minItems", len(members))
                current.setdefault("maxItems", len(members))
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def complete_openapi(
    app: FastAPI,
    error_schema: dict[str, Any] = NODE_ERROR,
    name: str = "NodeError",
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Make `app.openapi()` return the completed document (then changed by `adjust`, a
    service's own corrections); call it once the routes are in. The document stays the one
    FastAPI builds once and keeps."""
    build: Callable[[], dict[str, Any]] = app.openapi
    completed: list[int] = []

    def openapi() -> dict[str, Any]:
        doc = build()
        if id(doc) not in completed:
            complete_document(doc, error_schema, name)
            if adjust is not None:
                adjust(doc)
            completed.append(id(doc))
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
