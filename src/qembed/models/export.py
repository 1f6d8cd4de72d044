"""Export a sentence-transformers model to OpenVINO IR or ONNX, once, for the compiled CPU backends.

An exported folder holds the compiled graph (token ids and attention mask in, pooled sentence
embeddings out), the model's tokenizer and sentence-transformers files (but no torch weights) and
``qembed_export.json``, the manifest naming the backend, the precision, the source model and the
pooling. :func:`qembed.models.load_encoder` recognises such a folder and loads it with its
backend (:class:`~qembed.models.backends.CompiledEncoder`).

Precisions (the stored graph):

* ``int8``: linear-layer weights in int8. OpenVINO: nncf's ``compress_weights`` (8-bit
  asymmetric, per output channel); at run time the activations of those products are quantized to
  int8 per token in groups of channels where the CPU has VNNI and f32 activations (on AVX-512-BF16
  CPUs without AMX qembed asks for that: int8 compute, see
  :func:`qembed.models.backends.openvino_config`), else the products run in the runtime's float
  type (bf16 on AMX). ONNX Runtime:
  ``MatMulNBits`` with 8-bit weights in blocks of 128 and int8 compute on activations quantised
  per block.
* ``float32``: the weights as trained (bit-for-bit parity with torch in fp32).
* ``bfloat16`` (OpenVINO only): fp16-compressed weights run in bf16 (AMX/AVX512-BF16 CPUs).
* ``w8a8`` (OpenVINO only): int8 weights *and* int8 activations in the matrix products (nncf's
  static ``quantize`` for transformers: SmoothQuant moves activation outliers into the weights,
  ranges calibrated on real text), the products that lose most kept out of it
  (:data:`W8A8_FLOAT_SCOPES`): those get int8 weights and run-time (dynamic, per token) int8
  activations instead (manifest ``dynamic_int8``). It needs a graded-pairs file (``guard``): the export encodes its
  pairs with torch fp32 and with the quantized graph, records worst/mean cosine and the change of
  the task score (STS Spearman) in the manifest, and refuses the model when the score drops more
  than ``max_score_drop`` (default 1%). Any precision can be guarded the same way.

Exports go to ``--output DIR`` or to the cache, ``$QEMBED_CACHE/exported/<model>-<backend>-<precision>``
(default ``~/.cache/qembed``), and are reused by every later load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from qembed.errors import InputError, ModelLoadError
from qembed.models.backends import (
    EXPORT_MANIFEST,
    check_backend,
    check_precision,
    read_manifest,
    require_runtime,
)
from qembed.models.quality import DEFAULT_GUARD_PAIRS, DEFAULT_MAX_SCORE_DROP
from qembed.models.resolve import cache_root, resolve_model_path
from qembed.models.runtimes import CALIBRATED_PRECISIONS

logger = logging.getLogger(__name__)

#: Bumped when the layout of an exported folder changes (older folders are exported again).
EXPORT_FORMAT = 1
#: Graph file per backend inside an exported folder.
GRAPH_FILES = {"openvino": "openvino_model.xml", "onnx": "model.onnx"}
#: Block size (input rows per scale) of ONNX int8 weights.
ONNX_INT8_BLOCK = 128
#: Pooling modes the exported graph computes (sentence-transformers' names).
POOLING_MODES = ("lasttoken", "mean", "cls", "max")
#: Calibration sentences for w8a8 (activation ranges), and padded rows per calibration batch.
CALIBRATION_SENTENCES = 300
CALIBRATION_BATCH = 8
#: SmoothQuant's migration strength for the matrix products of w8a8 exports (nncf's default for
#: transformers is 0.95; lower moves less of the activation range into the weights).
SMOOTH_QUANT_ALPHA = 0.95
#: Products of w8a8 exports kept out of static quantization (nncf ignored-scope patterns over the
#: graph's node names): each feed-forward block's output projection, whose input (the output of
#: GELU, or SiLU x up) has the widest, most outlier-heavy range. On all-MiniLM-L6-v2 quantizing it
#: statically cost 3.9% of the STS Spearman score and a worst cosine of 0.978; kept in float, the
#: score held (+0.6%, worst cosine 0.996); with int8 weights and dynamic per-token int8
#: activations it holds too (-0.5%, worst cosine 0.996) and runs int8 (docs/cpu-backends.md).
#: BERT/RoBERTa/XLM-R name it ``layer.N.output.dense``, Qwen3/Llama ``mlp.down_proj``.
W8A8_FLOAT_SCOPES = [r".*layer\.\d+\.output\.dense/.*MatMul.*", r".*mlp\.down_proj/.*MatMul.*"]
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".onnx", ".onnx_data",
                    ".xml", ".ot", ".gguf")


def cached_export_dir(model: str, backend: str, precision: str) -> Path:
    """The cache folder of ``model`` exported for ``backend`` at ``precision``.

    A Hub id maps to ``org--name``; a local folder to its name plus a short hash of its absolute
    path, so two folders of the same name never share an export.
    """
    path = Path(model).expanduser()
    if path.exists():
        resolved = str(path.resolve())
        slug = f"{path.resolve().name}-{hashlib.sha1(resolved.encode('utf-8')).hexdigest()[:8]}"
    else:
        slug = model.strip("/").replace("/", "--")
    return cache_root() / "exported" / f"{slug}-{backend}-{precision}"


def _pooling_of(st: Any) -> tuple[str, bool]:
    """The pooling mode and whether a Normalize module follows; refuses layouts the graph cannot hold."""
    kinds = [type(m).__name__ for m in st]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise InputError(
            f"cannot export a model made of the modules {kinds}: the compiled backends take "
            "sentence-transformers models of a Transformer, a Pooling and an optional Normalize "
            "module; use backend='torch' for this one", param="model")
    pooling = st[1]
    mode = str(getattr(pooling, "pooling_mode", ""))
    if mode not in POOLING_MODES:
        raise InputError(f"cannot export pooling mode {mode!r} (the compiled backends support "
                         f"{', '.join(POOLING_MODES)}); use backend='torch'", param="model")
    if getattr(pooling, "include_prompt", True) is False:
        raise InputError("cannot export a Pooling module that excludes the prompt tokens; use "
                         "backend='torch'", param="model")
    return mode, len(kinds) == 3


def _graph_module(auto_model: Any, mode: str, normalize: bool, token_types: bool) -> Any:
    """A torch module: the transformer, then the pooling, as plain tensor ops that trace cleanly.

    Inputs are right-padded (the last real token of row ``i`` sits at ``mask[i].sum() - 1``).
    """
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = auto_model

        def _pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if mode == "lasttoken":
                last = attention_mask.sum(dim=1) - 1
                rows = torch.arange(hidden.shape[0], device=hidden.device)
                return hidden[rows, last]
            if mode == "cls":
                return hidden[:, 0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            if mode == "max":
                return (hidden + (1.0 - mask) * -1e9).max(dim=1).values
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

        def _out(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            pooled = self._pool(hidden, attention_mask)
            return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    if token_types:
        class Graph(Pooled):
            def forward(self, input_ids, attention_mask, token_type_ids):
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                    token_type_ids=token_type_ids).last_hidden_state
                return self._out(hidden, attention_mask)
    else:
        class Graph(Pooled):  # type: ignore[no-redef]
            def forward(self, input_ids, attention_mask):
                hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return self._out(hidden, attention_mask)

    return Graph().eval()


def _copy_model_files(src: Path, dst: Path, st_dirs: list[str]) -> None:
    """Tokenizer, configuration and sentence-transformers files; never the torch weights."""
    for item in src.iterdir():
        if item.is_file() and not item.name.endswith(_WEIGHT_SUFFIXES) and item.name != EXPORT_MANIFEST:
            shutil.copy2(item, dst / item.name)
    for name in st_dirs:
        if name and (src / name).is_dir():
            shutil.copytree(src / name, dst / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*(f"*{s}" for s in _WEIGHT_SUFFIXES)))


def _example(token_types: bool, vocab: int) -> dict[str, Any]:
    import torch

    ids = torch.tensor([[min(11, vocab - 1)] * 7, [min(13, vocab - 1)] * 7], dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    example = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        example["token_type_ids"] = torch.zeros_like(ids)
    return example


def _calibration_items(tokenizer: Any, texts: list[str], names: list[str], max_tokens: int) -> list[dict[str, Any]]:
    """Right-padded batches of ``texts`` as the graph's inputs (numpy), for nncf's calibration."""
    items = []
    for start in range(0, len(texts), CALIBRATION_BATCH):
        enc = tokenizer(texts[start:start + CALIBRATION_BATCH], padding=True, truncation=True,
                        max_length=max_tokens, return_tensors="np")
        item = {"input_ids": enc["input_ids"].astype("int64"),
                "attention_mask": enc["attention_mask"].astype("int64")}
        if "token_type_ids" in names:
            item["token_type_ids"] = np.zeros_like(item["input_ids"])
        items.append(item)
    return items


def _compress_float_scopes(model: Any) -> Any:
    """int8 weights (symmetric, per output channel) for the products :data:`W8A8_FLOAT_SCOPES` keeps
    out of static quantization, done before it so SmoothQuant leaves them alone (its scales would
    move the activation outliers into weight columns that one scale per output channel cannot
    hold). At run time OpenVINO quantizes their activations per token (``dynamic_int8``)."""
    import re

    import nncf

    keep: set[str] = set()
    for op in model.get_ordered_ops():
        if op.get_type_name() == "MatMul" and any(re.fullmatch(p, op.get_friendly_name()) for p in W8A8_FLOAT_SCOPES):
            node = op.input_value(1).get_node()
            keep.add(op.get_friendly_name())
            while True:  # the weight and the ops between it and the product (nncf matches by node)
                keep.add(node.get_friendly_name())
                if node.get_input_size() == 0:
                    break
                node = node.input_value(0).get_node()
    if not keep:
        return model
    others = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() not in keep]
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_SYM,
                                 ignored_scope=nncf.IgnoredScope(names=others, validate=False))


def _quantize_static(model: Any, items: list[dict[str, Any]]) -> Any:
    """int8 weights and activations (nncf static quantization for transformers, SmoothQuant); the
    products kept out of it get int8 weights for dynamic int8 activations (:func:`_compress_float_scopes`)."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    model = _compress_float_scopes(model)
    ignored = nncf.IgnoredScope(patterns=list(W8A8_FLOAT_SCOPES), validate=False)
    params = AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=SMOOTH_QUANT_ALPHA))
    return nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.MIXED, subset_size=len(items),
                         ignored_scope=ignored, advanced_parameters=params)


