// The model's worker: onnxruntime-web runs the self-contained .onnx (dynamic form) and returns
// quantised RGBA tiles, so the page stays responsive. Messages:
//   {type: "init", ep: "wasm" | "webgpu"}  ->  {type: "ready", ep, threads} | {type: "error"}
//   {type: "tile", id, seed, y0, x0, h, w, py, px}  ->  {type: "tile", id, rgba, ms} (RGBA bytes)
// Coordinates and seed may be numbers or decimal strings (origins past 2^53 stay exact).

let ort, session, lo = 0, hi = 1, channels = 3;

const scalar = (v) => new ort.Tensor("int64", BigInt64Array.of(BigInt(v)), []);

// tilegen's rounding rule (docs/FORMAT.md, tilegen.model.quantize_planar), bit for bit.
function quantize8(v) {
  let u = v;
  if (lo !== 0 || hi !== 1) u = Math.fround(Math.fround(v - lo) * Math.fround(1 / (hi - lo)));
  u = u < 0 ? 0 : u > 1 ? 1 : u;
  const p = Math.fround(u * 255);
  const r = Math.round(p);
  return r - p === 0.5 && r % 2 === 1 ? r - 1 : r;
}

async function init(ep) {
  ort = await import(ep === "webgpu" ? "/vendor/ort/ort.webgpu.min.mjs" : "/vendor/ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = "/vendor/ort/";
  if (!self.crossOriginIsolated) ort.env.wasm.numThreads = 1;
  session = await ort.InferenceSession.create("/model.onnx", {
    executionProviders: ep === "webgpu" ? ["webgpu", "wasm"] : ["wasm"],
  });
  const one = { seed: 0, y0: 0, x0: 0, height: 1, width: 1, period_y: 0, period_x: 0 };
  const feeds = Object.fromEntries(session.inputNames.map((n) => [n, scalar(one[n])]));
  const contract = JSON.parse(new TextDecoder().decode((await session.run(feeds, ["contract"])).contract.data));
  [lo, hi] = contract.value_range;
  channels = contract.channels.length;
  return { ep, threads: ort.env.wasm.numThreads, contract };
}

async function tile(m) {
  const t0 = performance.now();
  const f = { seed: m.seed, y0: m.y0, x0: m.x0, height: m.h, width: m.w, period_y: m.py, period_x: m.px };
  const feeds = Object.fromEntries(session.inputNames.map((n) => [n, scalar(f[n])]));
  const img = (await session.run(feeds, ["image"])).image.data; // float32 [1, C, h, w]
  const n = m.h * m.w, rgba = new Uint8ClampedArray(n * 4);
  for (let i = 0; i < n; i++) {
    const r = quantize8(img[i]);
    rgba[4 * i] = r;
    rgba[4 * i + 1] = channels >= 3 ? quantize8(img[n + i]) : r;
    rgba[4 * i + 2] = channels >= 3 ? quantize8(img[2 * n + i]) : r;
    rgba[4 * i + 3] = channels === 4 ? quantize8(img[3 * n + i]) : 255;
  }
  return { rgba, ms: performance.now() - t0 };
}

let queue = Promise.resolve();
self.onmessage = (e) => {
  const m = e.data;
  queue = queue.then(async () => {
    try {
      if (m.type === "init") self.postMessage({ type: "ready", ...(await init(m.ep)) });
      else if (m.type === "tile") {
        const { rgba, ms } = await tile(m);
        self.postMessage({ type: "tile", id: m.id, rgba, ms }, [rgba.buffer]);
      }
    } catch (err) {
      self.postMessage({ type: "error", id: m.id, message: String(err.message || err) });
    }
  });
};
