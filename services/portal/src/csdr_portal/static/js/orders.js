// The basket, "My orders" and the organisation's quota, over the orders service: scenes are
// gathered in a basket (sessionStorage, this tab), the quota left is shown before ordering, and
// the basket becomes one order (an Idempotency-Key per attempt, so a double click orders once).

import { request } from "./api.js";
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

export function renderOrders(ul, list) {
  ul.replaceChildren(
    ...list.map((order) => {
      const li = document.createElement("li");
      li.dataset.id = order.id;
      li.dataset.status = order.status;
      // The listing counts an order's scenes; GET /orders/{id} has them one by one.
      li.textContent = t("orders.row", {
        created: (order.created || "").slice(0, 16).replace("T", " "),
        status: order.status,
        items: formatNumber(order.items),
      });
      return li;
    }),
  );
}
