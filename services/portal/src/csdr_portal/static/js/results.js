// The result list: one row per scene of the page (the same scenes as the footprints on the map),
// the total, the pager; rows are options of a listbox (arrow keys move, Enter selects).

import { isOnline } from "./availability.js";
import { t, formatNumber } from "./i18n.js";
import { selectionKey } from "./state.js";

function thumbnail(item) {
  const asset = Object.values(item.assets || {}).find((a) => (a.roles || []).includes("thumbnail"));
  return asset && /^https?:/.test(asset.href) ? asset.href : null;
}

function row(item) {
  const li = document.createElement("li");
  li.setAttribute("role", "option");
  li.id = `row-${selectionKey(item)}`;
  li.dataset.key = selectionKey(item);
  li.setAttribute("aria-selected", "false");
  const img = document.createElement("img");
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  const src = thumbnail(item);
  if (src) img.src = src;
  const text = document.createElement("div");
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = item.id;
  const p = item.properties;
  const meta = document.createElement("div");
  meta.className = "meta";
  const bits = [
    (p.datetime || "").slice(0, 10),
    [p.platform, (p.instruments || []).join("/")].filter(Boolean).join(" ").toUpperCase(),
  ];
  if (typeof p["eo:cloud_cover"] === "number") bits.push(t("results.cloud", { cloud: p["eo:cloud_cover"] }));
  meta.textContent = bits.filter(Boolean).join(" · ");
  const badge = document.createElement("span");
  const offline = !isOnline(item);
  badge.className = `badge ${offline ? "offline" : "online"}`;
  badge.textContent = t(offline ? "results.offline" : "results.online");
  meta.append(" ", badge);
  text.append(name, meta);
  li.append(img, text);
  return li;
}

export function renderResults(ol, items) {
  ol.replaceChildren(...items.map(row));
}

export function renderTotal(el, doc) {
  const count = doc.numberMatched;
  if (typeof count !== "number") {
    el.textContent = "";
    return;
  }
  el.dataset.count = String(count);
  const key = doc.numberMatchedEstimated ? "results.total_estimated" : "results.total";
  el.textContent = count === 0 ? t("results.none") : t(key, { count: formatNumber(count) });
}

export function markRow(ol, key, cls, on) {
  for (const li of ol.querySelectorAll(`li.${cls}`)) li.classList.remove(cls);
  if (!key || !on) return null;
  const li = [...ol.children].find((el) => el.dataset.key === key);
  if (li) li.classList.add(cls);
  return li;
}

export function markSelected(ol, key) {
  let found = null;
  for (const li of ol.children) {
    const is = li.dataset.key === key;
    li.setAttribute("aria-selected", String(is));
    if (is) found = li;
  }
  if (found) ol.setAttribute("aria-activedescendant", found.id);
  return found;
}
