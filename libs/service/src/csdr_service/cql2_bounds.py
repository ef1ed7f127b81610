"""Bounds on CQL2 filters, checked before any parser sees them.

The `cql2` package's native parser recurses once per nesting level: a few thousand parentheses,
prefix operators (`NOT NOT ...`, `- - 1`) or list elements overflow its stack and kill the whole
process, and its validation grows steeply with nesting (~30 ms per nested NOT here). Every
service that takes a filter calls `check_text` or `check_json` first and turns `FilterTooComplex`
into its own 400. The limits are node-wide settings (`CSDR_CQL2_MAX_CHARS`, `..._MAX_DEPTH`,
`..._MAX_TERMS`); each message names the one exceeded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import orjson
from pydantic_settings import BaseSettings, SettingsConfigDict


class Cql2Limits(BaseSettings):
    """How large and how deep a CQL2 filter may be."""

    model_config = SettingsConfigDict(env_prefix="CSDR_CQL2_")

    max_chars: int = 65_536
    """Characters of CQL2 text, or of CQL2 JSON serialised."""
    max_depth: int = 16
    """Nesting levels: parentheses, logical/arithmetic operators and prefix operators (NOT, -)."""
    max_terms: int = 1000
    """Operators and list elements, roughly one per comparison, AND/OR/NOT and IN value."""


class FilterTooComplex(ValueError):
    """A filter beyond one of the limits; the message names the limit and the setting."""


@lru_cache(maxsize=1)
def limits() -> Cql2Limits:
    """The node's limits, read from the environment once per process."""
    return Cql2Limits()


# Outside string literals ('...' with '' as an escaped quote) and quoted identifiers ("...").
_TOKEN = re.compile(
    r"""'(?:[^']|'')*'?|"[^"]*"?|[A-Za-z_][\w:.]*|\d[\w.]*|<=|>=|<>|!=|\S""",
)
_LOGICAL = {"AND", "OR"}
_PREFIX_WORDS = {"NOT"}
_WORD_OPERATORS = {"LIKE", "BETWEEN", "IN", "IS"}
_COMPARISONS = {"=", "<", ">", "<=", ">=", "<>", "!="}
_ARITHMETIC = {"+", "-", "*", "/", "%", "^"}


def check_text(text: str, bounds: Cql2Limits | None = None) -> None:
    """Refuse CQL2 text longer, deeper or with more terms than the limits allow."""
    bounds = bounds or limits()
    if len(text) > bounds.max_chars:
        raise FilterTooComplex(
            f"filter has {len(text)} characters; at most {bounds.max_chars} are allowed "
            "(CSDR_CQL2_MAX_CHARS)"
        )
    depth, terms = _measure_text(text, bounds)
    _check(depth, terms, bounds)


def check_json(expr: Any, bounds: Cql2Limits | None = None) -> None:
    """Refuse a CQL2 JSON filter (already decoded) beyond the limits."""
    bounds = bounds or limits()
    depth, terms = _measure_json(expr, bounds)
    _check(depth, terms, bounds)
    try:
        size = len(orjson.dumps(expr))
    except TypeError as exc:  # an integer beyond 64 bits, a non-JSON value
        raise FilterTooComplex(f"filter holds a value the node cannot read: {exc}") from None
    if size > bounds.max_chars:
        raise FilterTooComplex(
            f"filter has {size} characters as JSON; at most {bounds.max_chars} are allowed "
            "(CSDR_CQL2_MAX_CHARS)"
        )


def _check(depth: int, terms: int, bounds: Cql2Limits) -> None:
    if depth > bounds.max_depth:
        raise FilterTooComplex(
            f"filter is nested deeper than the limit of {bounds.max_depth} levels "
            "(CSDR_CQL2_MAX_DEPTH)"
        )
    if terms > bounds.max_terms:
        raise FilterTooComplex(
            f"filter has more terms than the limit of {bounds.max_terms} (CSDR_CQL2_MAX_TERMS)"
        )


def _tokens(text: str) -> Iterator[str]:
    for match in _TOKEN.finditer(text):
        token = match.group()
        yield token.upper() if token[0].isalpha() or token[0] == "_" else token


def _measure_text(text: str, bounds: Cql2Limits) -> tuple[int, int]:
    """(deepest nesting, terms) of CQL2 text, counted on tokens, never by recursion; stops
    counting once a limit is passed.

    Each parenthesis opens a level; within a level, each prefix operator (NOT, a sign) and each
    arithmetic operator nests one more (the parser builds them as nested nodes) until a
    comparison or AND/OR ends the operand; AND/OR chains are flat."""
    depth = deepest = terms = 0
    outer: list[int] = []  # per open parenthesis: the operator nesting it sits in
    outer_total = 0
    nesting = 0  # operator nesting at the current parenthesis level
    for token in _tokens(text):
        if token == "(":
            outer.append(nesting)
            outer_total += nesting
            depth += 1
            nesting = 0
        elif token == ")":
            if outer:
                nesting = outer.pop()
                outer_total -= nesting
                depth -= 1
        elif token in _PREFIX_WORDS or token in _ARITHMETIC:  # signs included
            nesting += 1
            terms += 1
        elif token in _LOGICAL or token in _COMPARISONS or token in _WORD_OPERATORS:
            nesting = 0
            terms += 1
        elif token == ",":
            terms += 1
        deepest = max(deepest, depth + outer_total + nesting)
        if deepest > bounds.max_depth or terms > bounds.max_terms:
            break
    return deepest, terms


def _measure_json(expr: Any, bounds: Cql2Limits) -> tuple[int, int]:
    """(deepest expression nesting, terms) of CQL2 JSON, walked with an explicit stack; stops
    counting once a limit is passed.

    An object with `op` is one level and one term; elements of a literal array are terms (a
    GeoJSON geometry's coordinates are not: its size is bounded by max_chars). Containers nested
    deeper than the depth limit allows (arrays of arrays of ...) are refused anywhere: GeoJSON
    needs four levels, nothing needs more."""
    container_limit = 2 * bounds.max_depth + 8
    deepest = terms = 0
    # (node, expression depth, container depth, inside a geometry)
    stack: list[tuple[Any, int, int, bool]] = [(expr, 0, 0, False)]
    while stack and deepest <= bounds.max_depth and terms <= bounds.max_terms:
        node, depth, containers, geometry = stack.pop()
        if containers > container_limit:
            raise FilterTooComplex(
                f"filter is nested deeper than the limit of {bounds.max_depth} levels "
                f"(arrays and objects over {container_limit} deep; CSDR_CQL2_MAX_DEPTH)"
            )
        if isinstance(node, dict):
            if "op" in node and not geometry:
                depth += 1
                terms += 1
                deepest = max(deepest, depth)
            inner = geometry or "coordinates" in node or "geometries" in node
            stack.extend((value, depth, containers + 1, inner) for value in node.values())
        elif isinstance(node, list):
            if not geometry:
                terms += len(node)
            stack.extend((value, depth, containers + 1, geometry) for value in node)
    return deepest, terms
