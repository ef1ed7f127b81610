// The selected scene: its map layers as the item links them (web-map-links: one `xyz` and one
// `tilejson` per tiler preset, one `wmts`), the download of its data asset, a pystac-client
// snippet. "Copy XYZ for QGIS" copies the item's own `xyz` link, so QGIS gets what the API says.

import { t } from "./i18n.js";

const PRESET_IN_PATH = /\/presets\/([^/]+)\/tiles\//;

// preset name -> {xyz, tilejson} from the item's links.
export function presets(item) {
  const found = new Map();
  for (const link of item.links || []) {
    if (link.rel !== "xyz" && link.rel !== "tilejson") continue;
    const m = link.href.match(PRESET_IN_PATH) || link.href.match(/\/presets\/([^/]+)\//);
    const name = m ? m[1] : "default";
    if (!found.has(name)) found.set(name, {});
    found.get(name)[link.rel] = link;
  }
  return found;
}

function dataAsset(item) {
  const assets = item.assets || {};
  return Object.values(assets).find((a) => (a.roles || []).includes("data")) || null;
}

function snippet(catalog, item) {
  return [
    "from pystac_client import Client",
    "",
    `client = Client.open("${catalog}")  # add headers={"X-API-Key": KEY} for a key`,
    `item = next(client.search(collections=["${item.collection}"], ids=["${item.id}"]).items())`,
    'print(item.assets["data"].href)',
  ].join("\n");
}

export function showScene(els, catalog, item, chosenPreset) {
  const found = presets(item);
  const names = [...found.keys()];
  const preset = names.includes(chosenPreset) ? chosenPreset : names[0] || "";
  els.section.hidden = false;
  els.title.textContent = item.id;
  els.preset.replaceChildren(
    ...names.map((name) => {
      const o = document.createElement("option");
      o.value = name;
      o.textContent = name;
      return o;
    }),
  );
  els.preset.value = preset;
  const chosen = found.get(preset) || {};
  const xyz = chosen.xyz ? chosen.xyz.href : "";
  els.xyzText.value = xyz || t("scene.no_tiles");
  els.copy.disabled = !xyz;
  setLink(els.tilejson, chosen.tilejson && chosen.tilejson.href);
  const wmts = (item.links || []).find((l) => l.rel === "wmts");
  setLink(els.wmts, wmts && wmts.href);
  const data = dataAsset(item);
  setLink(els.download, data && /^https?:/.test(data.href) ? data.href : null);
  els.snippet.textContent = snippet(catalog, item);
  return { preset, xyz, tilejson: chosen.tilejson ? chosen.tilejson.href : "" };
}

function setLink(a, href) {
  a.hidden = !href;
  if (href) a.href = href;
  else a.removeAttribute("href");
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
