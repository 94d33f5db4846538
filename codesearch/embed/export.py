"""A model's fp32 ONNX graph, wherever it comes from: a published export in its directory (no
torch needed), a build already in the cache, or an export made now by torch (the `torch` extra);
and ``cs model export``, which writes a model directory any torch-free install can load.

torch and transformers are imported only when an export is actually made.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codesearch.embed.choice import TORCH_HINT, torch_available
from codesearch.embed.resolve import ResolvedModel
from codesearch.embed.runner import (
    ENGINE_VERSION,
    FP32_FILE,
    OnnxUnavailable,
    build_dir,
    example,
    published_graph,
)
from codesearch.errors import ModelError

Notify = Callable[[str], None]
# What `cs model export` copies beside the graph: config, tokenizer, sentence-transformers pooling.
_COPIED = ("*.json", "*.txt", "*.model", "1_Pooling/*")
SETTINGS_FILE = "codesearch.json"


def load_torch_model(path: Path, dtype: Any) -> Any:
    """transformers' AutoModel from ``path`` in ``dtype``, in eval mode, quietly. Raises
    ModelError (one line) when it cannot be loaded."""
    import transformers
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
    try:
        # trust_remote_code stays False: a model repository must not run code on this machine.
        model = AutoModel.from_pretrained(path, **{dtype_kw: dtype, "trust_remote_code": False})
    except Exception as err:  # noqa: BLE001 - any loader failure becomes one readable line
        first_line = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(
            f"cannot load model from {path}: {first_line}",
            hint="check that the directory holds a transformers model and its tokenizer",
        ) from err
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar_was_on:
            hf_logging.enable_progress_bar()
    return model.eval()


def _forward_module(model: Any) -> Any:
    """The model as a module of (ids, mask[, positions]) -> last hidden state, for export."""
    import inspect

    import torch

    params = inspect.signature(model.forward).parameters
    no_cache = {"use_cache": False} if "use_cache" in params else {}

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, input_ids: Any, attention_mask: Any, *positions: Any) -> Any:
            extra = {"position_ids": positions[0]} if positions else {}
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra,
                             **no_cache)
            return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    return Forward().eval()


def export_graph(model: Any, pad_id: int, out: Path) -> None:
    """Write ``model`` (a float32 torch module) as an fp32 ONNX graph of (input_ids,
    attention_mask[, position_ids]) -> hidden, batch and length dynamic."""
    import inspect
    import warnings

    import torch

    takes_positions = "position_ids" in inspect.signature(model.forward).parameters
    ids, mask, positions = example(pad_id, 3, 16)
    args = [torch.from_numpy(ids), torch.from_numpy(mask)]
    names = ["input_ids", "attention_mask"]
    if takes_positions:
        args.append(torch.from_numpy(positions))
        names.append("position_ids")
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "hidden"]}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript exporter: it handles the transformers attention-mask code as is, and
        # writes external data for models over 2 GB.
        torch.onnx.export(
            _forward_module(model), tuple(args), str(out), dynamo=False,
            opset_version=17, input_names=names, output_names=["hidden"], dynamic_axes=axes,
        )  # fmt: skip


def _export_now(res: ResolvedModel, model: Any, out: Path) -> None:
    import torch

    from codesearch.embed.tokenizer import load_tokenizer

    tok = load_tokenizer(res.path)
    pad = tok.pad_id if tok.pad_id is not None else tok.eos_id
    if model is None:
        model = load_torch_model(res.path, torch.float32)
    elif next(model.parameters()).dtype != torch.float32:
        raise OnnxUnavailable("the model to export must be float32")
    export_graph(model, int(pad) if pad is not None else 0, out)


def fp32_graph(res: ResolvedModel, *, keep: bool, model: Any = None,
               workdir: Path | None = None, notify: Notify | None = None) -> Path:
    """The fp32 ONNX graph of ``res``: its published export, else the cached build, else an
    export made now with torch (``model``: the float32 torch model when already loaded), kept in
    the cache when ``keep`` (the fp32 engine runs it), else written under ``workdir`` (a step of
    the int8 build: gigabytes for a 0.5B). Raises OnnxUnavailable (one line) when there is none
    and torch is not installed."""
    if (published := published_graph(res.path)) is not None:
        return published
    target = build_dir("fp32", res.model_id, res.revision, res.path)
    if (target / "build.json").is_file():
        return target / FP32_FILE
    if not torch_available():
        raise OnnxUnavailable(
            f"{res.name} has no ONNX export (onnx/model.onnx) and torch is not installed to "
            "make one")
    if not keep:
        assert workdir is not None
        _export_now(res, model, workdir / FP32_FILE)
        return workdir / FP32_FILE
    if notify is not None:
        notify("Exporting the model to ONNX (once per model)...")
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        _export_now(res, model, work / FP32_FILE)
        info = {"model_id": res.model_id, "revision": res.revision, "engine": ENGINE_VERSION,
                "seconds": round(time.perf_counter() - started, 1)}
        (work / "build.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(work, target)
        except OSError:  # another process finished first: use theirs
            pass
    except OnnxUnavailable:
        raise
    except ModelError as err:
        raise OnnxUnavailable(err.message) from err
    except Exception as err:  # noqa: BLE001 - any exporter failure becomes one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise OnnxUnavailable(f"ONNX export failed: {type(err).__name__}: {first}") from err
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / FP32_FILE


def export_model_dir(res: ResolvedModel, out: Path, notify: Notify | None = None) -> Path:
    """``cs model export``: write ``out`` as a model directory that loads without torch: the
    fp32 ONNX graph in ``onnx/model.onnx``, the config and tokenizer files, and
    ``codesearch.json`` (the model's identity, pooling, prefixes, dims and max length, so an
    index built from it matches one built from the original). Needs torch."""
    if not torch_available():
        raise ModelError("exporting a model needs torch and transformers", hint=TORCH_HINT)
    if out.exists() and any(out.iterdir()):
        raise ModelError(f"{out} is not empty", hint="pass a new or empty directory to --out")
    (out / "onnx").mkdir(parents=True, exist_ok=True)
    for pattern in _COPIED:
        for f in res.path.glob(pattern):
            if f.is_file() and f.name != SETTINGS_FILE and not f.name.endswith(".index.json"):
                (out / f.relative_to(res.path)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, out / f.relative_to(res.path))
    if notify is not None:
        notify(f"Exporting {res.name} to ONNX in {out} ...")
    try:
        _export_now(res, None, out / "onnx" / FP32_FILE)
    except OnnxUnavailable as err:
        raise ModelError(str(err), hint="check the model loads with `cs embed`") from err
    settings = {"model_id": res.model_id, "revision": res.revision, "pooling": res.pooling,
                "prefix_scheme": res.prefix_scheme, "dims": list(res.dims),
                "default_dim": res.default_dim, "max_length": res.max_length,
                "licence": res.licence,
                "preset": res.preset.name if res.preset is not None else None,
                # What a sentence-transformers recipe or a preset adds to the prefixes.
                "prompts": ({task: list(pair) for task, pair in res.prompts.items()}
                            if res.prompts is not None else None),
                "lowercase": res.lowercase, "end_token": res.end_token, "recipe": res.recipe}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1), encoding="utf-8")
    return out
