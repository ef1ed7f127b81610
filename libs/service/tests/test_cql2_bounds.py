"""CQL2 bounds: what users write passes, what kills the native parser is refused by name."""

from __future__ import annotations

import subprocess
import sys

import cql2
import pytest

from csdr_service.cql2_bounds import Cql2Limits, FilterTooComplex, check_json, check_text

LIMITS = Cql2Limits(max_chars=65_536, max_depth=16, max_terms=1000)

EVERYDAY_TEXT = [
    "eo:cloud_cover < 10",
    "(eo:cloud_cover < 10 AND platform = 'gf-1')"
    " OR NOT (datetime > TIMESTAMP('2020-01-01T00:00:00Z'))",
    "S_INTERSECTS(geometry, POLYGON((118 37, 119 37, 119 38, 118 38, 118 37)))",
    "instruments IN ('wfv', 'pms') AND view:sun_elevation BETWEEN 20 AND 80",
    "id LIKE 'GF1%' AND eo:cloud_cover IS NOT NULL",
    "name = '(((((((((((((((((((((((((((((((((((('",  # parentheses inside a string
    "eo:cloud_cover IN (" + ",".join(str(i) for i in range(900)) + ")",
]


@pytest.mark.parametrize("text", EVERYDAY_TEXT)
def test_everyday_text_passes_and_parses(text):
    check_text(text, LIMITS)
    cql2.Expr(text).validate()


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("(" * 3000 + "eo:cloud_cover<10" + ")" * 3000, "CSDR_CQL2_MAX_DEPTH"),
        ("NOT " * 5000 + "eo:cloud_cover<10", "CSDR_CQL2_MAX_DEPTH"),
        ("a < " + "-" * 5000 + "1", "CSDR_CQL2_MAX_DEPTH"),
        ("a < " + "+".join("1" for _ in range(100)), "CSDR_CQL2_MAX_DEPTH"),
        (" AND ".join(f"a<{i}" for i in range(2000)), "CSDR_CQL2_MAX_TERMS"),
        ("a = '" + "x" * 70_000 + "'", "CSDR_CQL2_MAX_CHARS"),
        ("a IN (" + ",".join(str(i % 10) for i in range(5000)) + ")", "CSDR_CQL2_MAX_TERMS"),
    ],
)
def test_text_that_overflows_or_stalls_the_parser_is_refused_by_name(text, setting):
    with pytest.raises(FilterTooComplex, match=setting):
        check_text(text, LIMITS)


def test_the_refused_text_really_kills_a_process():
    """The reason for the bounds: the parser dies on the first refused input above."""
    nested = "(" * 3000 + "eo:cloud_cover<10" + ")" * 3000
    code = f"import cql2; cql2.Expr({nested!r})"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode < 0
    with pytest.raises(FilterTooComplex):
        check_text(nested, LIMITS)


def nested_not(levels: int) -> dict:
    expr: dict = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]}
    for _ in range(levels):
        expr = {"op": "not", "args": [expr]}
    return expr


def test_everyday_json_passes():
    polygon = {"type": "Polygon", "coordinates": [[[118, 37], [119, 37], [119, 38], [118, 37]]]}
    expr = {
        "op": "and",
        "args": [
            {"op": "s_intersects", "args": [{"property": "geometry"}, polygon]},
            {"op": "in", "args": [{"property": "platform"}, ["gf-1", "gf-2"]]},
            nested_not(10),
        ],
    }
    check_json(expr, LIMITS)
    cql2.Expr(expr).validate()


@pytest.mark.parametrize(
    ("expr", "setting"),
    [
        (nested_not(40), "CSDR_CQL2_MAX_DEPTH"),
        ({"op": "in", "args": [{"property": "a"}, list(range(5000))]}, "CSDR_CQL2_MAX_TERMS"),
        ({"op": "=", "args": [{"property": "a"}, "x" * 70_000]}, "CSDR_CQL2_MAX_CHARS"),
    ],
)
def test_json_beyond_the_limits_is_refused_by_name(expr, setting):
    with pytest.raises(FilterTooComplex, match=setting):
        check_json(expr, LIMITS)


def test_arrays_nested_without_end_are_refused_without_recursion():
    deep: list = [1]
    for _ in range(50_000):  # deeper than Python's recursion limit
        deep = [deep]
    with pytest.raises(FilterTooComplex, match="CSDR_CQL2_MAX_DEPTH"):
        check_json({"op": "in", "args": [{"property": "a"}, deep]}, LIMITS)


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CSDR_CQL2_MAX_DEPTH", "3")
    with pytest.raises(FilterTooComplex, match="limit of 3 levels"):
        check_text("((((a < 1))))", Cql2Limits())
    check_text("((a < 1))", Cql2Limits())
