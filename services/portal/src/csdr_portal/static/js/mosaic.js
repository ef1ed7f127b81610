// The result set as imagery instead of footprints: above `mosaic_above` matches (config.json)
// the map shows, for each collection with matches, the tiler's mosaic of the same search
// (collections, area, dates, filters; online scenes, latest on top), registered with the tiler
// (`POST /searches/register`) and drawn through a render preset of that collection. The tiler
// applies the caller's visibility at tile time and answers low zooms from its pyramids.

import { requestText, request } from "./api.js";
import { filters } from "./search.js";

const presetsOf = new Map(); // collection -> its mosaic's preset names (from its WMTS layers)

// The collection mosaic's presets: the layers of its WMTS document (the tiler derives them from
// the scenes; a collection whose bands have no common names has none and is not drawn).
async function collectionPresets(tiler, collection) {
  if (!presetsOf.has(collection)) {
    const url = `${tiler}/collections/${encodeURIComponent(collection)}/presets/WMTSCapabilities.xml`;
    const doc = new DOMParser().parseFromString(await requestText(url), "application/xml");
    const names = [];
    for (const layer of doc.getElementsByTagNameNS("*", "Layer")) {
      const id = [...layer.children].find((el) => el.localName === "Identifier");
      if (id) names.push(id.textContent.trim());
    }
    presetsOf.set(collection, names);
  }
  return presetsOf.get(collection);
}

// The search's collections that have matches (`counts`: matches per collection).
export function matchingCollections(state, counts) {
  const named = state.collections.length ? state.collections : Object.keys(counts);
  return named.filter((c) => (counts[c] || 0) > 0).sort();
}

// The search's filters for one collection. The tiler draws its online scenes only, as it does
// a collection's mosaic (an offline, archived scene has no imagery yet).
export function mosaicSearch(state, collection) {
  return {
    ...filters(state),
    collections: [collection],
    sortby: [{ field: "datetime", direction: "desc" }],
    metadata: { name: "CSDR portal search" },
  };
}

// One layer per collection that can be drawn: {collection, preset, tilejson}; the collections
// are asked in parallel.
export async function mosaicLayers(tiler, state, counts) {
  const layer = async (collection) => {
    const presets = await collectionPresets(tiler, collection).catch(() => []);
    const preset = [state.preset, "true-color"].find((p) => presets.includes(p)) || presets[0];
    if (!preset) return null;
    const registered = await request(`${tiler}/searches/register`, {
      method: "POST",
      body: mosaicSearch(state, collection),
    });
    const id = encodeURIComponent(registered.id);
    return {
      collection,
      preset,
      tilejson: `${tiler}/searches/${id}/presets/${encodeURIComponent(preset)}/WebMercatorQuad/tilejson.json`,
    };
  };
  const layers = await Promise.all(matchingCollections(state, counts).map(layer));
  return layers.filter(Boolean);
}
