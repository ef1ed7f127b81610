// The organisation pages, for the organisation of the key in use: its keys, orders,
// subscriptions and usage statistics (a table and its CSV); a data manager (an admin key) also
// sees every organisation, every key and the collections' policies. Each page reads one of the
// node's public APIs, which show a partner its own rows only: nothing is filtered here.
// Changes go through the same APIs with the user's key, which judge them: an organisation's
// administrator (the scopes `grants` of /account) issues and revokes its keys; a data manager
// also registers organisations, switches their manual approval, sets policies and approves or
// refuses held orders. Each change redraws its table.

import { request, requestText } from "./api.js";
import { save } from "./exports.js";
import { formatNumber, t } from "./i18n.js";

const PARTNER_PAGES = ["keys", "orders", "subscriptions", "usage"];
const ADMIN_PAGES = ["organisations", "keys", "policies", "orders", "subscriptions", "usage"];
export const USAGE_GROUPS = ["country", "organisation", "platform", "instrument", "collection", "class"];
export const USAGE_PERIODS = ["year", "quarter", "month"];
const MEASURES = ["source", "ordered", "released", "downloaded"];

// Which pages the account has, given the services the node runs.
export function pagesFor(account, config) {
  const pages = account.admin ? ADMIN_PAGES : PARTNER_PAGES;
  return pages.filter(
    (p) => !((p === "orders" || p === "usage") && !config.orders) && !(p === "subscriptions" && !config.push),
  );
}

export async function account(catalog) {
  return request(`${catalog}/account`);
}

function day(iso) {
  return iso ? String(iso).slice(0, 10) : "";
}

// A table: a header row of translated column names and one row per record; `key` names the
// record (data-row, for tests and styling).
function table(name, columns, records, key, decorate = () => {}) {
  const el = document.createElement("table");
  el.dataset.table = name;
  const head = el.createTHead().insertRow();
  for (const [label] of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = label;
    head.append(th);
  }
  const body = el.createTBody();
  for (const record of records) {
    const tr = body.insertRow();
    tr.dataset.row = key(record);
    decorate(tr, record);
    for (const [, cell] of columns) {
      const value = cell(record);
      if (value instanceof Node) tr.insertCell().append(value);
      else tr.insertCell().textContent = value ?? "";
    }
  }
  if (!records.length) {
    const td = body.insertRow().insertCell();
    td.colSpan = columns.length;
    td.textContent = t("org.empty");
  }
  return el;
}

function keyStatus(k) {
  if (k.revoked_at) return t("org.key_revoked", { at: day(k.revoked_at) });
  if (k.expires_at && new Date(k.expires_at) <= new Date()) return t("org.key_expired", { at: day(k.expires_at) });
  return t("org.key_active");
}

function button(className, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = label;
  b.addEventListener("click", onClick);
  return b;
}

// A button that acts on its second click: the first asks to confirm (for what cannot be undone).
function confirmed(className, label, confirmLabel, act) {
  const b = button(className, label, () => {
    if (b.dataset.confirm !== "true") {
      b.dataset.confirm = "true";
      b.textContent = confirmLabel;
      return;
    }
    b.disabled = true;
    act().finally(() => {
      b.disabled = false;
    });
  });
  return b;
}

// Whether the key in use may revoke `k`: an active key of its organisation (a data manager: any)
// holding only scopes it may grant, and not the key in use itself.
function revocable(k, account) {
  const grants = account.grants || [];
  return (
    !k.revoked_at &&
    k.prefix !== account.key &&
    (account.admin || k.org === account.organisation) &&
    (k.scopes || []).every((s) => grants.includes(s))
  );
}

