// The portal's entry point: reads /config.json and the URL state, draws the controls, and runs
// the search whenever the state changes. Every change of the state is written back to the URL.

import { ApiError, collectPages, request, tracked } from "./api.js";
import { exportItems } from "./exports.js";
import { apply, formatNumber, preferred, setLanguage, t } from "./i18n.js";
import { currentKey, setKey } from "./key.js";
import { createCompare } from "./compare.js";
import { createMap } from "./map.js";
import {
  addToBasket,
  basket,
  myOrders,
  placeOrder,
  quota,
  removeFromBasket,
  renderBasket,
  renderOrders,
  renderQuota,
} from "./orders.js";
import { mosaicLayers } from "./mosaic.js";
import { account, renderOrgPage, USAGE_GROUPS, USAGE_PERIODS } from "./org.js";
import { markRow, markSelected, renderResults, renderTotal } from "./results.js";
import { copyText, presets, showScene } from "./scene.js";
import { countsByCollection, offeredFilters, pageToken, search } from "./search.js";
import { readState, selectionKey, splitSelection, writeState } from "./state.js";
import { listSubscriptions, renderSubscriptions, subscribe } from "./subscriptions.js";
import { renderTree } from "./tree.js";

const $ = (id) => document.getElementById(id);

const app = {
  config: null,
  state: readState(),
  collections: [],
  counts: {},
  page: null, // the last search answer
  items: [],
  prevToken: null,
  nextToken: null,
  ui: null,
  compare: null, // the swipe's second map (compare.js)
  mapReady: null, // resolves once the map's style is loaded (its sources can be drawn on)
  searchSeq: 0,
  offered: { cloud: false, availability: false }, // the filters the queryables offer
  account: null, // GET /account of the key in use (organisation pages), null without a key
};

function report(exc) {
  const status = $("status");
  if (exc instanceof ApiError && exc.status === 401) {
    status.textContent = t("key.refused", { reason: exc.message });
  } else {
    status.textContent = t("search.failed", { reason: exc.message });
  }
  status.dataset.error = exc instanceof ApiError ? String(exc.status) : "error";
}

function clearReport() {
  $("status").textContent = "";
  delete $("status").dataset.error;
}

// A new search from page one (the filters changed).
function changed(patch) {
  Object.assign(app.state, patch, { token: "", page: 1, selected: "" });
  writeState(app.state, { push: true });
  tracked(() => refresh({ fit: true }));
}

async function refresh({ fit = false } = {}) {
  syncControls();
  await Promise.all([runSearch({ fit }), refreshCounts(), refreshFilterFields()]);
  await refreshMosaic();
}

// Above `mosaic_above` matches, the result set's mosaics in place of the page's footprints.
async function refreshMosaic() {
  const seq = app.searchSeq;
  const matched = app.page && typeof app.page.numberMatched === "number" ? app.page.numberMatched : 0;
  let layers = [];
  if (app.config.tiler && matched > app.config.mosaic_above && app.state.availability !== "offline") {
    try {
      // The same search: the tiler draws its online scenes only (an offline one has no imagery),
      // and a collection whose matches are all offline has no mosaic (its WMTS answers 404).
      const online =
        app.state.availability === "online" || !app.offered.availability
          ? app.counts
          : await countsByCollection(app.config.catalog, { ...app.state, availability: "online" });
      if (seq !== app.searchSeq) return;
      layers = await mosaicLayers(app.config.tiler, app.state, online);
    } catch (exc) {
      report(exc);
    }
  }
  if (seq !== app.searchSeq) return; // a newer search draws its own
  await app.mapReady;
  app.ui.showMosaic(layers);
  document.body.dataset.mosaic = String(layers.length);
}

