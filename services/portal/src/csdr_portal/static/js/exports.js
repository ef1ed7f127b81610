// The whole result set (every page, up to a limit) as GeoJSON, CSV, or a shell script that
// downloads each scene's data asset; files are made in the browser, nothing is sent anywhere.

import { t } from "./i18n.js";
import { allItems } from "./search.js";

const CSV_COLUMNS = ["collection", "id", "datetime", "platform", "instruments", "eo:cloud_cover", "gsd", "bbox", "data"];

function dataHref(item) {
  const asset = Object.values(item.assets || {}).find((a) => (a.roles || []).includes("data"));
  return asset ? asset.href : "";
}

function csvCell(value) {
  const text = value === undefined || value === null ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toGeoJSON(items) {
  return JSON.stringify({ type: "FeatureCollection", features: items }, null, 1);
}

export function toCSV(items) {
  const lines = [CSV_COLUMNS.join(",")];
  for (const item of items) {
    const p = item.properties;
    const values = [
      item.collection,
      item.id,
      p.datetime,
      p.platform,
      (p.instruments || []).join(" "),
      p["eo:cloud_cover"],
      p.gsd,
      (item.bbox || []).join(" "),
      dataHref(item),
    ];
    lines.push(values.map(csvCell).join(","));
  }
  return `${lines.join("\n")}\n`;
}

export function toScript(items) {
  const lines = [
    "#!/bin/sh",
    "# Downloads the data asset of each scene of the search; set CSDR_KEY to your API key.",
    "set -e",
  ];
  for (const item of items) {
    const href = dataHref(item);
    if (!/^https?:/.test(href)) continue;
    const url = new URL(href);
    url.searchParams.delete("api_key");
    lines.push(`curl -fL -H "X-API-Key: $CSDR_KEY" -o '${item.id}.tif' '${url.href}'`);
  }
  return `${lines.join("\n")}\n`;
}

export function save(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

const KINDS = {
  geojson: ["scenes.geojson", "application/geo+json", toGeoJSON],
  csv: ["scenes.csv", "text/csv", toCSV],
  script: ["download-scenes.sh", "text/x-shellscript", toScript],
};

export async function exportItems(kind, catalog, state, status, count) {
  const [name, type, write] = KINDS[kind];
  status.textContent = t("export.working", { count });
  const items = await allItems(catalog, state);
  save(name, type, write(items));
  status.textContent = "";
}