async function keysPage(ctx) {
  const { catalog } = ctx.config;
  const manager = (ctx.account.grants || []).length > 0;
  const holder = document.createElement("div");
  const redraw = async () => {
    const keys = ctx.account.admin
      ? await request(`${catalog}/admin/keys`)
      : await request(`${catalog}/account/keys`);
    const actions = (k) =>
      manager && revocable(k, ctx.account)
        ? confirmed("revoke", t("org.revoke"), t("org.revoke_confirm"), () =>
            ctx.run(async () => {
              const base = ctx.account.admin ? `${catalog}/admin/keys` : `${catalog}/account/keys`;
              await request(`${base}/${encodeURIComponent(k.prefix)}`, { method: "DELETE" });
              await redraw();
            }),
          )
        : "";
    holder.replaceChildren(
      table(
        "keys",
        [
          [t("org.col.prefix"), (k) => k.prefix + (k.prefix === ctx.account.key ? ` (${t("org.this_key")})` : "")],
          [t("org.col.organisation"), (k) => k.org],
          [t("org.col.scopes"), (k) => (k.scopes || []).join(", ")],
          [t("org.col.label"), (k) => k.label],
          [t("org.col.created"), (k) => day(k.created_at)],
          [t("org.col.last_used"), (k) => day(k.last_used_at)],
          [t("org.col.status"), keyStatus],
          ...(manager ? [[t("org.col.actions"), actions]] : []),
        ],
        keys,
        (k) => k.prefix,
        (tr, k) => (tr.dataset.status = k.revoked_at ? "revoked" : "active"),
      ),
    );
  };
  await redraw();
  return manager ? [await issueForm(ctx, redraw), holder] : [holder];
}

function labelled(text, control) {
  const label = document.createElement("label");
  const span = document.createElement("span");
  span.textContent = text;
  label.append(span, " ", control);
  return label;
}

// Issue a key: its organisation (a data manager chooses), scopes among those the key in use may
// grant, a label and a last day. The new key is shown here once, never stored.
async function issueForm(ctx, redraw) {
  const { catalog } = ctx.config;
  const form = document.createElement("form");
  form.id = "key-issue";
  form.className = "row";
  const title = document.createElement("h3");
  title.textContent = t("org.issue_title");
  form.append(title);
  let org = null;
  if (ctx.account.admin) {
    org = document.createElement("select");
    org.id = "issue-org";
    for (const o of await request(`${catalog}/admin/organisations`)) {
      org.append(new Option(o.name, o.name, false, o.name === ctx.account.organisation));
    }
    form.append(labelled(t("org.col.organisation"), org));
  }
  const scopes = document.createElement("fieldset");
  scopes.id = "issue-scopes";
  const legend = document.createElement("legend");
  legend.textContent = t("org.col.scopes");
  scopes.append(legend);
  for (const scope of ctx.account.grants) {
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "issue-scope";
    box.value = scope;
    box.checked = scope === "read";
    scopes.append(labelled(scope, box));
  }
  const label = document.createElement("input");
  label.id = "issue-label";
  label.maxLength = 200;
  const expires = document.createElement("input");
  expires.type = "date";
  expires.id = "issue-expires";
  const submit = document.createElement("button");
  submit.id = "issue-submit";
  submit.textContent = t("org.issue");
  const shown = document.createElement("div");
  shown.id = "issued-key";
  shown.setAttribute("role", "status");
  shown.hidden = true;
  form.append(scopes, labelled(t("org.col.label"), label), labelled(t("org.expires"), expires), submit, shown);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(async () => {
      const body = { scopes: [...scopes.querySelectorAll("input:checked")].map((b) => b.value) };
      if (label.value.trim()) body.label = label.value.trim();
      if (expires.value) body.expires = expires.value;
      const issued = org
        ? await request(`${catalog}/admin/keys`, { method: "POST", body: { ...body, org: org.value } })
        : await request(`${catalog}/account/keys`, { method: "POST", body });
      showIssued(shown, issued);
      label.value = "";
      await redraw();
    });
  });
  return form;
}

function showIssued(el, issued) {
  const note = document.createElement("p");
  note.textContent = t("org.issued_once", { prefix: issued.prefix });
  const secret = document.createElement("code");
  secret.id = "issued-secret";
  secret.textContent = issued.key;
  const copy = button("copy", t("org.copy_key"), () => navigator.clipboard.writeText(issued.key).catch(() => {}));
  const hide = button("forget", t("org.hide_key"), () => {
    el.replaceChildren();
    el.hidden = true;
  });
  el.replaceChildren(note, secret, copy, hide);
  el.hidden = false;
}