async function runSearch({ fit }) {
  const seq = ++app.searchSeq;
  const list = $("results");
  list.setAttribute("aria-busy", "true");
  $("status").textContent = t("search.searching");
  try {
    const doc = await search(app.config.catalog, app.state);
    if (seq !== app.searchSeq) return;
    performance.mark("csdr:search-answered");
    await app.mapReady; // the first search runs while the map is still starting
    clearReport();
    app.page = doc;
    app.items = doc.features || [];
    app.prevToken = pageToken(doc, "prev");
    app.nextToken = pageToken(doc, "next");
    const onMap = drawPage();
    performance.mark("csdr:page-drawn");
    // Fitted at once, not once the worker holds the footprints: waiting for its answer costs
    // a frame (50-100 ms through a software renderer), more than tiles made twice.
    if (fit && app.items.length) app.ui.fitTo(app.items);
    // The results are on the map at its next idle once the worker holds them (an idle before
    // would show the last page's footprints): every tile of the view made and drawn.
    onMap.then(() => {
      if (seq !== app.searchSeq) return;
      app.ui.map.once("idle", () => {
        if (seq === app.searchSeq) performance.mark("csdr:results-on-map");
      });
    });
    await selectScene(app.state.selected, { scroll: true });
  } catch (exc) {
    await app.mapReady;
    if (seq !== app.searchSeq) return;
    app.page = null;
    app.items = [];
    drawPage();
    report(exc);
  } finally {
    if (seq === app.searchSeq) list.setAttribute("aria-busy", "false");
  }
}

// The page's rows and footprints; resolves once the map's worker holds the footprints.
function drawPage() {
  renderResults($("results"), app.items);
  for (const li of $("results").children) li.tabIndex = -1;
  const onMap = app.ui.showFootprints(app.items);
  const total = $("total");
  if (app.page) renderTotal(total, app.page);
  else {
    total.textContent = "";
    delete total.dataset.count;
  }
  const matched = app.page && typeof app.page.numberMatched === "number" ? app.page.numberMatched : null;
  const pages = matched === null ? null : Math.max(1, Math.ceil(matched / app.state.limit));
  $("page").textContent = pages === null ? String(app.state.page) : t("results.page", { page: formatNumber(app.state.page), pages: formatNumber(pages) });
  $("prev").disabled = !app.prevToken || app.state.page <= 1;
  $("next").disabled = !app.nextToken;
  const empty = !app.items.length;
  for (const id of ["export-geojson", "export-csv", "export-script"]) $(id).disabled = empty;
  return onMap;
}

async function refreshCounts() {
  try {
    app.counts = await countsByCollection(app.config.catalog, app.state);
  } catch (exc) {
    app.counts = {};
    report(exc);
  }
  drawTree();
}

function drawTree() {
  renderTree($("tree"), app.collections, app.state.collections, app.counts, (chosen) =>
    changed({ collections: chosen }),
  );
}

async function refreshFilterFields() {
  const offered = await offeredFilters(app.config.catalog, app.state.collections);
  app.offered = offered;
  $("cloud-field").hidden = !offered.cloud;
  $("availability-field").hidden = !offered.availability;
}

async function loadCollections() {
  try {
    app.collections = await collectPages(`${app.config.catalog}/collections?limit=100`, "collections");
  } catch (exc) {
    app.collections = [];
    report(exc);
  }
}

async function itemFor(key) {
  const found = app.items.find((item) => selectionKey(item) === key);
  if (found) return found;
  const where = splitSelection(key);
  if (!where) return null;
  const c = encodeURIComponent(where.collection);
  const i = encodeURIComponent(where.id);
  return request(`${app.config.catalog}/collections/${c}/items/${i}`);
}

async function selectScene(key, { scroll = false } = {}) {
  app.ui.select(key || null);
  const row = markSelected($("results"), key);
  if (row && scroll) row.scrollIntoView({ block: "nearest" });
  if (!key) {
    $("scene").hidden = true;
    app.ui.showScene(null);
    return;
  }
  let item;
  try {
    item = await itemFor(key);
  } catch (exc) {
    report(exc);
    return;
  }
  if (!item || app.state.selected !== key) return;
  const shown = showScene(sceneElements(), app.config.catalog, item, app.state.preset);
  app.sceneItem = item;
  $("add-basket").hidden = !(app.config.orders && currentKey());
  app.ui.showScene(shown, app.state.opacity);
}

