// The application's state, all of it in the page URL so that a copied link restores the same
// search, page, selection and view (the map's position is MapLibre's `#map=` hash). The API key is
// never part of it: it lives in sessionStorage (key.js).

export const PAGE_SIZES = [10, 20, 50];

const NUMBER_LIST = /^-?\d+(\.\d+)?(,-?\d+(\.\d+)?){3}$/;

function parseBbox(text) {
  if (!text || !NUMBER_LIST.test(text)) return null;
  const [w, s, e, n] = text.split(",").map(Number);
  if (w >= e || s >= n || w < -180 || e > 180 || s < -90 || n > 90) return null;
  return [w, s, e, n];
}

function parseArea(text) {
  if (!text) return null;
  try {
    const geometry = JSON.parse(text);
    return ["Polygon", "MultiPolygon"].includes(geometry.type) ? geometry : null;
  } catch {
    return null;
  }
}

export function readState(search = window.location.search) {
  const q = new URLSearchParams(search);
  const limit = Number(q.get("limit"));
  const cloud = q.get("cloud");
  return {
    collections: (q.get("c") || "").split(",").filter(Boolean),
    from: q.get("from") || "",
    to: q.get("to") || "",
    cloud: cloud === null || cloud === "" ? null : Math.min(100, Math.max(0, Number(cloud))),
    availability: ["online", "offline"].includes(q.get("avail")) ? q.get("avail") : "",
    bbox: parseBbox(q.get("bbox")),
    area: parseArea(q.get("area")),
    limit: PAGE_SIZES.includes(limit) ? limit : PAGE_SIZES[0],
    token: q.get("token") || "",
    page: Math.max(1, Number(q.get("page")) || 1),
    selected: q.get("sel") || "",
    preset: q.get("preset") || "",
    opacity: q.has("opacity") ? Math.min(1, Math.max(0, Number(q.get("opacity")))) : 1,
    pin: q.get("pin") || "",
    swipe: q.has("swipe") ? Math.min(1, Math.max(0, Number(q.get("swipe")))) : 0.5,
    lang: q.get("lang") || "",
    view: q.get("view") === "map" ? "map" : "list",
    org: q.get("org") || "",
    usageFrom: q.get("ufrom") || "",
    usageTo: q.get("uto") || "",
    usageGroups: (q.get("ugroup") || "organisation,collection").split(",").filter(Boolean),
  };
}

export function writeState(state, { push = false } = {}) {
  const q = new URLSearchParams();
  if (state.collections.length) q.set("c", state.collections.join(","));
  if (state.from) q.set("from", state.from);
  if (state.to) q.set("to", state.to);
  if (state.cloud !== null) q.set("cloud", String(state.cloud));
  if (state.availability) q.set("avail", state.availability);
  if (state.bbox) q.set("bbox", state.bbox.map((v) => Number(v.toFixed(5))).join(","));
  if (state.area) q.set("area", JSON.stringify(state.area));
  if (state.limit !== PAGE_SIZES[0]) q.set("limit", String(state.limit));
  if (state.token) {
    q.set("token", state.token);
    q.set("page", String(state.page));
  }
  if (state.selected) q.set("sel", state.selected);
  if (state.preset) q.set("preset", state.preset);
  if (state.opacity !== 1) q.set("opacity", String(state.opacity));
  if (state.pin) q.set("pin", state.pin);
  if (state.pin && state.swipe !== 0.5) q.set("swipe", String(state.swipe));
  if (state.lang) q.set("lang", state.lang);
  if (state.view !== "list") q.set("view", state.view);
  if (state.org) q.set("org", state.org);
  if (state.usageFrom) q.set("ufrom", state.usageFrom);
  if (state.usageTo) q.set("uto", state.usageTo);
  if (state.usageGroups.join(",") !== "organisation,collection") q.set("ugroup", state.usageGroups.join(","));
  const url = `${window.location.pathname}?${q.toString()}${window.location.hash}`;
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

// Selection is `collection/item id`: item ids are unique within a collection only.
export function selectionKey(item) {
  return `${item.collection}/${item.id}`;
}

export function splitSelection(key) {
  const cut = key.indexOf("/");
  return cut < 0 ? null : { collection: key.slice(0, cut), id: key.slice(cut + 1) };
}
