// An endless texture painted in the page: tiles of the self-contained model are computed on
// demand by worker.js (onnxruntime-web), nearest the centre first, cached as bitmaps, and drawn
// on a canvas that pans (drag, arrow keys) and zooms (wheel, +/-) anywhere in the int64 plane.

const T = 256; // tile side, texture pixels
const CACHE = 600; // bitmaps kept
const ZOOMS = [0.25, 0.5, 1, 2, 4, 8];

export async function startPainter(info, stage, controls, api, ready) {
  const { status } = await import("/static/viewer.js");
  const stride = info.contract.stride;
  const params = new URLSearchParams(location.search);
  const ep = params.get("ep") === "webgpu" ? "webgpu" : "wasm";
  const state = {
    seed: params.get("seed") ?? "0",
    periodic: params.get("periodic") === "1",
    period: Math.max(stride, Math.round(Number(params.get("period") ?? 1024) / stride) * stride),
    cy: Number(params.get("y") ?? 0), cx: Number(params.get("x") ?? 0), zoom: 2,
  };
  const canvas = document.createElement("canvas");
  stage.append(canvas);
  const ctx = canvas.getContext("2d");

  // --- the worker -------------------------------------------------------------------------
  const worker = new Worker("/static/worker.js", { type: "module" });
  const waiting = new Map(); // request id -> {resolve, reject}
  let nextId = 1;
  const call = (msg, transfer = []) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      worker.postMessage({ ...msg, id }, transfer);
    });
  let readyInfo;
  const started = new Promise((ok, fail) => {
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === "ready") return ok((readyInfo = m));
      const w = waiting.get(m.id);
      if (m.type === "error" && !w) return fail(new Error(m.message));
      if (!w) return;
      waiting.delete(m.id);
      if (m.type === "error") w.reject(new Error(m.message));
      else w.resolve(m);
    };
    worker.onerror = (e) => fail(new Error(e.message || "the worker failed to start"));
  });
  status(`loading ${info.name} in onnxruntime-web (${ep})…`);
  worker.postMessage({ type: "init", ep });
  await started;

  const period = () => (state.periodic ? [state.period, state.period] : [0, 0]);
  const request = (y0, x0, h, w, seed = state.seed, [py, px] = period()) =>
    call({ type: "tile", seed: String(seed), y0: String(y0), x0: String(x0), h, w, py, px });

  // For tests: the page's own path from (seed, origin, size, period) to 8-bit RGBA, as base64.
  api.tile = async (seed, y0, x0, h, w, py = 0, px = 0) => {
    const m = await request(y0, x0, h, w, seed, [py, px]);
    let s = "";
    for (let i = 0; i < m.rgba.length; i += 0x8000) s += String.fromCharCode(...m.rgba.subarray(i, i + 0x8000));
    return btoa(s);
  };

  // --- the view ---------------------------------------------------------------------------
  const cache = new Map(); // key -> ImageBitmap (insertion order = age)
  let inflight = null, msPerTile = 0, firstDone = false;
  const t0 = performance.now();
  const scale = () => ZOOMS[state.zoom];
  const key = (ty, tx) => `${state.seed}|${period()}|${ty}|${tx}`;

  function visible() {
    const s = scale(), w = canvas.width / s, h = canvas.height / s;
    const y0 = Math.floor((state.cy - h / 2) / T), y1 = Math.floor((state.cy + h / 2) / T);
    const x0 = Math.floor((state.cx - w / 2) / T), x1 = Math.floor((state.cx + w / 2) / T);
    const out = [];
    for (let ty = y0; ty <= y1; ty++) for (let tx = x0; tx <= x1; tx++) out.push([ty, tx]);
    const d = ([ty, tx]) => ((ty + 0.5) * T - state.cy) ** 2 + ((tx + 0.5) * T - state.cx) ** 2;
    return out.sort((a, b) => d(a) - d(b));
  }

  function draw() {
    const s = scale();
    ctx.fillStyle = "#222";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = s < 1;
    let missing = 0;
    for (const [ty, tx] of visible()) {
      const sx = Math.round((tx * T - state.cx) * s + canvas.width / 2);
      const sy = Math.round((ty * T - state.cy) * s + canvas.height / 2);
      const bmp = cache.get(key(ty, tx));
      if (bmp) ctx.drawImage(bmp, sx, sy, Math.ceil(T * s), Math.ceil(T * s));
      else missing++;
    }
    const p = state.periodic ? `, period ${state.period}` : "";
    const speed = msPerTile ? `, ${Math.round(msPerTile)} ms per ${T}² tile` : "";
    status(`seed ${state.seed}${p}, centre (y ${Math.round(state.cy)}, x ${Math.round(state.cx)}), ` +
      `zoom ${s}, ${missing} tiles to paint${speed} (${readyInfo.ep}, ${readyInfo.threads} threads)`);
    if (!missing && !firstDone) {
      firstDone = true;
      api.firstViewMs = performance.now();
      api.openMs = api.firstViewMs - t0;
      document.body.dataset.ready = "1";
      ready.ok(info);
    }
    return missing;
  }

  function pump() {
    if (inflight) return;
    const next = visible().find(([ty, tx]) => !cache.has(key(ty, tx)));
    if (!next) return;
    const k = key(...next);
    inflight = k;
    request(next[0] * T, next[1] * T, T, T)
      .then(async (m) => {
        msPerTile = msPerTile ? 0.8 * msPerTile + 0.2 * m.ms : m.ms;
        cache.set(k, await createImageBitmap(new ImageData(m.rgba, T, T)));
        while (cache.size > CACHE) cache.delete(cache.keys().next().value);
      })
      .catch((e) => status(`tile failed: ${e.message}`, true))
      .finally(() => {
        inflight = null;
        draw();
        pump();
      });
  }

  const redraw = () => {
    draw();
    pump();
  };
  function resize() {
    canvas.width = stage.clientWidth;
    canvas.height = stage.clientHeight;
    redraw();
  }
  new ResizeObserver(resize).observe(stage);

  // --- interaction ------------------------------------------------------------------------
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY };
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.add("dragging");
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    state.cx -= (e.clientX - drag.x) / scale();
    state.cy -= (e.clientY - drag.y) / scale();
    drag = { x: e.clientX, y: e.clientY };
    redraw();
  });
  const endDrag = () => {
    drag = null;
    canvas.classList.remove("dragging");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  const zoomBy = (d) => {
    state.zoom = Math.min(ZOOMS.length - 1, Math.max(0, state.zoom + d));
    redraw();
  };
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    zoomBy(e.deltaY < 0 ? 1 : -1);
  }, { passive: false });
  window.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT") return;
    const step = 128 / scale();
    const moves = { ArrowLeft: [0, -step], ArrowRight: [0, step], ArrowUp: [-step, 0], ArrowDown: [step, 0] };
    if (moves[e.key]) {
      state.cy += moves[e.key][0];
      state.cx += moves[e.key][1];
      redraw();
    } else if (e.key === "+" || e.key === "=") zoomBy(1);
    else if (e.key === "-") zoomBy(-1);
  });

  const field = (label, value, type, onChange, attrs = {}) => {
    const l = document.createElement("label");
    l.textContent = `${label} `;
    const i = document.createElement("input");
    i.type = type;
    Object.assign(i, attrs);
    if (type === "checkbox") i.checked = value;
    else i.value = value;
    i.onchange = () => onChange(type === "checkbox" ? i.checked : i.value);
    l.append(i);
    controls.append(l);
    return i;
  };
  field("seed", state.seed, "text", (v) => {
    if (/^\d+$/.test(v) && BigInt(v) < 2n ** 32n) state.seed = v;
    redraw();
  });
  field("periodic", state.periodic, "checkbox", (v) => {
    state.periodic = v;
    redraw();
  });
  field("period", state.period, "number", (v) => {
    const p = Math.round(Number(v) / stride) * stride;
    if (p >= stride) state.period = p;
    redraw();
  }, { step: stride, min: stride });
  const goto = field("go to y,x", `${state.cy},${state.cx}`, "text", (v) => {
    const [y, x] = v.split(",").map(Number);
    if (Number.isFinite(y) && Number.isFinite(x)) Object.assign(state, { cy: y, cx: x });
    redraw();
  });
  goto.title = "texture pixel at the centre of the view, e.g. -3000000000,12";
  api.state = state;
  api.redraw = redraw;
  resize();
}
