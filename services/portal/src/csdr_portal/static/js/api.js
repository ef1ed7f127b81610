// Calls to the node's public APIs from the browser: JSON in and out, the user's key as a header,
// errors in the node's `{code, description}` shape turned into ApiError. A 401 is reported once
// and never retried: the user fixes the key (key.js), nothing loops.

import { keyHeaders } from "./key.js";

export class ApiError extends Error {
  constructor(status, code, description) {
    super(description || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

// How many requests and flows are under way, on <body data-pending>: 0 once the page is quiet.
let pending = 0;

function count(step) {
  pending += step;
  document.body.dataset.pending = String(pending);
}

export async function tracked(flow) {
  count(1);
  try {
    return await flow();
  } finally {
    count(-1);
  }
}

export function request(url, options = {}) {
  return tracked(() => send(url, options));
}

// The answer's text as it is (a CSV report, say), with the same key header and errors.
export function requestText(url, options = {}) {
  return tracked(() => send(url, { ...options, text: true }));
}

async function send(url, { method = "GET", body, headers = {}, text: raw = false }) {
  const init = { method, headers: { Accept: "application/json", ...keyHeaders(), ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    throw new ApiError(0, "Unreachable", `${new URL(url).origin}: ${exc.message}`);
  }
  const text = await response.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!response.ok) {
    const description = doc && (doc.description || doc.detail);
    throw new ApiError(response.status, doc && doc.code, description || response.statusText);
  }
  return raw ? text : doc;
}

// Every page of a paged listing that links its next page (`rel: next`), up to `most` entries.
export async function collectPages(url, field, most = 10000) {
  const found = [];
  let next = url;
  while (next && found.length < most) {
    const doc = await request(next);
    found.push(...(doc[field] || []));
    const link = (doc.links || []).find((l) => l.rel === "next" && (!l.method || l.method === "GET"));
    next = link ? link.href : null;
  }
  return found;
}
