// The map: no basemap from elsewhere (a graticule drawn here), the page's footprints with
// hover/selected feature-state, the search area, the selected scene's tiles from the tiler, and
// a box drawn by dragging. The view is MapLibre's `#map=zoom/lat/lon` hash.

import { keyHeaders } from "./key.js";

const FOOTPRINTS = "footprints";
const AREA = "area";
const SCENE = "scene";
const MOSAIC = "mosaic-"; // one raster layer per collection: `mosaic-<collection id>`
// With a mosaic drawn, the page's footprints appear from this zoom on (nearer than the tiler's
// pyramid zooms, z8 and below), where a page of them is readable again.
export const FOOTPRINTS_OVER_MOSAIC_FROM = 9;

function graticule(step = 10) {
  const features = [];
  for (let lon = -180; lon <= 180; lon += step) {
    const line = [];
    for (let lat = -80; lat <= 80; lat += 5) line.push([lon, lat]);
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: line } });
  }
  for (let lat = -80; lat <= 80; lat += step) {
    const line = [];
    for (let lon = -180; lon <= 180; lon += 5) line.push([lon, lat]);
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates: line } });
  }
  return { type: "FeatureCollection", features };
}

const EMPTY = { type: "FeatureCollection", features: [] };

export function createMap(container, apiOrigins, { onHover, onSelect, onBox, onError }) {
  const map = new maplibregl.Map({
    container,
    hash: "map",
    center: [105, 35],
    zoom: 2.5,
    attributionControl: false,
    // No labels to fade: without this, every zoom change repaints for 300 ms (MapLibre's
    // cross-fade), a frame each ~80 ms through the software renderer.
    fadeDuration: 0,
    style: {
      version: 8,
      sources: {
        graticule: { type: "geojson", data: graticule() },
        [FOOTPRINTS]: { type: "geojson", data: EMPTY, promoteId: "key" },
        [AREA]: { type: "geojson", data: EMPTY },
      },
      layers: [
        { id: "background", type: "background", paint: { "background-color": "#eef2f5" } },
        { id: "graticule", type: "line", source: "graticule", paint: { "line-color": "#c5ced8", "line-width": 0.6 } },
        {
          id: "footprints-fill",
          type: "fill",
          source: FOOTPRINTS,
          paint: {
            // The outline layer draws the edges: no second pass over each fill to smooth them.
            "fill-antialias": false,
            "fill-color": [
              "case",
              ["boolean", ["feature-state", "selected"], false], "#d9480f",
              ["boolean", ["feature-state", "hover"], false], "#f2c14e",
              "#1d4f91",
            ],
            "fill-opacity": [
              "case",
              ["boolean", ["feature-state", "selected"], false], 0.15,
              ["boolean", ["feature-state", "hover"], false], 0.45,
              0.18,
            ],
          },
        },
        {
          id: "footprints-line",
          type: "line",
          source: FOOTPRINTS,
          paint: {
            "line-color": ["case", ["boolean", ["feature-state", "selected"], false], "#d9480f", "#1d4f91"],
            "line-width": ["case", ["boolean", ["feature-state", "selected"], false], 2.5, 1],
          },
        },
        // Hidden while there is no area: a hidden layer's source makes no tiles (the empty
        // area's were made for every view, in the worker the footprints wait for).
        {
          id: "area-line",
          type: "line",
          source: AREA,
          layout: { visibility: "none" },
          paint: { "line-color": "#0b7a75", "line-width": 2, "line-dasharray": [2, 1] },
        },
      ],
    },
    // The user's key goes to the node's APIs as a header, never into a tile URL we build.
    transformRequest: (url) => {
      if (apiOrigins.some((origin) => url.startsWith(origin))) return { url, headers: keyHeaders() };
      return { url };
    },
  });
  // A tile or TileJSON the tiler refuses (a 401 for a revoked key, say) is reported on the page,
  // not left to MapLibre's console message.
  map.on("error", (e) => onError(e.error || new Error("map error")));
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl(), "bottom-left");

  let hovered = null;
  let selected = null;
  let footprintsFrom = 0; // the footprint layers' minimum zoom (showMosaic)
  const setState = (key, state) => {
    if (key) map.setFeatureState({ source: FOOTPRINTS, id: key }, state);
  };

  map.on("mousemove", "footprints-fill", (e) => {
    const key = e.features[0].properties.key;
    if (key !== hovered) onHover(key);
  });
  map.on("mouseleave", "footprints-fill", () => onHover(null));
  map.on("click", (e) => {
    if (drawing) return;
    const hits = map.queryRenderedFeatures(e.point, { layers: ["footprints-fill"] });
    if (hits.length) onSelect(hits[0].properties.key);
  });

  // Drawing a box: the next drag on the map (pan is off while drawing).
  let drawing = false;
  let start = null;
  const canvas = map.getCanvasContainer();
  const boxFrom = (a, b) => {
    const p = map.unproject(a);
    const q = map.unproject(b);
    return [Math.min(p.lng, q.lng), Math.min(p.lat, q.lat), Math.max(p.lng, q.lng), Math.max(p.lat, q.lat)];
  };
  map.on("mousedown", (e) => {
    if (!drawing) return;
    e.preventDefault();
    start = e.point;
  });
  map.on("mousemove", (e) => {
    if (drawing && start) showArea({ type: "Polygon", coordinates: [ring(boxFrom(start, e.point))] });
  });
  map.on("mouseup", (e) => {
    if (!drawing || !start) return;
    const box = boxFrom(start, e.point);
    start = null;
    stopDrawing();
    if (box[2] - box[0] > 1e-6 && box[3] - box[1] > 1e-6) onBox(box);
  });
  function stopDrawing() {
    drawing = false;
    map.dragPan.enable();
    document.body.classList.remove("drawing");
  }

  // Each setData re-tiles the source in the worker: none when nothing changes.
  let areaShown = null;
  function showArea(geometry) {
    if (!geometry && !areaShown) return;
    areaShown = geometry;
    map.getSource(AREA).setData(geometry ? { type: "Feature", properties: {}, geometry } : EMPTY);
    map.setLayoutProperty("area-line", "visibility", geometry ? "visible" : "none");
  }

  return {
    map,
    startDrawing() {
      drawing = true;
      map.dragPan.disable();
      document.body.classList.add("drawing");
      canvas.focus();
    },
    stopDrawing,
    isDrawing: () => drawing,
    showArea,
    // Resolves once MapLibre's worker holds the footprints.
    showFootprints(items) {
      hovered = null;
      selected = null;
      const features = items.map((item) => ({
        type: "Feature",
        geometry: item.geometry,
        properties: { key: `${item.collection}/${item.id}` },
      }));
      map.getSource(FOOTPRINTS).setData({ type: "FeatureCollection", features });
      return settled(map, FOOTPRINTS);
    },
    hover(key) {
      setState(hovered, { hover: false });
      hovered = key;
      setState(hovered, { hover: true });
    },
    select(key) {
      setState(selected, { selected: false });
      selected = key;
      setState(selected, { selected: true });
    },
    fitTo(items) {
      const boxes = items.map((i) => i.bbox).filter(Boolean);
      if (!boxes.length) return;
      const b = boxes.reduce((a, c) => [Math.min(a[0], c[0]), Math.min(a[1], c[1]), Math.max(a[2], c[2]), Math.max(a[3], c[3])]);
      map.fitBounds([[b[0], b[1]], [b[2], b[3]]], { padding: 30, maxZoom: 11, duration: 0 });
    },
    // The scene's layer from its TileJSON (bounds and zoom range: no tile asked outside them),
    // else from its XYZ template.
    showScene(layer, opacity) {
      if (map.getLayer(SCENE)) map.removeLayer(SCENE);
      if (map.getSource(SCENE)) map.removeSource(SCENE);
      if (!layer || !(layer.tilejson || layer.xyz)) return;
      const source = layer.tilejson ? { url: layer.tilejson } : { tiles: [layer.xyz] };
      map.addSource(SCENE, { type: "raster", tileSize: 256, ...source });
      map.addLayer({ id: SCENE, type: "raster", source: SCENE, paint: { "raster-opacity": opacity } }, "footprints-fill");
    },
    // The result set's mosaics (mosaic.js) under the scene and the footprints; while any is
    // drawn, footprints show only from FOOTPRINTS_OVER_MOSAIC_FROM on.
    showMosaic(layers) {
      for (const layer of map.getStyle().layers) {
        if (layer.id.startsWith(MOSAIC)) map.removeLayer(layer.id);
      }
      for (const id of Object.keys(map.getStyle().sources)) {
        if (id.startsWith(MOSAIC)) map.removeSource(id);
      }
      for (const layer of layers) {
        const id = `${MOSAIC}${layer.collection}`;
        // The tiler's mosaic TileJSON lists 512-pixel tiles.
        map.addSource(id, { type: "raster", url: layer.tilejson, tileSize: 512 });
        map.addLayer({ id, type: "raster", source: id }, map.getLayer(SCENE) ? SCENE : "footprints-fill");
      }
      // Only a change: MapLibre re-tiles a layer's source whenever its zoom range is set (the
      // style's layers start with none, so even 0-24 counted as a change), a frame and all the
      // footprints' tiles made again after every search.
      const from = layers.length ? FOOTPRINTS_OVER_MOSAIC_FROM : 0;
      if (from === footprintsFrom) return;
      footprintsFrom = from;
      for (const id of ["footprints-fill", "footprints-line"]) map.setLayerZoomRange(id, from, 24);
    },
    setOpacity(opacity) {
      if (map.getLayer(SCENE)) map.setPaintProperty(SCENE, "raster-opacity", opacity);
    },
  };
}

// Resolves once MapLibre's worker holds the GeoJSON source's latest data (or failed to take
// it). The worker takes a source's updates one at a time, so `setData(data, true)` alone is not
// enough: while an earlier update is in the worker (the style's own, in a worker still starting),
// it resolves at once and the new data is sent only after.
function settled(map, id) {
  const source = map.getSource(id);
  if (source.loaded()) return Promise.resolve();
  return new Promise((resolve) => {
    const check = (e) => {
      if (e.sourceId !== id || (e.type === "sourcedata" && !source.loaded())) return;
      map.off("sourcedata", check);
      map.off("error", check);
      resolve();
    };
    map.on("sourcedata", check);
    map.on("error", check);
  });
}

export function ring([w, s, e, n]) {
  return [[w, s], [e, s], [e, n], [w, n], [w, s]];
}
