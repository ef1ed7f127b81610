// Which scenes are online and which offline: the node's one rule (csdr_storage.availability,
// the database's csdr.scene_online), here for the browser. A scene is online when its item's
// `order:status` (STAC order extension) is absent or `succeeded`; any other status (`orderable`:
// archived, produced on order; an order's states) is offline. tests/e2e/test_portal.py holds the
// badge and the filters to the same answers as the tiler and the orders service.

export const ORDER_STATUS = "order:status";
const ONLINE_STATUS = "succeeded";

export function isOnline(item) {
  const status = (item.properties || {})[ORDER_STATUS];
  return status === undefined || status === null || status === ONLINE_STATUS;
}

const ONLINE = {
  op: "or",
  args: [
    { op: "isNull", args: [{ property: ORDER_STATUS }] },
    { op: "=", args: [{ property: ORDER_STATUS }, ONLINE_STATUS] },
  ],
};

// CQL2 JSON for the search's online/offline choice.
export const AVAILABILITY = { online: ONLINE, offline: { op: "not", args: [ONLINE] } };