def _export_openvino(graph: Any, example: dict[str, Any], out: Path, precision: str,
                     calibration: list[dict[str, Any]] | None = None) -> None:
    import openvino as ov
    import torch

    inputs = [(name, [-1, -1], ov.Type.i64) for name in example]
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about shape checks in transformers' mask code; those hold for every
        # input the graph gets (the mask is always as long as the ids)
        warnings.simplefilter("ignore")
        model = ov.convert_model(graph, example_input=example, input=inputs)
    model.outputs[0].get_tensor().set_names({"sentence_embedding"})
    if precision == "int8":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif precision in CALIBRATED_PRECISIONS:
        assert calibration is not None
        model = _quantize_static(model, calibration)
    ov.save_model(model, out / GRAPH_FILES["openvino"], compress_to_fp16=precision == "bfloat16")


def _export_onnx(graph: Any, example: dict[str, Any], out: Path, precision: str, work: Path) -> None:
    import torch

    names = list(example)
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["sentence_embedding"] = {0: "batch"}
    target = out / GRAPH_FILES["onnx"] if precision == "float32" else work / "fp32.onnx"
    # each graph is written in a folder of its own (the exporter adds a file per large tensor)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the TorchScript exporter: seconds where the dynamo one takes minutes, same graph
        torch.onnx.export(graph, tuple(example.values()), str(target), input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=18,
                          dynamo=False, external_data=True)
    _single_data_file(target)
    if precision == "int8":
        # 8-bit weights in blocks of ONNX_INT8_BLOCK per column, run by MatMulNBits with int8
        # compute on activations quantised per block (accuracy level 4). quantize_dynamic's
        # per-tensor activations lose too much on BERT-style models (worst cosine 0.88-0.98 on
        # all-MiniLM-L6-v2 against >= 0.996 here).
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        # it logs every node it passes over at INFO
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(target), load_external_data=True), bits=8,
                                         block_size=ONNX_INT8_BLOCK, is_symmetric=True, accuracy_level=4)
        quantizer.process()
        final = out / GRAPH_FILES["onnx"]
        quantizer.model.save_model_to_file(str(final), use_external_data_format=True)
        _single_data_file(final)


