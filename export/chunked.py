"""The patch projections' nearest-target search, rewritten into chunks of rows in the graph.

A projection scores every patch row x_i against every exemplar patch y_j in one product,
scores = (x_i, 1) @ (-2 y_j ; ||y_j||^2 - psi_j), an (N, J) matrix that torch's exporter writes
whole: 133 MB for a 256^2 tile with J = 2000, written to memory by the product and read back by
the argmin. In chunks of CHUNK_ROWS rows it stays in the CPU's cache, and the product and the
argmin run about 1.5x faster per row (docs/GENERATOR.md, section 3).

ONNX has no loop over a dynamic size but `Loop`, so the rewrite is a graph pass after export:

    C = max(CHUNK_ROWS, ceil(N / MAX_TRIPS)),  K = ceil(N / C)
    rows (N, D+1)  --pad to K*C rows-->  Loop k < K:  rows[kC : kC+C] @ scores_of
                                                    -> first argmin in blocks (as torch's)
                   -->  (K, C) indices  -->  flattened, the first N kept

At most MAX_TRIPS trips: a GPU's 2048^2 window (a million rows) runs 64 chunks of 16k rows, not a
thousand small products with a launch and a sync each.

It replaces, for every projection, the nodes from its score product to the index the targets
are gathered with. Each row's argmin depends on that row alone, so the indices, and every pixel,
are the same as the unchunked graph's (the scores are exact integers: train/generator.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHUNK_ROWS = 1024  # rows per chunk at least: 1024 x 2000 scores = 8 MB
MAX_TRIPS = 64  # chunks per window at most (a big GPU window takes bigger chunks)


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output}


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _target_index(graph: onnx.GraphProto, product: onnx.NodeProto) -> str:
    """The (N,) index tensor the projection after `product` gathers its targets with: the first
    Gather/GatherND downstream of the product whose data is an initializer (the targets); its
    indices, or what the Unsqueeze feeding them unsqueezed."""
    consumers, producers = _consumers(graph), _producers(graph)
    constant = {i.name for i in graph.initializer}
    front, seen = list(product.output), set()
    while front:
        for c in consumers.get(front.pop(0), []):
            if c.output[0] in seen:
                continue
            seen.add(c.output[0])
            if c.op_type in ("GatherND", "Gather") and c.input[0] in constant:
                index = producers.get(c.input[1])
                return index.input[0] if index.op_type == "Unsqueeze" else c.input[1]
            front.extend(c.output)
    raise ValueError(f"no gather of targets after {product.name}")


def _consts(p: str, **values) -> list[onnx.NodeProto]:
    """Constant nodes named p + key."""
    return [
        helper.make_node("Constant", [], [p + k], value=numpy_helper.from_array(np.array(v), p + k))
        for k, v in values.items()
    ]


def float_scores(p: str, x: str, scores_of: str) -> list[onnx.NodeProto]:
    """scores (C, J) = rows (C, D+1) @ scores_of (D+1, J): the float model's product."""
    return [helper.make_node("MatMul", [x, scores_of], [p + "scores"])]


def integer_scores(weights: str):
    """scores (C, J) = rows @ weights for uint8 rows and int8 weights: MatMulInteger's exact
    int32 sums (the model's scores: train/quantize.py; the rows carry the bias's constant
    columns, export/integer.py `bias_digits`). An int32 Add of the bias after the product
    would cost about as much as the product itself ((C, J) written and read again)."""

    def nodes(p: str, x: str, _scores_of: str) -> list[onnx.NodeProto]:
        return [helper.make_node("MatMulInteger", [x, weights], [p + "scores"])]  # int32 (C, J)

    return nodes


POSITION_BITS = 6  # a block's position in a key: blocks per row and columns per block < 64


