// The basket, "My orders" and the organisation's quota, over the orders service: scenes are
// gathered in a basket (sessionStorage, this tab), the quota left is shown before ordering, and
// the basket becomes one order (an Idempotency-Key per attempt, so a double click orders once).

import { request, tracked } from "./api.js";
import { t, formatNumber } from "./i18n.js";

const STORAGE = "csdr.portal.basket";

export function basket() {
  try {
    return JSON.parse(window.sessionStorage.getItem(STORAGE) || "[]");
  } catch {
    return [];
  }
}

function keep(items) {
  window.sessionStorage.setItem(STORAGE, JSON.stringify(items));
}

export function addToBasket(item) {
  const items = basket();
  if (!items.some((i) => i.collection === item.collection && i.id === item.id)) {
    items.push({ collection: item.collection, id: item.id });
    keep(items);
  }
}

export function removeFromBasket(ref) {
  keep(basket().filter((i) => !(i.collection === ref.collection && i.id === ref.id)));
}

export async function quota(orders) {
  return request(`${orders}/quota`);
}

export async function myOrders(orders) {
  const doc = await request(`${orders}/orders?limit=20`);
  return doc.orders || [];
}

export async function placeOrder(orders, items, attempt) {
  const order = await request(`${orders}/orders`, {
    method: "POST",
    body: { items },
    headers: { "Idempotency-Key": attempt },
  });
  keep([]);
  return order;
}

export function renderQuota(el, doc) {
  el.replaceChildren();
  for (const q of doc.quotas || []) {
    const p = document.createElement("p");
    p.dataset.class = q.class;
    p.dataset.remaining = String(q.remaining);
    p.textContent = t("orders.quota", {
      class: q.class,
      remaining: formatNumber(q.remaining),
      limit: formatNumber(q.limit),
      resets: (q.resets_at || "").slice(0, 10),
    });
    el.append(p);
  }
}

export function renderBasket(ul, items, onRemove) {
  ul.replaceChildren(
    ...items.map((ref) => {
      const li = document.createElement("li");
      li.dataset.key = `${ref.collection}/${ref.id}`;
      const name = document.createElement("span");
      name.textContent = ref.id;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = t("orders.remove");
      remove.addEventListener("click", () => onRemove(ref));
      li.append(name, remove);
      return li;
    }),
  );
}

// What an order in each status may still do (the orders service's lifecycle: a finished order
// cannot be canceled; links exist once something was delivered).
const CANCELABLE = new Set(["ordered", "pending", "shipping"]);
const RENEWABLE = new Set(["shipping", "succeeded", "partial"]);
const opened = new Set(); // orders whose details are open, kept across refreshes

export function orderAction(orders, id, action) {
  return request(`${orders}/orders/${encodeURIComponent(id)}/${action}`, { method: "POST" });
}

function button(cls, label, run) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.addEventListener("click", run);
  return b;
}

function when(iso) {
  return (iso || "").slice(0, 16).replace("T", " ");
}

// The order's history (append-only, oldest first), when its links expire, and the delivered
// scenes' signed links (they carry a signature for the organisation, never the key).
async function renderDetails(box, orders, id, status) {
  const base = `${orders}/orders/${encodeURIComponent(id)}`;
  const [order, delivered] = await Promise.all([
    request(base),
    RENEWABLE.has(status) ? request(`${base}/items`) : null,
  ]);
  const history = document.createElement("ol");
  history.className = "history";
  for (const h of order.history || []) {
    const li = document.createElement("li");
    li.dataset.status = h.status;
    li.dataset.reason = h.reason_code || "";
    li.textContent = t("orders.history_row", {
      at: when(h.at),
      status: t(`orders.status.${h.status}`),
      scene: h.id ? ` ${h.id}` : "",
      reason: h.reason_text || h.reason_code || "",
    });
    history.append(li);
  }
  const parts = [history];
  if (RENEWABLE.has(order.status) && order.expires) {
    const expires = document.createElement("p");
    expires.className = "expires";
    expires.dataset.expires = order.expires;
    expires.textContent = t("orders.expires", { expires: when(order.expires) });
    parts.push(expires);
  }
  const links = document.createElement("ul");
  links.className = "delivered";
  for (const feature of (delivered && delivered.features) || []) {
    for (const asset of Object.values(feature.assets || {})) {
      if (!(asset.roles || []).includes("data")) continue;
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = asset.href;
      a.rel = "noopener";
      a.textContent = t("orders.download", { id: feature.id });
      li.append(a);
      links.append(li);
    }
  }
  if (links.children.length) parts.push(links);
  box.replaceChildren(...parts);
  return order;
}

// "My orders": each order with its status, cancel (where still allowed), renew links (where
// something was delivered) and its details (history, expiry, delivered files) on demand.
export function renderOrders(ul, list, orders, { changed, report }) {
  // One tracked flow per click: the page counts as busy until the list is drawn again.
  const act = (fn) => () =>
    tracked(async () => {
      try {
        await fn();
      } catch (exc) {
        report(exc);
      }
      await changed();
    });
  ul.replaceChildren(
    ...list.map((order) => {
      const li = document.createElement("li");
      li.dataset.id = order.id;
      li.dataset.status = order.status;
      // The listing counts an order's scenes; GET /orders/{id} has them one by one.
      const summary = document.createElement("span");
      summary.className = "summary";
      summary.textContent = t("orders.row", {
        created: when(order.created),
        status: t(`orders.status.${order.status}`),
        items: formatNumber(order.items),
      });
      const details = document.createElement("div");
      details.className = "details";
      const toggle = button("toggle-details", t("orders.details"), act(() => {
        if (opened.has(order.id)) opened.delete(order.id);
        else opened.add(order.id);
      }));
      toggle.setAttribute("aria-expanded", String(opened.has(order.id)));
      li.append(summary, toggle);
      if (CANCELABLE.has(order.status)) {
        li.append(button("cancel", t("orders.cancel"), act(() => orderAction(orders, order.id, "cancel"))));
      }
      if (RENEWABLE.has(order.status)) {
        li.append(button("renew", t("orders.renew"), act(async () => {
          await orderAction(orders, order.id, "renew");
          opened.add(order.id);
        })));
      }
      li.append(details);
      return li;
    }),
  );
  return Promise.all(
    [...ul.children]
      .filter((li) => opened.has(li.dataset.id))
      .map((li) =>
        renderDetails(li.querySelector(".details"), orders, li.dataset.id, li.dataset.status).catch(report),
      ),
  );
}