def _single_data_file(path: Path) -> None:
    """Rewrite the graph in its own folder as one file, or as the graph plus one ``<name>_data``
    file when it is over protobuf's 2 GiB limit (the exporter writes a file per tensor)."""
    import onnx

    model = onnx.load(str(path), load_external_data=True)
    for item in path.parent.iterdir():
        if item != path and item.is_file():
            item.unlink()
    size = sum(t.ByteSize() for t in model.graph.initializer)
    if size > (1 << 30):
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + "_data", size_threshold=1024)
    else:
        onnx.save_model(model, str(path))


def export_model(
    model: str | os.PathLike[str],
    backend: str = "openvino",
    dtype: str | None = None,
    output: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    guard: str | os.PathLike[str] | None = None,
    calibration: str | os.PathLike[str] | None = None,
    max_score_drop: float = DEFAULT_MAX_SCORE_DROP,
    guard_pairs: int = DEFAULT_GUARD_PAIRS,
) -> Path:
    """Export ``model`` for ``backend`` at precision ``dtype`` and return the exported folder.

    Args:
        model: a sentence-transformers folder or Hub id (Transformer + Pooling [+ Normalize]).
        backend: ``"openvino"`` or ``"onnx"``.
        dtype: ``None``/``"auto"`` (the backend's default, int8), ``"int8"``, ``"float32"``, or
            ``"bfloat16"`` (OpenVINO only).
        output: the folder to write; default the cache (:func:`cached_export_dir`).
        force: export again even when the folder already holds this export.
        guard: a graded-pairs file (STS-B style ``s1<TAB>s2<TAB>score``, or JSON lines / CSV with
            ``sentence1``, ``sentence2``, ``score``): the export is measured on its first
            ``guard_pairs`` pairs against torch fp32 (:mod:`qembed.models.quality`) and refused
            when the task score drops more than ``max_score_drop`` (relative; 0.01 = 1%).
            Required for ``w8a8``.
        calibration: a text file (one sentence a line) or a pairs file whose sentences calibrate the
            activation ranges of ``w8a8`` (default: the guard file's sentences).

    An existing export of the same model, backend and precision is reused unless ``force``.
    Raises :class:`~qembed.models.quality.QualityGuardError` (nothing written) when the guard fails.
    """
    backend = check_backend(backend)
    if backend == "torch":
        raise InputError("torch needs no export: load the model folder directly", param="backend")
    precision = check_precision(backend, dtype)
    require_runtime(backend)
    model = str(model)
    src = resolve_model_path(model)
    if read_manifest(src) is not None:
        raise InputError(f"{model} is already an exported model; export its source model instead",
                         param="model")
    out = Path(output).expanduser() if output is not None else cached_export_dir(model, backend, precision)
    manifest = read_manifest(out)
    if manifest is not None and not force:
        if (manifest.get("backend"), manifest.get("precision")) == (backend, precision) and \
                manifest.get("source_path") == str(src.resolve()):
            logger.info("reusing the %s %s export in %s", backend, precision, out)
            return out
        raise InputError(f"{out} already holds another export ({manifest.get('source')} for "
                         f"{manifest.get('backend')} {manifest.get('precision')}); choose another "
                         "folder or pass force", param="output")
    if out.exists() and manifest is None and any(out.iterdir()):
        raise InputError(f"{out} exists and is not an exported model; choose an empty or new folder",
                         param="output")
    if not 0 <= max_score_drop < 1:
        raise InputError(f"max_score_drop must be at least 0 and below 1, got {max_score_drop}",
                         param="max_score_drop")
    if precision in CALIBRATED_PRECISIONS and guard is None:
        raise InputError(f"a {precision} export (int8 activations) needs a graded-pairs file to guard its "
                         "meaning: qembed export MODEL --backend openvino --dtype w8a8 --guard PAIRS "
                         "(STS-B style s1<TAB>s2<TAB>score)", param="guard")
    for name, value in (("guard", guard), ("calibration", calibration)):
        if value is not None and not Path(value).is_file():
            raise InputError(f"{name} file {value} does not exist", param=name)
    if backend == "openvino":
        require_runtime("nncf") if precision in ("int8",) + CALIBRATED_PRECISIONS else None
    return _export(model, src, backend, precision, out, guard=guard, calibration=calibration,
                   max_score_drop=max_score_drop, guard_pairs=guard_pairs)


