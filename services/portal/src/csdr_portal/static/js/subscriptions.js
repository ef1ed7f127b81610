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

function actionButton(cls, label, run) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = cls;
  button.textContent = label;
  button.addEventListener("click", run);
  return button;
}

// Each subscription: what it watches, its status, pause/resume, a test event, its dead letters
// (with a retry of them all).
export async function renderSubscriptions(ul, push, subs, refresh, report) {
  const base = (s) => `${push}/subscriptions/${s.id}`;
  const act = (fn) => async () => {
    try {
      await fn();
      await refresh();
    } catch (exc) {
      report(exc);
    }
  };
  const dead = await Promise.all(
    subs.map((s) =>
      request(`${base(s)}/deliveries?status=dead&limit=1000`)
        .then((doc) => doc.deliveries || [])
        .catch(() => []),
    ),
  );
  ul.replaceChildren();
  subs.forEach((s, n) => {
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
    const toggle = actionButton("toggle", t(`subscribe.${action}`), act(() => request(`${base(s)}/${action}`, { method: "POST" })));
    const test = actionButton("test", t("subscribe.test"), act(() => request(`${base(s)}/test`, { method: "POST" })));
    li.append(what, status, toggle, test);
    if (dead[n].length) {
      const letters = document.createElement("span");
      letters.className = "dead";
      letters.textContent = t("subscribe.dead", { count: dead[n].length });
      const retry = actionButton("retry", t("subscribe.retry"), act(() =>
        Promise.all(dead[n].map((d) => request(`${base(s)}/deliveries/${d.id}/retry`, { method: "POST" }))),
      ));
      li.append(letters, retry);
    }
    ul.append(li);
  });
}
