// Tiles of a self-contained tilegen model (dynamic form) from Node, in onnxruntime-node or in
// onnxruntime-web's WebAssembly backend, quantised as the page and the examples do: the parity
// tests (tests/test_parity.py) and bench/parity.py compare these bytes with `tilegen generate`'s.
//
//   node tests/js_tiles.mjs node|web MODEL.onnx CASES.json OUT.raw [--threads N]
//
// CASES.json: [[seed, y0, x0, height, width, period_y, period_x], ...] (numbers or decimal
// strings: origins past 2^53 stay exact). OUT.raw: every case's 8-bit RGB(A) bytes, (H, W, C),
// one after the other. Each runtime is loaded from the folder `npm ci` installed it into
// (examples/ for onnxruntime-node, tilegen/web/ for onnxruntime-web).

import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

async function loadRuntime(kind) {
  const folder = kind === "node" ? join(ROOT, "examples") : join(ROOT, "tilegen", "web");
  const name = kind === "node" ? "onnxruntime-node" : "onnxruntime-web";
  const entry = createRequire(join(folder, "package.json")).resolve(name);
  if (kind === "node") return import(pathToFileURL(entry).href);
  // onnxruntime-web: its Node build (dist/ort.node.min.mjs) runs the same WebAssembly as a page.
  return import(pathToFileURL(join(dirname(entry), "ort.node.min.mjs")).href);
}

// tilegen's rounding rule (docs/FORMAT.md section 7), as the page's worker applies it.
function quantize8(v, lo, hi) {
  let u = v;
  if (lo !== 0 || hi !== 1) u = Math.fround(Math.fround(v - lo) * Math.fround(1 / (hi - lo)));
  u = u < 0 ? 0 : u > 1 ? 1 : u;
  const p = Math.fround(u * 255);
  const r = Math.round(p);
  return r - p === 0.5 && r % 2 === 1 ? r - 1 : r;
}

async function main() {
  const [kind, model, casesPath, out, ...rest] = process.argv.slice(2);
  if (!["node", "web"].includes(kind) || !out) {
    throw new Error("usage: node js_tiles.mjs node|web MODEL.onnx CASES.json OUT.raw [--threads N]");
  }
  const threads = rest[0] === "--threads" ? Number(rest[1]) : 1;
  const ort = await loadRuntime(kind);
  const options = {};
  if (kind === "web") {
    ort.env.wasm.numThreads = threads;
    options.executionProviders = ["wasm"];
  } else {
    options.intraOpNumThreads = threads;
  }
  const session = await ort.InferenceSession.create(readFileSync(model), options);
  const scalar = (v) => new ort.Tensor("int64", BigInt64Array.of(BigInt(v)), []);
  const one = { seed: 0, y0: 0, x0: 0, height: 1, width: 1, period_y: 0, period_x: 0 };
  const first = Object.fromEntries(session.inputNames.map((n) => [n, scalar(one[n])]));
  const contract = JSON.parse(
    new TextDecoder().decode((await session.run(first, ["contract"])).contract.data),
  );
  const [lo, hi] = contract.value_range;
  const parts = [];
  const started = performance.now();
  for (const [seed, y0, x0, h, w, py, px] of JSON.parse(readFileSync(casesPath, "utf8"))) {
    const f = { seed, y0, x0, height: h, width: w, period_y: py, period_x: px };
    const feeds = Object.fromEntries(session.inputNames.map((n) => [n, scalar(f[n])]));
    const image = (await session.run(feeds, ["image"])).image;
    const [, c, th, tw] = image.dims;
    const data = image.data;
    const bytes = new Uint8Array(th * tw * c);
    for (let ch = 0; ch < c; ch++) {
      for (let i = 0; i < th * tw; i++) bytes[i * c + ch] = quantize8(data[ch * th * tw + i], lo, hi);
    }
    parts.push(bytes);
  }
  writeFileSync(out, Buffer.concat(parts));
  console.log(JSON.stringify({ runtime: kind, version: ort.env.versions?.common ?? "",
                               seconds: (performance.now() - started) / 1000 }));
}

main().catch((e) => {
  console.error(`error: ${e.message}`);
  process.exit(2);
});