// The pinned scene (the swipe's left side), in the chosen preset when it has it.
async function showPinned() {
  const key = app.state.pin;
  $("unpin-scene").hidden = !key;
  $("swipe-field").hidden = !key;
  $("pinned-text").hidden = !key;
  if (!key) {
    app.compare.hide();
    return;
  }
  let item;
  try {
    item = await itemFor(key);
  } catch (exc) {
    report(exc);
    return;
  }
  if (!item || app.state.pin !== key) return;
  $("pinned-text").textContent = t("compare.pinned", { id: item.id });
  const found = presets(item);
  const chosen = found.get(app.state.preset) || found.values().next().value || {};
  app.compare.show({
    xyz: chosen.xyz ? chosen.xyz.href : "",
    tilejson: chosen.tilejson ? chosen.tilejson.href : "",
  });
  app.compare.setPosition(app.state.swipe);
}

function sceneElements() {
  return {
    section: $("scene"),
    title: $("scene-title"),
    preset: $("preset"),
    xyzText: $("xyz-text"),
    copy: $("copy-xyz"),
    tilejson: $("tilejson-link"),
    wmts: $("wmts-link"),
    download: $("download-link"),
    snippet: $("snippet"),
  };
}

function choose(key, { scroll = false } = {}) {
  if (key === app.state.selected) return;
  app.state.selected = key;
  writeState(app.state);
  selectScene(key, { scroll });
}

function describeArea() {
  const s = app.state;
  if (s.area) {
    const rings = s.area.type === "Polygon" ? [s.area.coordinates] : s.area.coordinates;
    const points = rings.flat().reduce((n, ring) => n + ring.length, 0);
    return t("area.polygon", { points });
  }
  if (s.bbox) return t("area.bbox", { bbox: s.bbox.map((v) => v.toFixed(3)).join(", ") });
  return t("area.none");
}

function syncControls() {
  const s = app.state;
  $("from").value = s.from;
  $("to").value = s.to;
  $("cloud").value = String(s.cloud === null ? 100 : s.cloud);
  $("cloud-out").textContent = `${s.cloud === null ? 100 : s.cloud} %`;
  $("limit").value = String(s.limit);
  $("availability").value = s.availability;
  $("bbox-text").value = s.bbox ? s.bbox.join(",") : "";
  $("area-text").textContent = describeArea();
  $("opacity").value = String(s.opacity);
  $("swipe").value = String(s.swipe);
  $("lang").value = s.lang || document.documentElement.lang;
  document.body.dataset.view = s.view;
  for (const b of document.querySelectorAll(".views button")) {
    b.setAttribute("aria-selected", String(b.dataset.view === s.view));
  }
  const area = s.area || (s.bbox ? boxGeometry(s.bbox) : null);
  app.mapReady.then(() => app.ui.showArea(area));
  $("key-button").textContent = t(currentKey() ? "key.in_use" : "key.button");
}

function boxGeometry([w, s, e, n]) {
  return { type: "Polygon", coordinates: [[[w, s], [e, s], [e, n], [w, n], [w, s]]] };
}

// The first polygon(s) of an uploaded GeoJSON document (geometry, Feature or FeatureCollection).
function polygonOf(doc) {
  const geometries = [];
  const visit = (node) => {
    if (!node || typeof node !== "object") return;
    if (node.type === "FeatureCollection") (node.features || []).forEach(visit);
    else if (node.type === "Feature") visit(node.geometry);
    else if (node.type === "GeometryCollection") (node.geometries || []).forEach(visit);
    else if (node.type === "Polygon" || node.type === "MultiPolygon") geometries.push(node);
  };
  visit(doc);
  if (!geometries.length) throw new Error("no Polygon or MultiPolygon");
  if (geometries.length === 1) return geometries[0];
  const polygons = geometries.flatMap((g) => (g.type === "Polygon" ? [g.coordinates] : g.coordinates));
  return { type: "MultiPolygon", coordinates: polygons };
}