def _calibration_texts(calibration: str | os.PathLike[str] | None, guard_first: list[str],
                       guard_second: list[str]) -> list[str]:
    """Up to :data:`CALIBRATION_SENTENCES` distinct sentences: from ``calibration`` (plain text, one
    a line; or a pairs file) or else from the guard pairs."""
    texts: list[str]
    if calibration is None:
        texts = guard_first + guard_second
    else:
        path = Path(calibration)
        if path.suffix.lower() in (".txt", ".text", ""):
            texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            from qembed.train.data import load_pairs

            data = load_pairs(path, labels="optional", limit=CALIBRATION_SENTENCES)
            texts = data.first + data.second
    texts = list(dict.fromkeys(texts))[:CALIBRATION_SENTENCES]
    if not texts:
        raise InputError(f"calibration file {calibration} holds no sentences", param="calibration")
    return texts


def _export(model: str, src: Path, backend: str, precision: str, out: Path, *,
            guard: str | os.PathLike[str] | None = None, calibration: str | os.PathLike[str] | None = None,
            max_score_drop: float = DEFAULT_MAX_SCORE_DROP, guard_pairs: int = DEFAULT_GUARD_PAIRS) -> Path:
    import torch
    from sentence_transformers import SentenceTransformer

    from qembed.models.quality import guard_texts

    start = time.perf_counter()
    logger.info("exporting %s for %s (%s) to %s", model, backend, precision, out)
    try:
        st = SentenceTransformer(str(src), device="cpu", local_files_only=True,
                                 model_kwargs={"dtype": torch.float32})
    except OSError as exc:
        raise ModelLoadError(f"could not load model from {src}: {exc}") from None
    mode, normalize = _pooling_of(st)
    transformer = st[0]
    auto_model = transformer.auto_model.float().eval()
    tokenizer = transformer.tokenizer
    token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    graph = _graph_module(auto_model, mode, normalize, token_types)
    example = _example(token_types, len(tokenizer))
    pairs = guard_texts(guard, guard_pairs) if guard is not None else None
    items = None
    if precision in CALIBRATED_PRECISIONS:
        assert pairs is not None
        texts = _calibration_texts(calibration, pairs[0], pairs[1])
        items = _calibration_items(tokenizer, texts, list(example), min(int(transformer.max_seq_length), 512))
        logger.info("calibrating int8 activations on %d sentences", len(texts))

    work = out.with_name(out.name + f".partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "graph").mkdir(parents=True)
    scratch = out.with_name(out.name + f".scratch-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        if backend == "openvino":
            _export_openvino(graph, example, work / "graph", precision, items)
        else:
            _export_onnx(graph, example, work / "graph", precision, scratch)
        for item in (work / "graph").iterdir():
            item.rename(work / item.name)
        (work / "graph").rmdir()
        st_dirs = [str(getattr(m, "path", "") or "") for m in st] if hasattr(st, "__iter__") else []
        modules = src / "modules.json"
        if modules.exists():
            st_dirs = [str(m.get("path", "")) for m in json.loads(modules.read_text(encoding="utf-8"))]
        _copy_model_files(src, work, st_dirs)
        from qembed import __version__

        manifest = {
            "format": EXPORT_FORMAT,
            "backend": backend,
            "precision": precision,
            "source": model,
            "source_path": str(src.resolve()),
            "pooling": mode,
            "normalize": normalize,
            "inputs": list(example),
            "graph": GRAPH_FILES[backend],
            "dim": int((getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension)()),
            "max_seq_length": int(transformer.max_seq_length),
            "qembed_version": __version__,
        }
        if precision in CALIBRATED_PRECISIONS:
            # the products kept out of static quantization hold int8 weights for dynamic int8
            # activations (qembed.models.backends.openvino_config)
            manifest["dynamic_int8"] = True
        (work / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if pairs is not None:
            manifest["quality"] = _guard(work, src, pairs, max_score_drop, guard, f"the {backend} "
                                         f"{precision} export of {model}")
            (work / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info("exported %s in %.0f s", out, time.perf_counter() - start)
    return out


def _guard(folder: Path, src: Path, pairs: tuple[list[str], list[str], list[float]], max_score_drop: float,
           guard: str | os.PathLike[str] | None, what: str) -> dict[str, Any]:
    """Measure the exported ``folder`` against torch fp32 on the guard pairs; refuse it when the task
    score drops more than allowed. Returns the report recorded in the manifest."""
    from qembed.models.backends import CompiledEncoder
    from qembed.models.local import LocalEncoder
    from qembed.models.prompts import SYMMETRIC_INSTRUCTION
    from qembed.models.quality import check_quality, measure_quality

    manifest = read_manifest(folder) or {}
    candidate = CompiledEncoder(str(folder), backend=str(manifest["backend"]))
    reference = LocalEncoder(str(src), device="cpu", dtype="float32", compile=False)
    instruction = SYMMETRIC_INSTRUCTION if reference.inputs.instruct_style else None
    report = measure_quality(reference, candidate, *pairs, instruction=instruction)
    report.update(guard=str(guard), reference="torch float32", max_score_drop=max_score_drop)
    logger.info("%s: worst cosine %.4f, mean %.4f; spearman %.4f (torch %.4f, drop %.2f%%)", what,
                report["worst_cosine"], report["mean_cosine"], report["score"], report["score_reference"],
                100 * report["score_drop"])
    check_quality(report, max_score_drop, what)
    return report
