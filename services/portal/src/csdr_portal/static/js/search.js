// The state's filters as a STAC search (POST /search), and the same filters as the catalog's
// aggregation request for the sensor tree's counts and as a push subscription: one place decides
// what "the search" is, so the list, the counts and "notify me" never disagree.

import { request } from "./api.js";
import { AVAILABILITY, ORDER_STATUS } from "./availability.js";

const CLOUD = "eo:cloud_cover";

function datetime(state) {
  if (!state.from && !state.to) return null;
  const start = state.from ? `${state.from}T00:00:00Z` : "..";
  const end = state.to ? `${state.to}T23:59:59Z` : "..";
  return `${start}/${end}`;
}

// CQL2 JSON for the property filters (cloud cover, online/offline), or null.
export function cqlFilter(state) {
  const parts = [];
  if (state.cloud !== null && state.cloud < 100) {
    parts.push({ op: "<=", args: [{ property: CLOUD }, state.cloud] });
  }
  if (AVAILABILITY[state.availability]) parts.push(AVAILABILITY[state.availability]);
  if (!parts.length) return null;
  return parts.length === 1 ? parts[0] : { op: "and", args: parts };
}

// Area, dates and property filters: what every request below shares.
export function filters(state) {
  const body = {};
  const when = datetime(state);
  if (when) body.datetime = when;
  if (state.area) body.intersects = state.area;
  else if (state.bbox) body.bbox = state.bbox;
  const filter = cqlFilter(state);
  if (filter) {
    body.filter = filter;
    body["filter-lang"] = "cql2-json";
  }
  return body;
}

export function searchBody(state) {
  const body = {
    ...filters(state),
    limit: state.limit,
    sortby: [{ field: "properties.datetime", direction: "desc" }],
  };
  if (state.collections.length) body.collections = state.collections;
  if (state.token) body.token = state.token;
  return body;
}

export async function search(catalog, state) {
  return request(`${catalog}/search`, { method: "POST", body: searchBody(state) });
}

// Matches per collection for the tree (all collections: the tree shows what a choice would give).
export async function countsByCollection(catalog, state) {
  const body = { ...filters(state), aggregations: ["collection_frequency"] };
  const doc = await request(`${catalog}/aggregate`, { method: "POST", body });
  const counts = {};
  const found = (doc.aggregations || []).find((a) => a.name === "collection_frequency");
  for (const bucket of (found && found.buckets) || []) counts[bucket.key] = bucket.frequency;
  return counts;
}

// The token of a page link (`next`/`prev`), from its POST body or its query string.
export function pageToken(doc, rel) {
  const link = (doc.links || []).find((l) => l.rel === rel);
  if (!link) return null;
  if (link.body && link.body.token) return link.body.token;
  return new URL(link.href).searchParams.get("token");
}

// Which of the filterable properties (cloud cover, order status) any of these collections (all,
// when none) offers as a queryable.
export async function offeredFilters(catalog, collections) {
  const offered = { cloud: false, availability: false };
  const urls = collections.length
    ? collections.map((c) => `${catalog}/collections/${encodeURIComponent(c)}/queryables`)
    : [`${catalog}/queryables`];
  for (const url of urls) {
    try {
      const doc = await request(url);
      const properties = (doc && doc.properties) || {};
      offered.cloud ||= CLOUD in properties;
      offered.availability ||= ORDER_STATUS in properties;
    } catch {
      // a collection without queryables offers neither filter
    }
  }
  return offered;
}

// Every matching item (following `next`), up to `most`, for exports.
export async function allItems(catalog, state, most = 5000) {
  const items = [];
  let token = "";
  const base = { ...state, token: "", limit: 50 };
  for (;;) {
    const body = { ...searchBody(base), limit: 500 };
    if (token) body.token = token;
    const doc = await request(`${catalog}/search`, { method: "POST", body });
    items.push(...doc.features);
    token = pageToken(doc, "next");
    if (!token || !doc.features.length || items.length >= most) break;
  }
  return items.slice(0, most);
}