function wireSearchForm() {
  $("search").addEventListener("submit", (e) => e.preventDefault());
  $("from").addEventListener("change", (e) => changed({ from: e.target.value }));
  $("to").addEventListener("change", (e) => changed({ to: e.target.value }));
  $("cloud").addEventListener("input", (e) => {
    $("cloud-out").textContent = `${e.target.value} %`;
  });
  $("cloud").addEventListener("change", (e) => {
    const v = Number(e.target.value);
    changed({ cloud: v >= 100 ? null : v });
  });
  $("availability").addEventListener("change", (e) => changed({ availability: e.target.value }));
  $("draw-box").addEventListener("click", () => {
    if (app.ui.isDrawing()) {
      app.ui.stopDrawing();
      $("draw-box").setAttribute("aria-pressed", "false");
      return;
    }
    setView("map");
    app.ui.startDrawing();
    $("draw-box").setAttribute("aria-pressed", "true");
    $("area-text").textContent = t("area.drawing");
  });
  $("bbox-text").addEventListener("change", (e) => {
    const text = e.target.value.replace(/\s+/g, "");
    if (!text) return changed({ bbox: null, area: null });
    const parsed = readState(`?bbox=${encodeURIComponent(text)}`).bbox;
    if (!parsed) {
      $("area-text").textContent = t("area.bad_bbox");
      return;
    }
    changed({ bbox: parsed, area: null });
  });
  $("upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (!file) return;
    try {
      changed({ area: polygonOf(JSON.parse(await file.text())), bbox: null });
    } catch (exc) {
      $("area-text").textContent = t("area.bad_file", { reason: exc.message });
    }
    e.target.value = "";
  });
  $("clear-area").addEventListener("click", () => changed({ bbox: null, area: null }));
}

function wireResults() {
  const list = $("results");
  $("limit").addEventListener("change", (e) => changed({ limit: Number(e.target.value) }));
  $("next").addEventListener("click", () => turnPage(app.nextToken, 1));
  $("prev").addEventListener("click", () => turnPage(app.prevToken, -1));
  list.addEventListener("click", (e) => {
    const li = e.target.closest("li[data-key]");
    if (li) choose(li.dataset.key);
  });
  list.addEventListener("mouseover", (e) => {
    const li = e.target.closest("li[data-key]");
    app.ui.hover(li ? li.dataset.key : null);
    markRow(list, li && li.dataset.key, "hover", Boolean(li));
  });
  list.addEventListener("mouseleave", () => {
    app.ui.hover(null);
    markRow(list, null, "hover", false);
  });
  list.addEventListener("keydown", (e) => {
    const rows = [...list.children];
    if (!rows.length) return;
    const at = rows.indexOf(document.activeElement);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      e.preventDefault();
      const next = e.key === "ArrowDown" ? Math.min(rows.length - 1, at + 1) : Math.max(0, at - 1);
      rows[next].focus();
      app.ui.hover(rows[next].dataset.key);
    } else if ((e.key === "Enter" || e.key === " ") && at >= 0) {
      e.preventDefault();
      choose(rows[at].dataset.key);
    }
  });
  for (const [id, kind] of [["export-geojson", "geojson"], ["export-csv", "csv"], ["export-script", "script"]]) {
    $(id).addEventListener("click", () => {
      const count = formatNumber(Math.min(5000, (app.page && app.page.numberMatched) || 0));
      tracked(() => exportItems(kind, app.config.catalog, app.state, $("status"), count)).catch(report);
    });
  }
}

function turnPage(token, step) {
  if (!token) return;
  app.state.token = token;
  app.state.page = Math.max(1, app.state.page + step);
  app.state.selected = "";
  writeState(app.state, { push: true });
  tracked(() => runSearch({ fit: true }));
}

