"""Which scenes are online and which offline, the one rule every service reads.

A scene is online (its COGs are in the asset store: the tiler draws it, a download or an order
delivers it at once) when its item's `order:status` (STAC order extension) is absent or
`succeeded`. Any other status is offline: `orderable` (an archived package registered offline,
produced on order) and the order states an item may carry (`ordered`, `pending`, `shipping`,
`failed`, `canceled`). SQL reads the rule as `csdr.scene_online(content)` (migration 0046),
searches as `ONLINE_FILTER`/`OFFLINE_FILTER` (CQL2), Python as `is_online`, the portal as
its `js/availability.js`; tests/test_availability.py holds them all to the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ORDER_STATUS = "order:status"
ONLINE_STATUS = "succeeded"
"""The one status of an online scene (an item without `order:status` is online too)."""


def is_online(properties: Mapping[str, Any]) -> bool:
    """Whether a scene with these item properties is online."""
    return properties.get(ORDER_STATUS) in (None, ONLINE_STATUS)


# CQL2 JSON, for pgSTAC searches (the tiler's mosaics, the catalog's /search).
ONLINE_FILTER: dict[str, Any] = {
    "op": "or",
    "args": [
        {"op": "isNull", "args": [{"property": ORDER_STATUS}]},
        {"op": "=", "args": [{"property": ORDER_STATUS}, ONLINE_STATUS]},
    ],
}
OFFLINE_FILTER: dict[str, Any] = {"op": "not", "args": [ONLINE_FILTER]}