const ORG_KINDS = ["partner", "agency", "main"];

// The node administrator's organisations: every one with its approval switch (its orders wait
// for an administrator, or are accepted at once), and a form registering a new one.
async function organisationsPage(ctx) {
  const { catalog } = ctx.config;
  const holder = document.createElement("div");
  const redraw = async () => {
    const orgs = await request(`${catalog}/admin/organisations`);
    holder.replaceChildren(
      table(
        "organisations",
        [
          [t("org.col.organisation"), (o) => o.name],
          [t("org.col.country"), (o) => o.country],
          [t("org.col.kind"), (o) => o.kind],
          [t("org.col.created"), (o) => day(o.created_at)],
          [t("org.col.approval"), (o) => approvalSwitch(ctx, o, redraw)],
        ],
        orgs,
        (o) => o.name,
        (tr, o) => (tr.dataset.approval = o.approval),
      ),
    );
  };
  await redraw();
  return [registerForm(ctx, redraw), holder];
}

// Whether an organisation's orders wait for an administrator; a change applies at once.
function approvalSwitch(ctx, o, redraw) {
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "approval";
  box.checked = o.approval === "manual";
  const label = labelled(t("org.manual_approval"), box);
  box.addEventListener("change", () =>
    ctx.run(async () => {
      box.disabled = true;
      const url = `${ctx.config.catalog}/admin/organisations/${encodeURIComponent(o.name)}/approval`;
      try {
        await request(url, { method: "PUT", body: { approval: box.checked ? "manual" : "auto" } });
      } finally {
        await redraw();
      }
    }),
  );
  return label;
}

function registerForm(ctx, redraw) {
  const form = document.createElement("form");
  form.id = "org-register";
  form.className = "row";
  const title = document.createElement("h3");
  title.textContent = t("org.register_title");
  const name = document.createElement("input");
  name.id = "register-name";
  name.required = true;
  name.maxLength = 200;
  const country = document.createElement("input");
  country.id = "register-country";
  country.required = true;
  country.pattern = "[A-Za-z]{2}";
  country.maxLength = 2;
  country.size = 3;
  country.placeholder = "TH";
  const kind = document.createElement("select");
  kind.id = "register-kind";
  for (const k of ORG_KINDS) kind.append(new Option(k, k));
  const submit = document.createElement("button");
  submit.id = "register-submit";
  submit.textContent = t("org.register");
  form.append(
    title,
    labelled(t("org.col.organisation"), name),
    labelled(t("org.country_code"), country),
    labelled(t("org.col.kind"), kind),
    submit,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.run(async () => {
      const body = { name: name.value.trim(), country: country.value.trim().toUpperCase(), kind: kind.value };
      await request(`${ctx.config.catalog}/admin/organisations`, { method: "POST", body });
      name.value = "";
      country.value = "";
      await redraw();
    });
  });
  return form;
}

const POLICIES = ["public", "registered", "partners", "private"];

// A collection's policy editor: who may see it and, for `partners`, which organisations.
function policyEditor(ctx, p, orgs, redraw) {
  const box = document.createElement("div");
  box.className = "policy-editor";
  const policy = document.createElement("select");
  policy.className = "policy";
  policy.setAttribute("aria-label", t("org.col.policy"));
  for (const name of POLICIES) policy.append(new Option(t(`org.policy.${name}`), name, false, name === p.policy));
  const partners = document.createElement("select");
  partners.className = "partners";
  partners.multiple = true;
  partners.size = Math.min(4, Math.max(2, orgs.length));
  partners.setAttribute("aria-label", t("org.col.partners"));
  for (const o of orgs) partners.append(new Option(o.name, o.name, false, (p.orgs || []).includes(o.name)));
  const sync = () => (partners.disabled = policy.value !== "partners");
  policy.addEventListener("change", sync);
  sync();
  const save = button("save-policy", t("org.save"), () =>
    ctx.run(async () => {
      const body = { policy: policy.value };
      if (policy.value === "partners") body.orgs = [...partners.selectedOptions].map((o) => o.value);
      await request(`${ctx.config.catalog}/admin/policies/${encodeURIComponent(p.collection)}`, {
        method: "PUT",
        body,
      });
      await redraw();
    }),
  );
  box.append(policy, partners, save);
  return box;
}