function wireScene() {
  $("preset").addEventListener("change", (e) => {
    app.state.preset = e.target.value;
    writeState(app.state);
    selectScene(app.state.selected);
    showPinned();
  });
  $("opacity").addEventListener("input", (e) => {
    app.state.opacity = Number(e.target.value);
    app.ui.setOpacity(app.state.opacity);
    writeState(app.state);
  });
  $("pin-scene").addEventListener("click", () => {
    app.state.pin = app.state.selected;
    writeState(app.state);
    tracked(showPinned);
  });
  $("unpin-scene").addEventListener("click", () => {
    app.state.pin = "";
    writeState(app.state);
    showPinned();
  });
  $("swipe").addEventListener("input", (e) => {
    app.state.swipe = Number(e.target.value);
    app.compare.setPosition(app.state.swipe);
    writeState(app.state);
  });
  $("copy-xyz").addEventListener("click", async () => {
    const copied = await copyText($("xyz-text").value);
    $("status").textContent = copied ? t("scene.copied") : "";
    if (!copied) $("xyz-text").select();
  });
}

function setView(view) {
  if (app.state.view === view) return;
  app.state.view = view;
  document.body.dataset.view = view;
  writeState(app.state);
  syncControls();
  app.ui.map.resize();
}

function wireChrome() {
  for (const b of document.querySelectorAll(".views button")) {
    b.addEventListener("click", () => setView(b.dataset.view));
  }
  // One tracked flow: the page is busy from the change until every text is redrawn.
  $("lang").addEventListener("change", (e) =>
    tracked(async () => {
      app.state.lang = await setLanguage(e.target.value, app.config.languages);
      writeState(app.state);
      drawPage();
      drawTree();
      syncControls();
      await Promise.all([
        app.state.selected ? selectScene(app.state.selected) : null,
        refreshOrders(),
        showOrg(),
      ]);
    }),
  );
  const dialog = $("key-dialog");
  $("key-button").addEventListener("click", () => {
    $("key-input").value = "";
    dialog.showModal();
  });
  // On submit, not on the dialog's later `close` event: the new key is in use at once.
  $("key-form").addEventListener("submit", (e) => {
    const action = e.submitter ? e.submitter.value : "save";
    if (action === "save") setKey($("key-input").value);
    else if (action === "forget") setKey("");
    else return;
    $("key-input").value = "";
    clearReport();
    tracked(async () => {
      await loadCollections();
      await Promise.all([refresh(), refreshSubscriptions(), refreshOrders(), refreshAccount()]);
    });
  });
  window.addEventListener("popstate", () => {
    const lang = app.state.lang;
    app.state = readState();
    app.state.lang = app.state.lang || lang;
    tracked(() => Promise.all([refresh(), showPinned(), showOrg()]));
  });
}

// The organisation pages: who the key is (the catalog's /account), then the chosen page.
async function refreshAccount() {
  app.account = null;
  if (currentKey()) {
    try {
      app.account = await account(app.config.catalog);
    } catch (exc) {
      if (!(exc instanceof ApiError && exc.status === 401)) report(exc);
    }
  }
  $("org-button").hidden = !app.account;
  await showOrg();
}

function orgReport(exc) {
  $("org-status").textContent = t("search.failed", { reason: exc.message });
  $("org-status").dataset.error = exc instanceof ApiError ? String(exc.status) : "error";
}

async function showOrg() {
  const open = Boolean(app.state.org && app.account);
  $("org-pages").hidden = !open;
  document.body.dataset.page = open ? "org" : "search";
  if (!open) {
    app.ui.map.resize();
    return;
  }
  $("org-status").textContent = "";
  delete $("org-status").dataset.error;
  syncUsageForm();
  try {
    app.state.org = await renderOrgPage(orgElements(), {
      config: app.config,
      account: app.account,
      page: app.state.org,
      usage: { from: app.state.usageFrom, to: app.state.usageTo, groups: app.state.usageGroups },
      open: (page) => openOrg(page),
      run: (flow) => {
        $("org-status").textContent = "";
        delete $("org-status").dataset.error;
        return tracked(flow).catch(orgReport);
      },
    });
    writeState(app.state);
  } catch (exc) {
    $("org-body").replaceChildren();
    orgReport(exc);
  }
}

