"""The order and order-item statuses, from the STAC order extension's vocabulary (plus `partial`,
some items delivered and some not), and the one table of allowed changes: anything else is a 409.
https://github.com/stac-extensions/order

- `ordered`: received, not yet processed (an organisation with manual approval: until an
  administrator approves it).
- `pending`: being processed: offline scenes queued for, or in, production.
- `shipping`: produced; delivery being prepared (the charge committed, the links issued and the
  organisation told), by the production watcher's next step.
- `succeeded` | `partial` (orders only) | `failed` | `canceled`: final.

An item passes through the same statuses; an online scene is delivered at once (ordered ->
shipping -> succeeded in its acceptance), an offline one when its production ends.
"""

from csdr_orders.errors import TransitionRefused

ALLOWED: dict[str, frozenset[str]] = {
    "ordered": frozenset({"pending", "shipping", "canceled", "failed"}),
    "pending": frozenset({"shipping", "canceled", "failed"}),
    "shipping": frozenset({"succeeded", "partial", "failed", "canceled"}),
}
TERMINAL = frozenset({"succeeded", "partial", "failed", "canceled"})
ITEM_DONE = frozenset({"succeeded", "failed", "canceled"})
WAITING = ("ordered", "pending", "shipping")
"""Item statuses that may still change."""


def steps(current: str, target: str) -> list[str]:
    """The statuses an order or item passes through from `current` to `target` (through
    `shipping` when the direct change is not allowed but that one is); TransitionRefused
    otherwise."""
    if current == target:
        return []
    allowed = ALLOWED.get(current, frozenset())
    if target in allowed:
        return [target]
    if "shipping" in allowed and target in ALLOWED["shipping"]:
        return ["shipping", target]
    raise TransitionRefused(
        f"the order is {current}; it cannot become {target}",
        status=current,
        allowed=sorted(allowed),
    )


def order_status(items: list[str]) -> str:
    """An order's status from its items' statuses."""
    if items and all(s in ITEM_DONE for s in items):
        if all(s == "succeeded" for s in items):
            return "succeeded"
        if "succeeded" in items:
            return "partial"
        return "failed" if "failed" in items else "canceled"
    if any(s in ("succeeded", "shipping") for s in items):
        return "shipping"
    if "pending" in items:
        return "pending"
    return "ordered"