def keyed_fits(bound: int, columns: int, block: int) -> bool:
    """Whether the keyed argmin applies: int32 scores of magnitude at most `bound` leave room
    for a position in the low POSITION_BITS of score * 2^POSITION_BITS + position, and both
    positions (a block in a row of `columns`, a column in a block) fit those bits."""
    positions = max(columns // block, block)
    return bound < 2 ** (31 - POSITION_BITS) and positions <= 2**POSITION_BITS


def _first_min_position(p: str, values: str, axis: str, n: int) -> list[onnx.NodeProto]:
    """p + "pos" (int32): the first position of each row's minimum in the last axis (of size
    `n`) of int32 `values`, as one ReduceMin of the keys v * 2^POSITION_BITS + position. A key
    orders by value, then by position (position < 2^POSITION_BITS), and its low bits are the
    position (two's complement: also for negative values). onnxruntime's ArgMin is several
    times slower per element than its ReduceMin."""
    node = helper.make_node
    return [
        *_consts(
            p,
            shift=np.int32(2**POSITION_BITS),
            low=np.int32(2**POSITION_BITS - 1),
            at=np.arange(n, dtype=np.int32),
        ),  # fmt: skip
        node("Mul", [values, p + "shift"], [p + "shifted"]),
        node("Add", [p + "shifted", p + "at"], [p + "keys"]),
        node("ReduceMin", [p + "keys", axis], [p + "key"], keepdims=0),
        node("BitwiseAnd", [p + "key", p + "low"], [p + "pos"]),
    ]


def _argmin_body(
    p: str,
    rows: str,
    scores_of: str,
    outer: str,
    block: int,
    score=float_scores,
    keyed: int = 0,
) -> onnx.GraphProto:
    """The Loop body: chunk k's rows, their scores (`score`: float_scores, or integer_scores'
    nodes), and the first argmin in blocks of columns, as train's first_argmin. It reads from
    the graph around it (prefix `outer`, `_loop_nodes`): "c" ([C]), "blocks" ([C, -1, block])
    and "row_start" (i * J/B for each row i of a chunk). `keyed` (J, or 0): int32 scores whose
    keys fit (`keyed_fits`) find both first minima by ReduceMin of keys
    (`_first_min_position`) instead of ArgMin, in a body of fewer nodes (each costs a few
    microseconds a trip)."""
    nodes = _consts(p, axis0=[0], axis1=[1], axis2=[2], block=[block], rows_of_block=[-1, block],
                    block32=np.int32(block))  # fmt: skip
    node, chunk = helper.make_node, outer + "c"
    nodes += [
        node("Mul", [p + "k", chunk], [p + "start"]),  # [1]
        node("Add", [p + "start", chunk], [p + "end"]),
        node("Slice", [rows, p + "start", p + "end", p + "axis0"], [p + "x"]),
        *score(p, p + "x", scores_of),  # (C, J)
        node("Reshape", [p + "scores", outer + "blocks"], [p + "s3"]),  # (C, J/B, B)
        # The minimum of each block, the first block holding the row's minimum, then the first
        # column of that block holding it: the lowest index of the row's minimum.
        node("ReduceMin", [p + "s3", p + "axis2"], [p + "mins"], keepdims=0),
        *(_first_min_position(p + "b_", p + "mins", p + "axis1", keyed // block) if keyed else
          [node("ArgMin", [p + "mins"], [p + "b_pos"], axis=1, keepdims=0)]),  # (C,)
        # Row i's block b_i is row i * J/B + b_i of the scores seen as (C * J/B, B): one Gather
        # of C rows, where an Expand of the index and a GatherElements made a whole 512^2
        # window 1.08x slower (bench/RESULTS.md, "Integer model").
        node("Add", [outer + "row_start", p + "b_pos"], [p + "which"]),
        node("Reshape", [p + "scores", p + "rows_of_block"], [p + "s2"]),
        node("Gather", [p + "s2", p + "which"], [p + "blk"], axis=0),  # (C, B)
        *(_first_min_position(p + "col_", p + "blk", p + "axis1", block) if keyed else
          [node("ArgMin", [p + "blk"], [p + "col_pos"], axis=1, keepdims=0)]),  # (C,)
        node("Mul", [p + "b_pos", p + ("block32" if keyed else "block")], [p + "first"]),
        node("Add", [p + "first", p + "col_pos"], [p + "idx_" if keyed else p + "idx"]),
        *([node("Cast", [p + "idx_"], [p + "idx"], to=TensorProto.INT64)] if keyed else []),
        node("Identity", [p + "cond"], [p + "cond_out"]),
    ]  # fmt: skip
    i64, flag = TensorProto.INT64, TensorProto.BOOL
    return helper.make_graph(
        nodes,
        p + "body",
        [helper.make_tensor_value_info(p + "k", i64, []),
         helper.make_tensor_value_info(p + "cond", flag, [])],
        [helper.make_tensor_value_info(p + "cond_out", flag, []),
         helper.make_tensor_value_info(p + "idx", i64, ["chunk"])],
    )  # fmt: skip


def _loop_nodes(
    p: str,
    rows: str,
    scores_of: str,
    index: str,
    chunk: int,
    block: int,
    score=float_scores,
    keyed: int = 0,
):
    """Nodes computing `index` (N,) from rows (N, D+1) in K chunks of C rows:
    C = max(chunk, ceil(N / MAX_TRIPS)), K = ceil(N / C); `keyed`: see `_argmin_body`."""
    nodes = _consts(p, rows=[chunk], trips=[MAX_TRIPS], trips_m1=[MAX_TRIPS - 1], zeros=[0],
                    one=[1], true=True, minus1=[-1], block=[block], zero=0, one_=1)  # fmt: skip
    body = _argmin_body(p + "in_", p + "padded", scores_of, p, block, score, keyed)
    node = helper.make_node
    if keyed:
        nodes += _consts(p, per_row=[keyed // block])
    else:  # J / B from the score matrix's shape
        nodes += [node("Shape", [scores_of], [p + "j"], start=1, end=2),
                  node("Div", [p + "j", p + "block"], [p + "per_row"])]  # fmt: skip
    nodes += [
        node("Shape", [rows], [p + "n"], start=0, end=1),  # [N]
        node("Add", [p + "n", p + "trips_m1"], [p + "n_up"]),
        node("Div", [p + "n_up", p + "trips"], [p + "c_min"]),  # ceil(N / MAX_TRIPS)
        node("Max", [p + "c_min", p + "rows"], [p + "c"]),  # C
        node("Sub", [p + "c", p + "one"], [p + "c_m1"]),
        node("Add", [p + "n", p + "c_m1"], [p + "n_up2"]),
        node("Div", [p + "n_up2", p + "c"], [p + "k"]),  # K = ceil(N / C)
        node("Mul", [p + "k", p + "c"], [p + "n_pad"]),
        node("Sub", [p + "n_pad", p + "n"], [p + "extra"]),
        node("Concat", [p + "zeros", p + "zeros", p + "extra", p + "zeros"], [p + "pads"], axis=0),
        node("Pad", [rows, p + "pads"], [p + "padded"]),  # zero rows at the end, cut below
        # what every trip reads: the (C, J/B, B) shape, and each row's first block in (C*J/B, B)
        node("Concat", [p + "c", p + "minus1", p + "block"], [p + "blocks"], axis=0),
        node("Squeeze", [p + "c", p + "zeros"], [p + "c0"]),
        node("Range", [p + "zero", p + "c0", p + "one_"], [p + "row"]),
        node("Mul", [p + "row", p + "per_row"], [p + "row_start" + ("64" if keyed else "")]),
        *(
            [node("Cast", [p + "row_start64"], [p + "row_start"], to=TensorProto.INT32)]
            if keyed
            else []
        ),
        node("Squeeze", [p + "k", p + "zeros"], [p + "trips_k"]),
        node("Loop", [p + "trips_k", p + "true"], [p + "chunks"], body=body),  # (K, C)
        node("Reshape", [p + "chunks", p + "minus1"], [p + "all"]),
        node("Slice", [p + "all", p + "zeros", p + "n", p + "zeros"], [index]),
    ]
    return nodes


def chunk_projections(proto: onnx.ModelProto, block: int, chunk: int = CHUNK_ROWS):
    """`proto` with every projection's score product and argmin done in chunks of rows (in
    place, and returned). A projection is a MatMul whose second input holds no graph input's
    data (the scores_of matrix); a graph without one is returned as it is."""
    g = proto.graph
    producers = _producers(g)
    constant = {i.name for i in g.initializer}

    def from_constants(name: str, seen: set[str]) -> bool:
        if name in constant or name == "":
            return True
        node = producers.get(name)
        if node is None or name in seen:
            return node is not None
        seen.add(name)
        return all(from_constants(i, seen) for i in node.input)

    k = 0
    while True:  # one projection at a time: a rewrite copies the graph's nodes
        product = next(
            (n for n in g.node if n.op_type == "MatMul" and from_constants(n.input[1], set())),
            None,
        )
        if product is None:
            break
        index = _target_index(g, product)
        region = _between(g, product, index)
        loop = _loop_nodes(f"chunked{k}_", product.input[0], product.input[1], index, chunk, block)
        # The loop takes the product's place: everything it reads is computed by then.
        nodes = list(g.node)
        first = min(i for i, n in enumerate(nodes) if n.output[0] in region)
        kept = [n for n in nodes if n.output[0] not in region]
        del g.node[:]
        g.node.extend(kept[:first] + loop + kept[first:])
        producers = _producers(g)
        k += 1
    _drop_unused(g)
    return proto


def _between(g: onnx.GraphProto, product: onnx.NodeProto, index: str) -> set[str]:
    """The nodes (by first output) downstream of `product` that `index` depends on, product
    included; what they compute must be read by nothing else but through `index`."""
    producers, consumers = _producers(g), _consumers(g)
    down, front = {product.output[0]}, list(product.output)
    while front:
        for c in consumers.get(front.pop(), []):
            if c.output[0] not in down:
                down.add(c.output[0])
                front.extend(c.output)
    region, front = set(), [index]
    while front:
        node = producers.get(front.pop())
        if node is not None and node.output[0] in down and node.output[0] not in region:
            region.add(node.output[0])
            front.extend(node.input)
    if product.output[0] not in region:
        raise ValueError(f"{index} does not depend on {product.name}")
    for n in g.node:
        if n.output[0] in region:
            for o in n.output:
                readers = [c for c in consumers.get(o, []) if c.output[0] not in region]
                if o != index and (readers or o in {v.name for v in g.output}):
                    raise ValueError(f"{o} is read outside the projection's argmin")
    return region


def _drop_unused(g: onnx.GraphProto) -> None:
    """Remove nodes (and initializers) whose outputs nothing reads any more."""
    while True:
        used = {o.name for o in g.output}
        for n in g.node:
            used.update(n.input)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    used.update(_outer_names(a.g))
        dead = [n for n in g.node if not any(o in used for o in n.output)]
        if not dead:
            break
        dead_names = {n.output[0] for n in dead}
        kept_nodes = [n for n in g.node if n.output[0] not in dead_names]
        del g.node[:]
        g.node.extend(kept_nodes)
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)


def _outer_names(body: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads (its own outputs and inputs included: harmless here)."""
    names = set()
    for n in body.node:
        names.update(n.input)
    return names
