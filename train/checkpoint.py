"""Saving and loading training checkpoints and trained models, safely.

Two kinds of file, both written with `torch.save` and holding only plain tensors and JSON-able
values (dicts, lists, strings, numbers), so they load with `torch.load(..., weights_only=True)`:
nothing in them is ever unpickled into an arbitrary object, and a crafted pickle (one whose
loading would call `os.system`, say) is refused.

    MODEL.pt       kind "model": the folded, eval-mode generator (plain convolutions with bias,
                   its normalisation folded in), its GeneratorConfig and metadata (exemplar hash,
                   training settings, code version). `load_generator` / `save_generator`.
    MODEL.pt.ckpt  kind "checkpoint": everything `--resume` needs to continue bit for bit as if
                   the run had never stopped: the train-mode weights and BatchNorm buffers,
                   the Adam state, the dual potentials psi of every scale, the torch RNG state,
                   the iteration, the settings and the exemplar's hash.

Files are written atomically (a temporary file in the same folder, then `os.replace`), so a run
killed while saving leaves the previous file whole. Every failure to load is one-line UserError.
"""

from __future__ import annotations

import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tilegen import __version__
from tilegen.errors import UserError, one_line
from train.generator import GeneratorConfig, TextureGenerator, fold, is_folded

FORMAT = "tilegen"
FORMAT_VERSION = 1
MODEL = "model"
CHECKPOINT = "checkpoint"


# --- raw files --------------------------------------------------------------------------------


def atomic_save(obj: dict, path: str | os.PathLike) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}")
    finally:
        tmp.unlink(missing_ok=True)


def safe_load(path: str | os.PathLike, kind: str) -> dict:
    """Load a tilegen file of `kind` without unpickling arbitrary objects; UserError otherwise."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read {kind} {path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4" from foreign files
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, KeyError) as e:  # fmt: skip
        # weights_only refuses every global it does not know: crafted pickles end here.
        why = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln]
        if why:
            raise UserError(
                f"refusing to load {path}: not a plain tilegen {kind} file, it asks to run or "
                f"build objects ({why[0]})"
            )
        raise UserError(
            f"cannot read {kind} {path}: the file is damaged, truncated or not a tilegen file "
            f"({type(e).__name__}: {one_line(e)})"
        )
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{path} is not a tilegen {kind} file")
    if obj.get("kind") != kind:
        raise UserError(f"{path} is a tilegen {obj.get('kind')!r} file, not a {kind}")
    if not isinstance(obj.get("format_version"), int) or obj["format_version"] > FORMAT_VERSION:
        raise UserError(
            f"{path} uses tilegen {kind} format {obj.get('format_version')}, newer than this "
            f"tilegen reads ({FORMAT_VERSION}): upgrade tilegen"
        )
    return obj


def _header(kind: str) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "version": __version__,
    }


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"{what} must be JSON-able: {e}")


def _unjson(obj: dict, key: str, path: Path) -> Any:
    try:
        return json.loads(obj[key])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: damaged tilegen file ({key}: {one_line(e)})")


def _cpu(t: Any) -> Any:
    return t.detach().cpu().clone() if torch.is_tensor(t) else t


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: _cpu(v) for k, v in module.state_dict().items()}


def _compact_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state with each projection's exemplar patches (whole 8-bit levels, PatchProjection)
    stored as uint8: a quarter of the file. load_state_dict copies them back into float32."""
    state = _plain_state(module)
    for k, v in state.items():
        levels = k.endswith("targets") and v.is_floating_point() and v.numel()
        if levels and torch.equal(v, v.round()) and v.min() >= 0 and v.max() <= 255:
            state[k] = v.to(torch.uint8)
    return state


# --- the trained model ------------------------------------------------------------------------


def save_generator(path: str | os.PathLike, model: TextureGenerator, meta: dict) -> None:
    """Write MODEL.pt: the folded eval-mode generator, its GeneratorConfig and `meta` (JSON-able:
    exemplar_sha256, training settings, ...). The code version is added as meta["version"]."""
    if not is_folded(model):
        raise ValueError("save_generator needs a folded generator: call train.generator.fold first")
    meta = {**meta, "version": __version__}
    atomic_save(
        {
            **_header(MODEL),
            "generator": _json(model.cfg.to_dict(), "GeneratorConfig"),
            "meta": _json(meta, "meta"),
            "state_dict": _compact_state(model),
        },
        path,
    )


def build_folded(cfg: GeneratorConfig) -> TextureGenerator:
    """A generator of the folded structure (plain convs with bias), eval mode."""
    return fold(TextureGenerator(cfg).eval())


def load_generator(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[TextureGenerator, dict]:
    """(folded eval-mode TextureGenerator, meta) from a MODEL.pt written by save_generator.

    meta holds at least "exemplar_sha256", "training" (settings) and "version". Every problem
    (missing, damaged, crafted or foreign file) is a one-line UserError.
    """
    path = Path(path)
    obj = safe_load(path, MODEL)
    cfg_dict = _unjson(obj, "generator", path)
    meta = _unjson(obj, "meta", path)
    try:
        cfg_dict.setdefault("norm", "batch")  # models from before weight standardisation
        cfg_dict.setdefault("residual", 0.0)  # models from before residual joins
        if cfg_dict.pop("coarse_targets", None):  # an experiment no release wrote
            raise TypeError("coarse stages of their own size are not supported")
        cfg = GeneratorConfig(**cfg_dict)
        model = build_folded(cfg)
        model.load_state_dict(obj["state_dict"], strict=True)
    except (TypeError, KeyError, RuntimeError) as e:
        raise UserError(f"{path}: damaged tilegen model ({one_line(e)})")
    return model.to(device).eval(), meta


# --- training checkpoints ---------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    *,
    iteration: int,
    config: dict,
    exemplar_sha256: str,
    model: TextureGenerator,
    optimizer: torch.optim.Optimizer,
    potentials: list[torch.Tensor],
    rng_state: torch.Tensor,
    history: list[float],
    ema: dict[str, torch.Tensor] | None = None,
) -> None:
    """Everything needed to continue training bit for bit from after `iteration`."""
    opt_state = optimizer.state_dict()
    atomic_save(
        {
            **_header(CHECKPOINT),
            "iteration": int(iteration),
            "config": _json(config, "training config"),
            "exemplar_sha256": exemplar_sha256,
            "model": _plain_state(model),
            "optimizer": {
                "state": {
                    int(k): {n: _cpu(t) for n, t in v.items()}
                    for k, v in opt_state["state"].items()
                },
                "param_groups": opt_state["param_groups"],  # numbers, bools, tuples, None
            },
            "potentials": [p.detach().cpu().clone() for p in potentials],
            "rng_state": rng_state.detach().cpu().clone(),
            "history": [float(v) for v in history],
            **({"ema": {k: _cpu(v) for k, v in ema.items()}} if ema is not None else {}),
        },
        path,
    )


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint's contents, with "config" parsed back into a dict; UserError if unusable."""
    path = Path(path)
    obj = safe_load(path, CHECKPOINT)
    obj["config"] = _unjson(obj, "config", path)
    needed = ("iteration", "exemplar_sha256", "model", "optimizer", "potentials", "rng_state")
    missing = [k for k in needed if k not in obj]
    if missing:
        raise UserError(f"{path}: damaged tilegen checkpoint (missing {', '.join(missing)})")
    if not torch.is_tensor(obj["rng_state"]) or obj["rng_state"].dtype != torch.uint8:
        raise UserError(f"{path}: damaged tilegen checkpoint (bad RNG state)")
    return obj
