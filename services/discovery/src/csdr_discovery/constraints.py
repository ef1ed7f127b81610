"""CSW query constraints (OGC Filter Encoding 1.1 XML or CQL text, parsed by pygeofilter) turned
into the arguments of pgSTAC's collection search: `csw:AnyText` conditions become its free-text
`q` (the STAC API's collection `q`), everything else a CQL2 JSON `filter` over the collection
fields pgSTAC exposes (id, title, description, keywords, geometry, datetime, end_datetime).
So a CSW query and the equivalent STAC collection search select the same rows by construction.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from lxml import etree
from pygeofilter import ast, values
from pygeofilter.parsers.ecql import parse as parse_ecql
from pygeofilter.parsers.fes import parse as parse_fes

from csdr_service import cql2_bounds

SAFE_XML = etree.XMLParser(resolve_entities=False, no_network=True)


class ConstraintError(ValueError):
    """A constraint this catalogue cannot answer; the message names the problem."""


ANYTEXT = "anytext"
# Queryables of the CSW core (csw:Record) and the ISO application profile, by local name.
QUERYABLES = {
    "anytext": ANYTEXT,
    "identifier": "id",
    "title": "title",
    "abstract": "description",
    "subject": "keywords",
    "keywords": "keywords",
    "boundingbox": "geometry",
    "tempextent_begin": "datetime",
    "tempextent_end": "end_datetime",
}
TEMPORAL = {"datetime", "end_datetime"}
# What a GetRecords may be sorted by (the queryables with one value per record).
SORTABLE = {"id", "title", "datetime", "end_datetime"}
COMPARISONS = {
    ast.Equal: "=",
    ast.NotEqual: "<>",
    ast.LessThan: "<",
    ast.LessEqual: "<=",
    ast.GreaterThan: ">",
    ast.GreaterEqual: ">=",
}
SPATIAL = {
    ast.GeometryIntersects: "s_intersects",
    ast.GeometryWithin: "s_within",
    ast.GeometryContains: "s_contains",
    ast.GeometryDisjoint: "s_disjoint",
    ast.GeometryEquals: "s_equals",
    ast.GeometryOverlaps: "s_overlaps",
    ast.GeometryTouches: "s_touches",
    ast.GeometryCrosses: "s_crosses",
}


def parse(text: str, language: str) -> ast.Node:
    """The syntax tree of a constraint; `language` is CSW's FILTER or CQL_TEXT."""
    try:
        if language.upper() == "CQL_TEXT":
            cql2_bounds.check_text(text)  # before lark, which recurses per nesting level
        if language.upper() == "FILTER":
            return parse_fes(etree.fromstring(text.encode(), SAFE_XML))
        if language.upper() == "CQL_TEXT":
            return parse_ecql(text)
    except cql2_bounds.FilterTooComplex as exc:
        raise ConstraintError(f"constraint: {exc}") from None
    except (etree.XMLSyntaxError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConstraintError(
            f"constraint: cannot parse the {language} constraint: {exc}"
        ) from None
    except Exception as exc:  # lark's parse errors have no common base we can import cheaply
        raise ConstraintError(
            f"constraint: cannot parse the {language} constraint: {exc}"
        ) from None
    raise ConstraintError(f"constraintLanguage: {language!r} is not FILTER or CQL_TEXT")


def queryable(node: Any) -> str:
    """The pgSTAC field a CSW queryable names (any namespace prefix)."""
    if not isinstance(node, ast.Attribute):
        raise ConstraintError("constraint: a condition must compare a queryable to a value")
    local = node.name.rpartition(":")[2].lower()
    if local not in QUERYABLES:
        raise ConstraintError(
            f"constraint: unknown queryable {node.name!r}; use one of csw:AnyText, dc:identifier, "
            "dc:title, dct:abstract, dc:subject, ows:BoundingBox, apiso:TempExtent_begin, "
            "apiso:TempExtent_end"
        )
    return QUERYABLES[local]


def sort_order(text: str | None) -> list[dict[str, str]]:
    """pgSTAC sortby of a CSW sortBy (`dc:title:A,apiso:TempExtent_begin:D`; the order is A
    when left out)."""
    order = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, direction = part.strip().rpartition(":")
        if direction.upper() not in ("A", "D") or not name:
            name, direction = part.strip(), "A"
        field = QUERYABLES.get(name.rpartition(":")[2].lower())
        if field not in SORTABLE:
            raise ConstraintError(
                f"sortBy: cannot sort by {name!r}; sort by dc:identifier, dc:title, "
                "apiso:TempExtent_begin or apiso:TempExtent_end, each :A or :D"
            )
        order.append({"field": field, "direction": "desc" if direction.upper() == "D" else "asc"})
    return order


def _conjuncts(node: ast.Node) -> list[ast.Node]:
    if isinstance(node, ast.And):
        return _conjuncts(node.lhs) + _conjuncts(node.rhs)
    return [node]


def _free_text(node: ast.Node) -> str | None:
    """The words of an `AnyText LIKE '%words%'` or `AnyText = 'words'` condition, else None."""
    if isinstance(node, ast.Like | ast.Equal) and isinstance(node.lhs, ast.Attribute):
        if queryable(node.lhs) != ANYTEXT:
            return None
        if isinstance(node, ast.Like):
            if node.not_:
                raise ConstraintError("constraint: csw:AnyText cannot be negated")
            wildcards = f"[{re.escape(node.wildcard)}{re.escape(node.singlechar)}]+"
            words = re.sub(wildcards, " ", node.pattern).strip()
        else:
            words = str(node.rhs).strip()
        if not words:
            raise ConstraintError("constraint: csw:AnyText needs at least one word")
        return words
    return None


def to_search(tree: ast.Node | None) -> dict[str, Any]:
    """pgSTAC collection-search arguments for a constraint: `q` and/or `filter`."""
    if tree is None:
        return {}
    words: list[str] = []
    rest: list[dict[str, Any]] = []
    for node in _conjuncts(tree):
        text = _free_text(node)
        if text is not None:
            words.append(text)
        else:
            rest.append(_cql2(node))
    search: dict[str, Any] = {}
    if words:
        search["q"] = " ".join(words)
    if rest:
        search["filter"] = rest[0] if len(rest) == 1 else {"op": "and", "args": rest}
        try:  # the node's bounds on every filter it hands pgSTAC
            cql2_bounds.check_json(search["filter"])
        except cql2_bounds.FilterTooComplex as exc:
            raise ConstraintError(f"constraint: {exc}") from None
    return search


def _timestamp(value: Any, op: str) -> dict[str, str]:
    """A timestamp literal; a date-only value is that whole UTC day (so `<= day` keeps the day)."""
    if isinstance(value, str):
        try:
            value = (
                date.fromisoformat(value)
                if len(value) == 10
                else datetime.fromisoformat(value.replace("Z", "+00:00"))
            )
        except ValueError:
            raise ConstraintError(f"constraint: {value!r} is not a date or time") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        start = datetime.combine(value, time(), tzinfo=UTC)
        value = start + timedelta(days=1) if op in ("<=", ">") else start
        op_shift = {"<=": "<", ">": ">="}
        return {"timestamp": value.isoformat(), "op": op_shift.get(op, op)}
    if not isinstance(value, datetime):
        raise ConstraintError(f"constraint: {value!r} is not a date or time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return {"timestamp": value.isoformat(), "op": op}


def _literal(value: Any) -> Any:
    if isinstance(value, values.Geometry | values.Envelope):
        return value.__geo_interface__
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    raise ConstraintError(f"constraint: unsupported value {value!r}")


def _like_pattern(node: ast.Like) -> str:
    out = []
    escaped = False
    for ch in node.pattern:
        if escaped:
            out.append("\\" + ch if ch in "%_\\" else ch)
            escaped = False
        elif ch == node.escapechar:
            escaped = True
        elif ch == node.wildcard:
            out.append("%")
        elif ch == node.singlechar:
            out.append("_")
        elif ch in "%_":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _cql2(node: ast.Node) -> dict[str, Any]:
    """CQL2 JSON for one condition (AnyText only as a top-level AND condition: pgSTAC has one
    free-text query per search)."""
    if isinstance(node, ast.And | ast.Or):
        return {
            "op": "and" if isinstance(node, ast.And) else "or",
            "args": [_cql2(node.lhs), _cql2(node.rhs)],
        }
    if isinstance(node, ast.Not):
        inner = node.sub_node
        if isinstance(inner, ast.GeometryDisjoint):  # FES BBOX is NOT DISJOINT: intersects
            return _spatial("s_intersects", inner.lhs, inner.rhs)
        return {"op": "not", "args": [_cql2(inner)]}
    if isinstance(node, ast.BBox):
        envelope = values.Envelope(node.minx, node.maxx, node.miny, node.maxy)
        return _spatial("s_intersects", node.lhs, envelope)
    for kind, op in SPATIAL.items():
        if isinstance(node, kind):
            return _spatial(op, node.lhs, node.rhs)
    for kind, op in COMPARISONS.items():
        if isinstance(node, kind):
            return _comparison(op, node.lhs, node.rhs)
    if isinstance(node, ast.Like):
        field = _field(node.lhs)
        if field == "keywords":
            raise ConstraintError("constraint: dc:subject is compared by equality, not LIKE")
        like = {
            "op": "like",
            "args": [
                {"op": "casei", "args": [{"property": field}]},
                {"op": "casei", "args": [_like_pattern(node)]},
            ],
        }
        return {"op": "not", "args": [like]} if node.not_ else like
    if isinstance(node, ast.Between):
        lower = _comparison(">=", node.lhs, node.low)
        upper = _comparison("<=", node.lhs, node.high)
        both = {"op": "and", "args": [lower, upper]}
        return {"op": "not", "args": [both]} if node.not_ else both
    if isinstance(node, ast.IsNull):
        null = {"op": "isNull", "args": [{"property": _field(node.lhs)}]}
        return {"op": "not", "args": [null]} if node.not_ else null
    raise ConstraintError(f"constraint: {type(node).__name__} conditions are not supported")


def _field(node: Any) -> str:
    field = queryable(node)
    if field == ANYTEXT:
        raise ConstraintError(
            "constraint: csw:AnyText is supported as a top-level condition (joined by AND)"
        )
    return field


def _spatial(op: str, lhs: Any, rhs: Any) -> dict[str, Any]:
    if lhs is not None and _field(lhs) != "geometry":
        raise ConstraintError("constraint: spatial conditions apply to ows:BoundingBox")
    return {"op": op, "args": [{"property": "geometry"}, _literal(rhs)]}


def _comparison(op: str, lhs: Any, rhs: Any) -> dict[str, Any]:
    field = _field(lhs)
    if field in TEMPORAL:
        stamp = _timestamp(rhs, op)
        return {"op": stamp.pop("op"), "args": [{"property": field}, stamp]}
    if field == "keywords":
        if op not in ("=", "<>"):
            raise ConstraintError("constraint: dc:subject is compared by equality")
        contains = {"op": "a_contains", "args": [{"property": field}, [_literal(rhs)]]}
        return contains if op == "=" else {"op": "not", "args": [contains]}
    return {"op": op, "args": [{"property": field}, _literal(rhs)]}
