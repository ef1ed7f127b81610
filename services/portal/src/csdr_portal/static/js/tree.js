// The satellite -> sensor tree: collections grouped by platform, each leaf a collection with its
// sensor and the number of scenes the current filters match in it (the catalog's aggregation).

import { t, formatNumber } from "./i18n.js";

function platformOf(c) {
  const s = c.summaries || {};
  return ((s.platform && s.platform[0]) || c.id.split("-")[0]).toUpperCase();
}

function sensorOf(c) {
  const s = c.summaries || {};
  return ((s.instruments && s.instruments[0]) || "").toUpperCase();
}

export function groupCollections(collections) {
  const groups = new Map();
  for (const c of collections) {
    const platform = platformOf(c);
    if (!groups.has(platform)) groups.set(platform, []);
    groups.get(platform).push(c);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
}

function checkbox(id, label, checked, count) {
  const li = document.createElement("li");
  li.setAttribute("role", "treeitem");
  const input = document.createElement("input");
  input.type = "checkbox";
  input.id = id;
  input.checked = checked;
  const lab = document.createElement("label");
  lab.htmlFor = id;
  lab.textContent = label;
  const span = document.createElement("span");
  span.className = "count";
  span.textContent = count === null ? "" : `(${formatNumber(count)})`;
  li.append(input, lab, span);
  return { li, input, span };
}

// Draw the tree; `onChange(collections)` gets the chosen collection ids (none: all).
export function renderTree(ul, collections, chosen, counts, onChange) {
  ul.replaceChildren();
  const leaves = [];
  for (const [platform, members] of groupCollections(collections)) {
    const total = members.reduce((n, c) => n + (counts[c.id] || 0), 0);
    const all = members.every((c) => chosen.includes(c.id));
    const group = checkbox(`platform-${platform}`, platform, all, total);
    group.li.setAttribute("aria-expanded", "true");
    group.input.indeterminate = !all && members.some((c) => chosen.includes(c.id));
    const sub = document.createElement("ul");
    sub.setAttribute("role", "group");
    for (const c of members) {
      const label = [sensorOf(c), c.title || c.id].filter(Boolean).join(" · ");
      const leaf = checkbox(`collection-${c.id}`, label, chosen.includes(c.id), counts[c.id] || 0);
      leaf.input.value = c.id;
      leaf.input.dataset.collection = c.id;
      sub.append(leaf.li);
      leaves.push(leaf.input);
    }
    group.input.addEventListener("change", () => {
      for (const box of sub.querySelectorAll("input")) box.checked = group.input.checked;
      onChange(leaves.filter((b) => b.checked).map((b) => b.value));
    });
    group.li.append(sub);
    ul.append(group.li);
  }
  for (const leaf of leaves) {
    leaf.addEventListener("change", () => onChange(leaves.filter((b) => b.checked).map((b) => b.value)));
  }
  if (!collections.length) ul.textContent = t("results.none");
}
