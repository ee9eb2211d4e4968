// Run any ONNX model once in onnxruntime-node or in onnxruntime-web's WebAssembly backend (under
// Node), on inputs given as raw files, and write each output as a raw file: how the tests and
// bench/integer_ops.py check an operator's exactness in the JavaScript runtimes.
//
//   node tests/js_run.mjs node|web SPEC.json [--threads N] [--repeat R]
//
// SPEC.json: {"model": PATH, "inputs": {NAME: {"type": "uint8", "dims": [..], "file": PATH}},
//             "outputs": {NAME: PATH}}. Prints {"seconds": median run time, "types": {...}}.

import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const ARRAYS = {
  float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array,
  int8: Int8Array, uint32: Uint32Array, int16: Int16Array, uint16: Uint16Array,
};

export async function loadRuntime(kind) {
  const folder = kind === "node" ? join(ROOT, "examples") : join(ROOT, "tilegen", "web");
  const name = kind === "node" ? "onnxruntime-node" : "onnxruntime-web";
  const entry = createRequire(join(folder, "package.json")).resolve(name);
  if (kind === "node") return import(pathToFileURL(entry).href);
  return import(pathToFileURL(join(dirname(entry), "ort.node.min.mjs")).href);
}

async function main() {
  const [kind, specPath, ...rest] = process.argv.slice(2);
  const opt = (k, d) => (rest.includes(k) ? Number(rest[rest.indexOf(k) + 1]) : d);
  const spec = JSON.parse(readFileSync(specPath, "utf8"));
  const ort = await loadRuntime(kind);
  const options = {};
  if (kind === "web") {
    ort.env.wasm.numThreads = opt("--threads", 1);
    options.executionProviders = ["wasm"];
  } else {
    options.intraOpNumThreads = opt("--threads", 1);
  }
  const session = await ort.InferenceSession.create(readFileSync(spec.model), options);
  const feeds = {};
  for (const [name, t] of Object.entries(spec.inputs)) {
    const bytes = readFileSync(t.file);
    const Arr = ARRAYS[t.type];
    const data = new Arr(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    feeds[name] = new ort.Tensor(t.type, data, t.dims);
  }
  const names = Object.keys(spec.outputs);
  let out;
  const times = [];
  for (let i = 0; i < opt("--repeat", 1); i++) {
    const t0 = performance.now();
    out = await session.run(feeds, names);
    times.push((performance.now() - t0) / 1000);
  }
  const types = {};
  for (const n of names) {
    const d = out[n].data;
    writeFileSync(spec.outputs[n], Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    types[n] = { type: out[n].type, dims: out[n].dims };
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ seconds: times[Math.floor(times.length / 2)], types }));
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(`error: ${e.message}`);
    process.exit(2);
  });
}
