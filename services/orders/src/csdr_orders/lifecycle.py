"""The order and order-item statuses, from the STAC order extension's vocabulary (plus `partial`,
some items delivered and some not), and which changes are allowed: anything else is a 409.

ordered -> pending | shipping | canceled | failed; pending -> shipping | canceled | failed;
shipping -> succeeded | partial | failed | canceled. https://github.com/stac-extensions/order
"""

from csdr_orders.errors import TransitionRefused

ALLOWED: dict[str, frozenset[str]] = {
    "ordered": frozenset({"pending", "shipping", "canceled", "failed"}),
    "pending": frozenset({"shipping", "canceled", "failed"}),
    "shipping": frozenset({"succeeded", "partial", "failed", "canceled"}),
}
TERMINAL = frozenset({"succeeded", "partial", "failed", "canceled"})
ITEM_DONE = frozenset({"succeeded", "failed", "canceled"})


def steps(current: str, target: str) -> list[str]:
    """The statuses an order passes through from `current` to `target` (through `shipping`
    when the direct change is not allowed but that one is); TransitionRefused otherwise."""
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