async function policiesPage(ctx) {
  const holder = document.createElement("div");
  const orgs = await request(`${ctx.config.catalog}/admin/organisations`);
  const redraw = async () => {
    const policies = await request(`${ctx.config.catalog}/admin/policies`);
    holder.replaceChildren(
      table(
        "policies",
        [
          [t("org.col.collection"), (p) => p.collection],
          [t("org.col.policy"), (p) => t(`org.policy.${p.policy}`)],
          [t("org.col.partners"), (p) => (p.orgs || []).join(", ")],
          [t("org.col.change"), (p) => policyEditor(ctx, p, orgs, redraw)],
        ],
        policies,
        (p) => p.collection,
        (tr, p) => (tr.dataset.policy = p.policy),
      ),
    );
  };
  await redraw();
  return holder;
}

// An administrator's decision on an order held for approval, with an optional reason.
function decision(ctx, o, redraw) {
  const box = document.createElement("div");
  box.className = "decision";
  const reason = document.createElement("input");
  reason.className = "reason";
  reason.maxLength = 1000;
  reason.placeholder = t("org.reason");
  reason.setAttribute("aria-label", t("org.reason"));
  const decide = (action) =>
    ctx.run(async () => {
      const body = reason.value.trim() ? { reason: reason.value.trim() } : {};
      await request(`${ctx.config.orders}/orders/${o.id}/${action}`, { method: "POST", body });
      await redraw();
    });
  box.append(
    reason,
    button("approve", t("org.approve"), () => decide("approve")),
    button("refuse", t("org.refuse"), () => decide("reject")),
  );
  return box;
}

async function ordersPage(ctx) {
  const holder = document.createElement("div");
  const redraw = async () => {
    const doc = await request(`${ctx.config.orders}/orders?limit=1000`);
    const held = (o) => o.awaiting_approval && ctx.account.admin;
    holder.replaceChildren(
      table(
        "orders",
        [
          [t("org.col.created"), (o) => String(o.created || "").slice(0, 16).replace("T", " ")],
          [t("org.col.organisation"), (o) => o.organisation],
          [t("org.col.status"), (o) => (o.awaiting_approval ? t("org.awaiting_approval") : t(`orders.status.${o.status}`))],
          [t("org.col.scenes"), (o) => formatNumber(o.items)],
          [t("org.col.order"), (o) => o.id],
          ...(ctx.account.admin ? [[t("org.col.actions"), (o) => (held(o) ? decision(ctx, o, redraw) : "")]] : []),
        ],
        doc.orders || [],
        (o) => o.id,
        (tr, o) => {
          tr.dataset.status = o.status;
          tr.dataset.awaiting = String(Boolean(o.awaiting_approval));
        },
      ),
    );
  };
  await redraw();
  return holder;
}

async function subscriptionsPage(ctx) {
  const doc = await request(`${ctx.config.push}/subscriptions`);
  return table(
    "subscriptions",
    [
      [t("org.col.organisation"), (s) => s.owner],
      [t("org.col.collections"), (s) => (s.collections || [t("subscribe.all_collections")]).join(", ")],
      [t("org.col.area"), (s) => (s.bbox ? s.bbox.join(", ") : s.intersects ? s.intersects.type : "")],
      [t("org.col.webhook"), (s) => (s.webhook && s.webhook.url) || ""],
      [t("org.col.status"), (s) => t(s.status === "paused" ? "subscribe.paused" : "subscribe.active")],
      [t("org.col.created"), (s) => day(s.created_at)],
    ],
    doc.subscriptions || [],
    (s) => s.id,
  );
}

