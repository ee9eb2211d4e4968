// Paint a texture from a self-contained tilegen model with plain onnxruntime-node (no tilegen).
//
// The JavaScript twin of plain_onnxruntime.py. The model computes its own noise (docs/NOISE.md)
// and returns the tile at any origin; tiles laid side by side form one seamless image. Its bytes
// equal `tilegen generate`'s: same graph, same float32 quantisation (docs/FORMAT.md section 6).
//
//   tilegen export tilegen/assets/default.onnx -o tile.onnx --self-contained
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix examples
//   node examples/plain_onnxruntime.mjs tile.onnx texture.png --seed 7 --size 256 256 --tiles 2 3
//
// The contract (docs/FORMAT.md): inputs are int64 scalars (shape [], not [1]); the dynamic form
// takes seed, y0, x0, height, width, period_y, period_x and also returns its contract as UTF-8
// JSON in the output "contract" (onnxruntime's JavaScript API cannot read ONNX metadata); the
// fixed-tile form takes seed, y0, x0 and its contract is in MODEL.onnx.json beside it.

import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { deflateSync } from "node:zlib";
import * as ort from "onnxruntime-node";

const USAGE =
  "usage: node plain_onnxruntime.mjs MODEL.onnx OUT.png [--seed S] [--origin Y X] " +
  "[--size H W] [--tiles ROWS COLS] [--period PY PX] [--raw]";

function parseArgs(argv) {
  const a = { seed: 0n, origin: [0n, 0n], size: null, tiles: [2, 2], period: [0n, 0n] };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const take = (n) => argv.slice(i + 1, (i += n) + 1);
    if (k === "--seed") a.seed = BigInt(take(1)[0]);
    else if (k === "--origin") a.origin = take(2).map(BigInt);
    else if (k === "--size") a.size = take(2).map(Number);
    else if (k === "--tiles") a.tiles = take(2).map(Number);
    else if (k === "--period") a.period = take(2).map(BigInt);
    else if (k === "--raw") a.raw = true;
    else if (k.startsWith("--")) throw new Error(`unknown option ${k}\n${USAGE}`);
    else pos.push(k);
  }
  if (pos.length !== 2) throw new Error(USAGE);
  [a.model, a.output] = pos;
  return a;
}

const scalar = (v) => new ort.Tensor("int64", BigInt64Array.of(BigInt(v)), []);

// tilegen's one rounding rule, in float32 exactly as numpy does it (tilegen.model.quantize_planar):
// u = clip(v, 0, 1) (after mapping value_range to [0, 1]), q = round half to even(f32(u * 255)).
export function quantize8(v, lo = 0, hi = 1) {
  let u = v;
  if (lo !== 0 || hi !== 1) u = Math.fround(Math.fround(v - lo) * Math.fround(1 / (hi - lo)));
  u = u < 0 ? 0 : u > 1 ? 1 : u;
  const p = Math.fround(u * 255); // the float32 product (exact in double, then rounded once)
  const r = Math.round(p); // rounds halves up...
  return r - p === 0.5 && r % 2 === 1 ? r - 1 : r; // ...so halves to odd go down: to even
}

// A minimal PNG writer (8-bit RGB/RGBA/gray), so the example needs nothing but onnxruntime.
const CRC = new Int32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c;
});
function chunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, "latin1"), data]);
  let c = -1;
  for (const b of body) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeInt32BE(~c, 8 + data.length);
  return out;
}
export function encodePNG(pixels, height, width, channels) {
  const colour = { 1: 0, 3: 2, 4: 6 }[channels];
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, colour, 0, 0, 0], 8);
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const sig = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([sig, chunk("IHDR", ihdr), chunk("IDAT", deflateSync(raw)), chunk("IEND", Buffer.alloc(0))]);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const session = await ort.InferenceSession.create(args.model, { intraOpNumThreads: 2 });
  const dynamic = session.inputNames.includes("height");
  let contract;
  if (session.outputNames.includes("contract")) {
    const one = { seed: 0, y0: 0, x0: 0, height: 1, width: 1, period_y: 0, period_x: 0 };
    const feeds = Object.fromEntries(session.inputNames.map((n) => [n, scalar(one[n])]));
    contract = JSON.parse(new TextDecoder().decode((await session.run(feeds, ["contract"])).contract.data));
  } else {
    contract = JSON.parse(readFileSync(`${args.model}.json`, "utf8")); // the sidecar
  }
  if (contract.form !== "self-contained") throw new Error(`${args.model}: not a self-contained tilegen model`);
  const [th, tw] = dynamic ? args.size ?? [256, 256] : contract.tile;
  const [lo, hi] = contract.value_range;
  const c = contract.channels.length;
  const [rows, cols] = args.tiles;
  const H = th * rows, W = tw * cols;
  const pixels = new Uint8Array(H * W * c);
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < cols; q++) {
      const feed = { seed: args.seed, y0: args.origin[0] + BigInt(r * th), x0: args.origin[1] + BigInt(q * tw) };
      Object.assign(feed, { height: th, width: tw, period_y: args.period[0], period_x: args.period[1] });
      const feeds = Object.fromEntries(session.inputNames.map((n) => [n, scalar(feed[n])]));
      const image = (await session.run(feeds, ["image"])).image.data; // float32 [1, C, th, tw]
      for (let ch = 0; ch < c; ch++)
        for (let y = 0; y < th; y++)
          for (let x = 0; x < tw; x++)
            pixels[((r * th + y) * W + q * tw + x) * c + ch] = quantize8(image[(ch * th + y) * tw + x], lo, hi);
    }
  }
  writeFileSync(args.output, args.raw ? pixels : encodePNG(pixels, H, W, c));
  const periodic = args.period[0] > 0n ? `, periodic ${args.period[0]}x${args.period[1]}` : "";
  console.log(`wrote ${args.output}: ${H}x${W} ${contract.channels}, seed ${args.seed}, ${rows}x${cols} tiles of ${th}x${tw}${periodic}`);
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error(`error: ${e.message}`);
    process.exit(2);
  });
}
