// The organisation pages, for the organisation of the key in use: its keys, orders,
// subscriptions and usage statistics (a table and its CSV); a data manager (an admin key) also
// sees every organisation, every key and the collections' policies. Each page reads one of the
// node's public APIs, which show a partner its own rows only: nothing is filtered here.

import { request, requestText } from "./api.js";
import { save } from "./exports.js";
import { formatNumber, t } from "./i18n.js";

const PARTNER_PAGES = ["keys", "orders", "subscriptions", "usage"];
const ADMIN_PAGES = ["organisations", "keys", "policies", "orders", "subscriptions", "usage"];
export const USAGE_GROUPS = ["country", "organisation", "platform", "instrument", "collection", "class"];
export const USAGE_PERIODS = ["year", "quarter", "month"];
const MEASURES = ["ordered", "released", "downloaded"];

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
function table(name, columns, records, key) {
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
    for (const [, cell] of columns) tr.insertCell().textContent = cell(record) ?? "";
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

async function keysPage(ctx) {
  const keys = ctx.account.admin
    ? await request(`${ctx.config.catalog}/admin/keys`)
    : await request(`${ctx.config.catalog}/account/keys`);
  return table(
    "keys",
    [
      [t("org.col.prefix"), (k) => k.prefix + (k.prefix === ctx.account.key ? ` (${t("org.this_key")})` : "")],
      [t("org.col.organisation"), (k) => k.org],
      [t("org.col.scopes"), (k) => (k.scopes || []).join(", ")],
      [t("org.col.label"), (k) => k.label],
      [t("org.col.created"), (k) => day(k.created_at)],
      [t("org.col.last_used"), (k) => day(k.last_used_at)],
      [t("org.col.status"), keyStatus],
    ],
    keys,
    (k) => k.prefix,
  );
}

async function organisationsPage(ctx) {
  const orgs = await request(`${ctx.config.catalog}/admin/organisations`);
  return table(
    "organisations",
    [
      [t("org.col.organisation"), (o) => o.name],
      [t("org.col.country"), (o) => o.country],
      [t("org.col.kind"), (o) => o.kind],
      [t("org.col.created"), (o) => day(o.created_at)],
    ],
    orgs,
    (o) => o.name,
  );
}

async function policiesPage(ctx) {
  const policies = await request(`${ctx.config.catalog}/admin/policies`);
  return table(
    "policies",
    [
      [t("org.col.collection"), (p) => p.collection],
      [t("org.col.policy"), (p) => t(`org.policy.${p.policy}`)],
      [t("org.col.partners"), (p) => (p.orgs || []).join(", ")],
    ],
    policies,
    (p) => p.collection,
  );
}

async function ordersPage(ctx) {
  const doc = await request(`${ctx.config.orders}/orders?limit=1000`);
  return table(
    "orders",
    [
      [t("org.col.created"), (o) => String(o.created || "").slice(0, 16).replace("T", " ")],
      [t("org.col.organisation"), (o) => o.organisation],
      [t("org.col.status"), (o) => t(`orders.status.${o.status}`)],
      [t("org.col.scenes"), (o) => formatNumber(o.items)],
      [t("org.col.order"), (o) => o.id],
    ],
    doc.orders || [],
    (o) => o.id,
  );
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

// Usage statistics: the report's rows and totals (sums of the orders service's ledger), each
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
