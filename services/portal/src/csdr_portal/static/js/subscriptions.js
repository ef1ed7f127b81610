// "Notify me of new scenes like this": the current search (collections, area, property filter)
// as a push subscription to the user's webhook, signed with a secret made here and shown once;
// the organisation's subscriptions listed with pause and resume.

import { request } from "./api.js";
import { cqlFilter } from "./search.js";
import { t } from "./i18n.js";

function newSecret() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return `whsec_${btoa(String.fromCharCode(...bytes))}`;
}

export function subscriptionFor(state, webhook) {
  const body = { collections: state.collections.length ? state.collections : null, webhook };
  if (state.area) body.intersects = state.area;
  else if (state.bbox) body.bbox = state.bbox;
  const filter = cqlFilter(state);
  if (filter) body.filter = filter;
  return body;
}

export async function subscribe(push, state, url) {
  const secret = newSecret();
  const created = await request(`${push}/subscriptions`, {
    method: "POST",
    body: subscriptionFor(state, { url, secret }),
  });
  return { created, secret };
}

export async function listSubscriptions(push) {
  const doc = await request(`${push}/subscriptions`);
  return doc.subscriptions || [];
}

export function renderSubscriptions(ul, push, subs, refresh, report) {
  ul.replaceChildren();
  for (const s of subs) {
    const li = document.createElement("li");
    li.dataset.id = s.id;
    li.dataset.status = s.status;
    const area = s.bbox ? s.bbox.join(", ") : s.intersects ? s.intersects.type : "";
    const what = document.createElement("span");
    what.textContent = t("subscribe.what", {
      collections: (s.collections || [t("subscribe.all_collections")]).join(", "),
      area,
    });
    const status = document.createElement("span");
    status.className = `badge ${s.status}`;
    status.textContent = t(s.status === "paused" ? "subscribe.paused" : "subscribe.active");
    const action = s.status === "paused" ? "resume" : "pause";
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = t(`subscribe.${action}`);
    button.addEventListener("click", async () => {
      try {
        await request(`${push}/subscriptions/${s.id}/${action}`, { method: "POST" });
        await refresh();
      } catch (exc) {
        report(exc);
      }
    });
    li.append(what, status, button);
    ul.append(li);
  }
}
