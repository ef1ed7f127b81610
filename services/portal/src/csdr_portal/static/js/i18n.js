// Messages: one JSON file per language in messages/ (flat keys, `{name}` placeholders). Elements
// carry `data-i18n` (their text) or `data-i18n-attr="attr:key;attr:key"`; a language written
// right to left sets dir="rtl" on the page and the logical CSS properties mirror the layout.

const RTL = new Set(["ar", "fa", "he", "ur"]);
let messages = {};
let fallback = {};
let current = "en";

async function load(lang) {
  const response = await fetch(`messages/${lang}.json`);
  if (!response.ok) throw new Error(`messages/${lang}.json: HTTP ${response.status}`);
  return response.json();
}

export function language() {
  return current;
}

export function t(key, vars = {}) {
  const text = messages[key] ?? fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

export function formatNumber(n) {
  return new Intl.NumberFormat(current).format(n);
}

export function apply(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr, t(key));
    }
  }
}

export async function setLanguage(lang, available) {
  const chosen = available.includes(lang) ? lang : "en";
  if (!Object.keys(fallback).length) fallback = await load("en");
  messages = chosen === "en" ? fallback : await load(chosen);
  current = chosen;
  document.documentElement.lang = chosen;
  document.documentElement.dir = RTL.has(chosen.split("-")[0]) ? "rtl" : "ltr";
  apply();
  return chosen;
}

// The browser's preferred language when the portal speaks it, else English.
export function preferred(available) {
  for (const tag of navigator.languages || [navigator.language]) {
    const base = (tag || "").split("-")[0];
    if (available.includes(tag)) return tag;
    if (available.includes(base)) return base;
  }
  return "en";
}