function orgElements() {
  return { title: $("org-title"), tabs: $("org-tabs"), body: $("org-body"), usageForm: $("usage-form") };
}

function openOrg(page) {
  app.state.org = page;
  writeState(app.state, { push: true });
  return tracked(showOrg);
}

function syncUsageForm() {
  $("usage-from").value = app.state.usageFrom;
  $("usage-to").value = app.state.usageTo;
  for (const box of $("usage-groups").querySelectorAll("input")) box.checked = app.state.usageGroups.includes(box.value);
  $("usage-period").value = USAGE_PERIODS.find((p) => app.state.usageGroups.includes(p)) || "";
}

function wireOrg() {
  const groups = $("usage-groups");
  for (const g of USAGE_GROUPS) {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = g;
    box.id = `usage-group-${g}`;
    const text = document.createElement("span");
    text.dataset.i18n = `org.group.${g}`;
    text.textContent = t(`org.group.${g}`);
    label.append(box, text);
    groups.append(label);
  }
  for (const p of USAGE_PERIODS) {
    const o = document.createElement("option");
    o.value = p;
    o.dataset.i18n = `org.group.${p}`;
    o.textContent = t(`org.group.${p}`);
    $("usage-period").append(o);
  }
  $("usage-form").addEventListener("submit", (e) => e.preventDefault());
  $("usage-form").addEventListener("change", () => {
    const chosen = [...groups.querySelectorAll("input:checked")].map((b) => b.value);
    const period = $("usage-period").value;
    app.state.usageGroups = period ? [...chosen, period] : chosen;
    app.state.usageFrom = $("usage-from").value;
    app.state.usageTo = $("usage-to").value;
    writeState(app.state);
    tracked(showOrg);
  });
  $("org-button").addEventListener("click", () => openOrg(app.state.org || "keys"));
  $("org-close").addEventListener("click", () => {
    app.state.org = "";
    writeState(app.state, { push: true });
    showOrg();
  });
}

// The orders section: shown when the node has an orders service and the user a key.
async function refreshOrders() {
  const orders = app.config.orders;
  const keyed = Boolean(currentKey());
  $("orders").hidden = !orders || !keyed;
  $("add-basket").hidden = !orders || !keyed || $("scene").hidden;
  if (!orders || !keyed) return;
  const items = basket();
  renderBasket($("basket"), items, (ref) => {
    removeFromBasket(ref);
    tracked(refreshOrders);
  });
  $("place-order").disabled = !items.length;
  try {
    const [q, list] = await Promise.all([quota(orders), myOrders(orders)]);
    renderQuota($("quota"), q);
    await renderOrders($("my-orders"), list, orders, { changed: refreshOrders, report });
  } catch (exc) {
    report(exc);
  }
}

function wireOrders() {
  $("add-basket").addEventListener("click", () => {
    if (app.sceneItem) addToBasket(app.sceneItem);
    tracked(refreshOrders);
  });
  $("place-order").addEventListener("click", () =>
    tracked(async () => {
      const note = $("order-status");
      try {
        const order = await placeOrder(app.config.orders, basket(), crypto.randomUUID());
        note.textContent = t("orders.placed", { status: order.status });
      } catch (exc) {
        note.textContent = t("orders.failed", { reason: exc.message });
      }
      await refreshOrders();
    }),
  );
}

