// tilegen view: the page. /api/info says what is viewed; a store or an xyz/dzi folder opens in
// OpenSeadragon (vendored, BSD-3), a model in painter.js (onnxruntime-web in a worker).
// window.tilegen exposes what the tests and the benchmark read: ready (a promise), firstViewMs
// (performance.now() when the first view was fully drawn) and, for models, tile(...).

const $ = (id) => document.getElementById(id);
const ready = {};
window.tilegen = { ready: new Promise((ok, fail) => Object.assign(ready, { ok, fail })) };

export function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function loadScript(src) {
  return new Promise((ok, fail) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = ok;
    s.onerror = () => fail(new Error(`cannot load ${src}`));
    document.head.append(s);
  });
}

function button(label, title, onClick) {
  const b = document.createElement("button");
  b.textContent = label;
  b.title = title;
  b.onclick = onClick;
  $("controls").append(b);
  return b;
}

// OpenSeadragon levels: level d shows the image at 2^(d - maxLevel), maxLevel = ceil(log2(side)).
function tileSource(info) {
  const W = info.width, H = info.height;
  if (info.kind === "dzi") return `/tiles/${info.descriptor}`;
  if (info.kind === "store") {
    const maxLevel = Math.ceil(Math.log2(Math.max(W, H, 2)));
    return {
      width: W, height: H, tileSize: info.tile, tileOverlap: 0,
      minLevel: Math.max(0, maxLevel - (info.levels.length - 1)), maxLevel,
      getTileUrl: (level, x, y) => `/store/${maxLevel - level}/${x}_${y}.png`,
    };
  }
  // xyz: a square world of tile * 2^maxzoom pixels, the image at its top-left; tiles outside
  // the image do not exist. OpenSeadragon level = zoom + log2(tile).
  const T = info.tile, Z = info.maxzoom, side = T * 2 ** Z, shift = Math.log2(T);
  const ext = info.template.split(".").pop();
  return {
    width: side, height: side, tileSize: T, tileOverlap: 0, minLevel: shift, maxLevel: shift + Z,
    getTileUrl: (level, x, y) => `/tiles/${level - shift}/${x}/${y}.${ext}`,
    tileExists: (level, x, y) => {
      const f = 2 ** (Z - (level - shift));
      return x * T < Math.ceil(W / f) && y * T < Math.ceil(H / f);
    },
  };
}

async function showPyramid(info) {
  await loadScript("/vendor/osd/openseadragon.min.js");
  const div = document.createElement("div");
  div.id = "osd";
  $("stage").append(div);
  const t0 = performance.now();
  const viewer = OpenSeadragon({
    element: div, tileSources: tileSource(info), showNavigationControl: false, drawer: "canvas",
    visibilityRatio: 0.5, maxZoomPixelRatio: 8, minPixelRatio: 0.75, immediateRender: true,
    blendTime: 0,
    gestureSettingsMouse: { clickToZoom: false },
  });
  window.tilegen.viewer = viewer;
  button("+", "zoom in", () => viewer.viewport.zoomBy(2));
  button("−", "zoom out", () => viewer.viewport.zoomBy(0.5));
  button("home", "whole image", () => viewer.viewport.goHome());
  const where = () => {
    const z = viewer.viewport.viewportToImageZoom(viewer.viewport.getZoom(true));
    const c = viewer.viewport.viewportToImageCoordinates(viewer.viewport.getCenter(true));
    status(`${info.width}×${info.height}, zoom ${z.toFixed(3)}, centre (y ${Math.round(c.y)}, x ${Math.round(c.x)})`);
  };
  viewer.addHandler("open", () => {
    if (info.kind === "xyz") {
      const side = info.tile * 2 ** info.maxzoom;
      const rect = new OpenSeadragon.Rect(0, 0, info.width / side, info.height / side);
      viewer.viewport.homeBounds = rect;
      viewer.viewport.goHome = () => viewer.viewport.fitBounds(rect);
      viewer.viewport.fitBounds(rect, true);
    }
    const item = viewer.world.getItemAt(0);
    const done = () => {
      if (window.tilegen.firstViewMs === undefined) {
        window.tilegen.firstViewMs = performance.now();
        window.tilegen.openMs = window.tilegen.firstViewMs - t0;
        document.body.dataset.ready = "1";
        ready.ok(info);
      }
    };
    if (item.getFullyLoaded()) done();
    item.addHandler("fully-loaded-change", (e) => e.fullyLoaded && done());
    where();
  });
  viewer.addHandler("open-failed", (e) => {
    status(`cannot open: ${e.message}`, true);
    ready.fail(new Error(e.message));
  });
  viewer.addHandler("animation", where);
}

async function main() {
  const info = await (await fetch("/api/info")).json();
  window.tilegen.info = info;
  const label = info.kind === "model" ? `model ${info.name}` : `${info.kind} ${info.name}`;
  $("what").textContent = label;
  document.title = `tilegen view: ${label}`;
  if (info.kind === "model") {
    const { startPainter } = await import("/static/painter.js");
    await startPainter(info, $("stage"), $("controls"), window.tilegen, ready);
  } else {
    if (info.kind === "store" && !info.complete) status("store still being written: missing shards show black");
    await showPyramid(info);
  }
}

main().catch((e) => {
  status(String(e.message || e), true);
  ready.fail(e);
});