export function usageQuery(usage, format = "json") {
  const q = new URLSearchParams();
  if (usage.from) q.set("from", usage.from);
  if (usage.to) q.set("to", usage.to);
  q.set("group_by", usage.groups.join(","));
  q.set("format", format);
  return q.toString();
}

// Usage statistics: the report's rows and totals (scenes in the catalogue over the area, and
// sums of the orders service's ledger), each
// organisation's quota, and the same report as CSV from the service itself.
async function usagePage(ctx) {
  const base = `${ctx.config.orders}/stats/usage`;
  const report = await request(`${base}?${usageQuery(ctx.usage)}`);
  const groups = report.group_by || [];
  const columns = [
    ...groups.map((g) => [t(`org.group.${g}`), (r) => r[g]]),
    ...MEASURES.map((m) => [t(`org.measure.${m}`), (r) => formatNumber(r[m] || 0)]),
  ];
  const rows = table("usage", columns, report.rows || [], (r) => groups.map((g) => r[g] ?? "").join("|"));
  if ((report.rows || []).length) {
    const foot = rows.createTFoot().insertRow();
    foot.dataset.row = "totals";
    groups.forEach((g, n) => (foot.insertCell().textContent = n === 0 ? t("org.totals") : ""));
    for (const m of MEASURES) foot.insertCell().textContent = formatNumber((report.totals || {})[m] || 0);
  }
  const period = document.createElement("p");
  period.className = "hint";
  period.textContent = t("org.usage_period", { from: day(report.from), to: day(report.to) });
  const csv = document.createElement("button");
  csv.type = "button";
  csv.id = "usage-csv";
  csv.textContent = t("org.usage_csv");
  csv.addEventListener("click", () =>
    ctx.run(async () => save("usage.csv", "text/csv", await requestText(`${base}?${usageQuery(ctx.usage, "csv")}`))),
  );
  const quotas = table(
    "quotas",
    [
      [t("org.col.organisation"), (q) => q.organisation],
      [t("org.col.class"), (q) => q.class],
      [t("org.col.limit"), (q) => formatNumber(q.limit)],
      [t("org.col.used"), (q) => formatNumber(q.used)],
      [t("org.col.reserved"), (q) => formatNumber(q.reserved)],
      [t("org.col.remaining"), (q) => formatNumber(q.remaining)],
    ],
    report.quotas || [],
    (q) => `${q.organisation}|${q.class}`,
  );
  const quotaTitle = document.createElement("h3");
  quotaTitle.textContent = t("org.quotas");
  return [period, rows, csv, quotaTitle, quotas];
}

const PAGES = {
  keys: keysPage,
  organisations: organisationsPage,
  policies: policiesPage,
  orders: ordersPage,
  subscriptions: subscriptionsPage,
  usage: usagePage,
};

// Draw the tabs and the chosen page into `el` ({title, tabs, body, usageForm}).
export async function renderOrgPage(el, ctx) {
  const pages = pagesFor(ctx.account, ctx.config);
  const page = pages.includes(ctx.page) ? ctx.page : pages[0];
  el.title.textContent = t(ctx.account.admin ? "org.title_admin" : "org.title", {
    organisation: ctx.account.organisation,
    country: ctx.account.country,
  });
  el.tabs.replaceChildren(
    ...pages.map((p) => {
      const b = document.createElement("button");
      b.type = "button";
      b.setAttribute("role", "tab");
      b.dataset.page = p;
      b.id = `org-tab-${p}`;
      b.setAttribute("aria-selected", String(p === page));
      b.textContent = t(`org.page.${p}`);
      b.addEventListener("click", () => ctx.open(p));
      return b;
    }),
  );
  el.usageForm.hidden = page !== "usage";
  el.body.dataset.page = page;
  const drawn = await PAGES[page](ctx);
  el.body.replaceChildren(...(Array.isArray(drawn) ? drawn : [drawn]));
  return page;
}