async function refreshSubscriptions() {
  const push = app.config.push;
  const section = $("subscribe");
  section.hidden = !push;
  if (!push) return;
  const keyed = Boolean(currentKey());
  $("subscribe-needs-key").hidden = keyed;
  $("subscribe-form").hidden = !keyed;
  $("subscriptions").replaceChildren();
  if (!keyed) return;
  try {
    const subs = await listSubscriptions(push);
    await renderSubscriptions($("subscriptions"), push, subs, refreshSubscriptions, report);
  } catch (exc) {
    report(exc);
  }
}

function wireSubscribe() {
  $("subscribe-form").addEventListener("submit", (e) => {
    e.preventDefault();
    tracked(notify);
  });
}

async function notify() {
  const secretNote = $("secret");
  try {
    const { secret } = await subscribe(app.config.push, app.state, $("webhook").value);
    secretNote.textContent = t("subscribe.created", { secret });
    secretNote.hidden = false;
    await refreshSubscriptions();
  } catch (exc) {
    secretNote.textContent = t("subscribe.failed", { reason: exc.message });
    secretNote.hidden = false;
  }
}

async function boot() {
  // MapLibre's worker starts now, not with the map: it takes 0.5-0.9 s to start on a 2-core
  // machine, and the first results' footprints are tiled in it.
  maplibregl.prewarm();
  const response = await fetch("config.json");
  app.config = await response.json();
  document.title = app.config.title;
  $("title").textContent = app.config.title;
  const languages = app.config.languages;
  const names = new Intl.DisplayNames(languages, { type: "language" });
  $("lang").replaceChildren(
    ...languages.map((tag) => {
      const o = document.createElement("option");
      o.value = tag;
      o.textContent = new Intl.DisplayNames([tag], { type: "language" }).of(tag) || names.of(tag);
      return o;
    }),
  );
  const lang = await setLanguage(app.state.lang || preferred(languages), languages);
  if (app.state.lang) app.state.lang = lang;
  apply();
  // Read before the map writes its own `#map=` hash: a view in a shared link wins over fitting.
  const viewInUrl = /[#&]map=/.test(window.location.hash);
  // The collections and the search are asked for before the map is made: their requests run
  // while MapLibre sets up WebGL and its worker; results wait for the map only to be drawn.
  let styleLoaded;
  app.mapReady = new Promise((resolve) => {
    styleLoaded = resolve;
  });
  const searched = Promise.all([loadCollections(), refresh({ fit: !viewInUrl })]);
  const origins = [app.config.catalog, app.config.tiler, app.config.push, app.config.orders].filter(Boolean);
  app.ui = createMap($("map"), origins, {
    onHover: (key) => {
      app.ui.hover(key);
      markRow($("results"), key, "hover", Boolean(key));
    },
    onSelect: (key) => choose(key, { scroll: true }),
    onError: (error) => {
      if (error.status === 401) report(new ApiError(401, "Unauthorized", error.message));
      else {
        $("status").textContent = t("map.failed", { reason: error.message });
        $("status").dataset.error = String(error.status || "map");
      }
    },
    onBox: (box) => {
      $("draw-box").setAttribute("aria-pressed", "false");
      changed({ bbox: box, area: null });
    },
  });
  app.compare = createCompare(app.ui.map, origins);
  // Ready to draw on once its style is in (its sources exist), not once its first tiles are:
  // results that answer first are drawn and fitted before any tile of the start view is made.
  app.ui.map.once("style.load", styleLoaded);
  // For tests and benchmarks: the map, and the drawing of footprints.
  window.csdrPortal = {
    map: app.ui.map,
    showFootprints: app.ui.showFootprints,
    pinnedMap: () => app.compare.map(),
  };
  wireSearchForm();
  wireResults();
  wireScene();
  wireChrome();
  wireSubscribe();
  wireOrders();
  wireOrg();
  await Promise.all([searched, refreshSubscriptions(), refreshOrders(), refreshAccount()]);
  drawTree();
  await showPinned();
  document.body.dataset.ready = "true";
}

tracked(boot).catch((exc) => {
  $("status").textContent = t("search.failed", { reason: exc.message });
  $("status").dataset.error = "boot";
});
