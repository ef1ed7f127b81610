"""CQL2 filters: parsed and validated once per distinct text (cql2's parser costs ~20 ms per GET
on this machine kind, see docs/performance.md), and the Query extension translated to
CQL2 so that every operator it defines works on pgSTAC (pgSTAC maps `query` operators to CQL2
operators by name, and has no `startsWith`, `endsWith`, `contains` or `in`)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import orjson
from cql2 import Expr
from stac_fastapi.types.errors import InvalidQueryParameter

from csdr_service import cql2_bounds

CACHE_SIZE = 4096

# Query extension operator -> CQL2 (https://github.com/stac-api-extensions/query#query-language).
COMPARISONS = {"eq": "=", "neq": "<>", "ne": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
SUBSTRINGS = {"startsWith": "{}%", "endsWith": "%{}", "contains": "%{}%"}


@lru_cache(maxsize=CACHE_SIZE)
def _parse_text(text: str) -> bytes:
    expr = Expr(text)
    expr.validate()
    return orjson.dumps(expr.to_json())


@lru_cache(maxsize=CACHE_SIZE)
def _validate_json(canonical: bytes) -> None:
    Expr(orjson.loads(canonical)).validate()


def parse_cql2_text(text: str) -> dict[str, Any]:
    """CQL2 text as CQL2 JSON; 400 naming the limit or the parse error when it is too large or
    not valid CQL2."""
    try:
        cql2_bounds.check_text(text)
    except cql2_bounds.FilterTooComplex as exc:
        raise InvalidQueryParameter(f"Invalid CQL2 text filter: {exc}") from None
    try:
        return dict(orjson.loads(_parse_text(text)))
    except Exception as exc:  # cql2 raises plain Exception/ValueError with a located message
        raise InvalidQueryParameter(f"Invalid CQL2 text filter: {exc}") from exc


def validate_cql2_json(expr: dict[str, Any]) -> dict[str, Any]:
    """Check a CQL2 JSON filter; 400 naming the problem when it is too large or not valid CQL2."""
    try:
        cql2_bounds.check_json(expr)
    except cql2_bounds.FilterTooComplex as exc:
        raise InvalidQueryParameter(f"Invalid CQL2 JSON filter: {exc}") from None
    try:
        _validate_json(orjson.dumps(expr, option=orjson.OPT_SORT_KEYS))
    except Exception as exc:
        raise InvalidQueryParameter(f"Invalid CQL2 JSON filter: {exc}") from exc
    return expr


def parse_query_text(text: str) -> dict[str, Any]:
    """The GET `query` parameter, a JSON object; 400 when it is not one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidQueryParameter(f"query must be a JSON object: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise InvalidQueryParameter('query must be a JSON object like {"prop": {"op": value}}')
    return value


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _query_term(prop: str, op: str, value: Any, kind: str | None) -> dict[str, Any]:
    ref = {"property": prop}
    if op in COMPARISONS:
        return {"op": COMPARISONS[op], "args": [ref, value]}
    if op in SUBSTRINGS:
        if not isinstance(value, str):
            raise InvalidQueryParameter(f"query: {prop}.{op} needs a string, got {value!r}")
        return {"op": "like", "args": [ref, SUBSTRINGS[op].format(_like_escape(value))]}
    if op == "in":
        if not isinstance(value, list) or not value:
            raise InvalidQueryParameter(f"query: {prop}.in needs a non-empty list")
        # On an array property (instruments) `in` means "shares a value with the list".
        return {"op": "a_overlaps" if kind == "array" else "in", "args": [ref, value]}
    known = ", ".join([*COMPARISONS, *SUBSTRINGS, "in"])
    raise InvalidQueryParameter(f"query: unknown operator '{op}' on {prop}; use one of {known}")


def query_to_cql2(query: dict[str, dict[str, Any]], types: dict[str, str | None]) -> dict[str, Any]:
    """Translate a Query extension object to one CQL2 JSON expression; `types` gives each known
    property's JSON Schema type."""
    terms = [
        _query_term(prop, op, value, types.get(prop.removeprefix("properties.")))
        for prop, ops in query.items()
        for op, value in ops.items()
    ]
    if not terms:
        raise InvalidQueryParameter("query has no conditions")
    return terms[0] if len(terms) == 1 else {"op": "and", "args": terms}


def and_filters(*exprs: dict[str, Any] | None) -> dict[str, Any] | None:
    """The conjunction of the filters given (None when there is none)."""
    present = [e for e in exprs if e]
    if not present:
        return None
    return present[0] if len(present) == 1 else {"op": "and", "args": present}
