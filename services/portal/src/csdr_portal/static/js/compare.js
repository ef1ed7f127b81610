// A swipe between two scenes (before/after a flood, say): the pinned scene is drawn by a second
// map laid over the first, following its camera, and clipped to the part before the divider.

import { keyHeaders } from "./key.js";

const PINNED = "pinned";

export function createCompare(main, apiOrigins) {
  const overlay = document.createElement("div");
  overlay.className = "compare";
  overlay.hidden = true;
  main.getContainer().append(overlay);
  let other = null;
  let position = 0.5;

  const follow = () => {
    if (other) {
      other.jumpTo({ center: main.getCenter(), zoom: main.getZoom(), bearing: main.getBearing(), pitch: main.getPitch() });
    }
  };
  main.on("move", follow);
  main.on("resize", () => other && other.resize());

  const clip = () => {
    overlay.style.clipPath = `inset(0 ${((1 - position) * 100).toFixed(1)}% 0 0)`;
  };

  function draw(layer) {
    if (other.getLayer(PINNED)) other.removeLayer(PINNED);
    if (other.getSource(PINNED)) other.removeSource(PINNED);
    const source = layer.tilejson ? { url: layer.tilejson } : { tiles: [layer.xyz] };
    other.addSource(PINNED, { type: "raster", tileSize: 256, ...source });
    other.addLayer({ id: PINNED, type: "raster", source: PINNED });
  }

  return {
    show(layer) {
      if (!layer || !(layer.tilejson || layer.xyz)) {
        this.hide();
        return;
      }
      overlay.hidden = false;
      if (!other) {
        other = new maplibregl.Map({
          container: overlay,
          style: { version: 8, sources: {}, layers: [] },
          interactive: false,
          attributionControl: false,
          center: main.getCenter(),
          zoom: main.getZoom(),
          transformRequest: (url) =>
            apiOrigins.some((origin) => url.startsWith(origin)) ? { url, headers: keyHeaders() } : { url },
        });
        other.on("error", () => {}); // the main map reports the same tiler's errors
      }
      if (other.loaded()) draw(layer);
      else other.once("load", () => draw(layer));
      clip();
    },
    setPosition(fraction) {
      position = Math.min(1, Math.max(0, fraction));
      clip();
    },
    hide() {
      overlay.hidden = true;
      if (other) other.remove();
      other = null;
    },
    // For tests: the map drawing the pinned scene.
    map: () => other,
  };
}
