"""CPU peers beside qembed: llama.cpp (Q8_0 GGUF) and fastembed (ONNX) on the same AFQMC sentences.

For each runtime: throughput (sentences/s, after a short warm-up) and the cosine of its vectors to
qembed's torch bf16 vectors of the same sentences (worst and mean). A peer that pools the wrong
token or drops the end token ``<|endoftext|>`` shows a low cosine; the row "llama.cpp, mean
pooling" is there to show how low (a deliberately wrong pooling as a control).

Model: Qwen3-Embedding-0.6B's architecture and tokenizer with random weights (bf16), built from
``shared/models/Qwen3-Embedding-0.6B`` under ``--work`` unless ``--model`` names a folder.

Rows:
  * qembed torch bf16 (``qembed.load_encoder(folder, dtype="bfloat16")``): the reference;
  * qembed OpenVINO int8 (``backend="openvino"``) when the ``cpu`` extra is installed;
  * llama.cpp through llama-cpp-python, on a Q8_0 GGUF made by llama.cpp's ``convert_hf_to_gguf.py``,
    with the pooling llama.cpp picks by itself (read from the GGUF), with ``LLAMA_POOLING_TYPE_LAST``
    named, and with mean pooling (the control);
  * fastembed's own ``Qwen/Qwen3-Embedding-0.6B`` entry (last-token pooling, normalised) pointed at
    a local fp32 ONNX export of the same folder (``specific_model_path``; fastembed cannot download
    here).

Peers are never qembed dependencies: each runs in its own virtual environment as a subprocess
(``--llama-python``, ``--fastembed-python``); a peer whose python is not given or cannot import it
is skipped with a line saying so. The GGUF converter is not part of qembed either: take it from
llama.cpp's repository (``convert_hf_to_gguf.py`` with its ``conversion/`` and ``gguf-py/``
folders) or from the ``vendor/llama.cpp`` folder of the llama-cpp-python sdist
(``pip download llama-cpp-python --no-binary :all: --no-deps``); it needs torch, transformers,
numpy and sentencepiece in ``--convert-python`` (default: this python):

    PYTHONPATH=src .venv/bin/python benchmarks/cpu_peers.py --sentences 200 --threads 2 \\
        --llama-python PEERS/llama/bin/python --llama-convert LLAMA_CPP/convert_hf_to_gguf.py \\
        --fastembed-python PEERS/fastembed/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WARMUP = 8
FASTEMBED_MODEL = "Qwen/Qwen3-Embedding-0.6B"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json")

# Runs inside the llama-cpp-python venv: {"gguf", "texts", "threads", "pooling"} on stdin, the
# vectors to the .npy path given, the timings as JSON on stdout.
LLAMA_WORKER = r"""
import json, sys, time
import numpy as np
import llama_cpp
from llama_cpp import Llama
job = json.load(sys.stdin)
kwargs = {}
if job["pooling"] is not None:
    kwargs["pooling_type"] = getattr(llama_cpp, job["pooling"])
llm = Llama(model_path=job["gguf"], embedding=True, n_ctx=2048, n_batch=512, n_ubatch=512,
            n_threads=job["threads"], n_threads_batch=job["threads"], verbose=False, **kwargs)
names = {getattr(llama_cpp, n): n for n in dir(llama_cpp) if n.startswith("LLAMA_POOLING_TYPE_")}
pooling = names.get(llm.pooling_type(), str(llm.pooling_type()))
tokens = llm.tokenize(job["texts"][0].encode("utf-8"))
llm.embed(job["texts"][:job["warmup"]], normalize=True)
start = time.perf_counter()
vectors = llm.embed(job["texts"], normalize=True)
seconds = time.perf_counter() - start
np.save(job["out"], np.asarray(vectors, dtype=np.float32))
print(json.dumps({"seconds": seconds, "pooling": pooling, "version": llama_cpp.__version__,
                  "ends_with_eos": tokens[-1] == llm.token_eos()}))
"""

# Runs inside the fastembed venv.
FASTEMBED_WORKER = r"""
import json, sys, time
import numpy as np
import fastembed
from fastembed import TextEmbedding
job = json.load(sys.stdin)
model = TextEmbedding(job["model"], specific_model_path=job["path"], threads=job["threads"])
pooling = type(model.model).__name__
list(model.embed(job["texts"][:job["warmup"]], batch_size=32))
start = time.perf_counter()
vectors = np.stack(list(model.embed(job["texts"], batch_size=32)))
seconds = time.perf_counter() - start
np.save(job["out"], vectors.astype(np.float32))
print(json.dumps({"seconds": seconds, "pooling": pooling, "version": fastembed.__version__}))
"""


from qembed.testing import afqmc_sentences  # noqa: E402 - the benchmarks' sentences


def normalised(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def load_qembed(folder: Path, backend: str):
    import qembed

    encoder = qembed.load_encoder(str(folder), dtype="bfloat16" if backend == "torch" else "int8",
                                  backend=backend)
    encoder.encode(["怎么还花呗", "花呗更改绑定银行卡"] * (WARMUP // 2))
    return encoder


def timed_encode(encoder, texts: list[str]) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    vectors = encoder.encode(texts)
    return time.perf_counter() - start, np.asarray(vectors)


def run_worker(python: str, code: str, job: dict) -> tuple[dict, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        job = {**job, "out": str(Path(tmp) / "vectors.npy"), "warmup": WARMUP}
        done = subprocess.run([python, "-c", code], input=json.dumps(job), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip()[-2000:])
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return info, np.load(job["out"])


def importable(python: str | None, module: str) -> str | None:
    """None when ``python`` runs and imports ``module``, else the reason why not."""
    if not python:
        return "no python given"
    if not Path(python).exists():
        return f"{python} not found"
    done = subprocess.run([python, "-c", f"import {module}"], capture_output=True, text=True)
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def make_gguf(folder: Path, work: Path, convert: str, python: str) -> Path:
    target = work / f"{folder.name}-q8_0.gguf"
    if not target.exists():
        # the converter puts its own gguf-py first on its path
        done = subprocess.run([python, convert, str(folder), "--outtype", "q8_0", "--outfile", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{convert} failed: {done.stderr.strip()[-2000:]}")
    return target


def make_onnx(folder: Path, work: Path) -> Path:
    """fp32 ONNX of the transformer alone (ids, mask -> last_hidden_state), laid out as fastembed's
    Qwen3 entry expects: ``onnx/model.onnx`` + ``onnx/model.onnx_data`` and the tokenizer files."""
    out = work / f"{folder.name}-fastembed-onnx"
    graph = out / "onnx" / "model.onnx"
    if graph.exists():
        return out
    import onnx
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(folder), torch_dtype=torch.float32).eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    raw = work / "onnx-raw"
    raw.mkdir(parents=True, exist_ok=True)
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
            "last_hidden_state": {0: "batch", 1: "sequence"}}
    with torch.no_grad():
        torch.onnx.export(Hidden(model), example, str(raw / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=18, dynamo=False, external_data=True)
    graph.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx.load(str(raw / "model.onnx"), load_external_data=True), str(graph),
                    save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx_data")
    shutil.rmtree(raw)
    for name in TOKENIZER_FILES:
        if (folder / name).exists():
            shutil.copy2(folder / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder (default: build the random-weight 0.6B under --work)")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "qembed-peers"),
                        help="folder for the random model, the GGUF and the ONNX export (reused)")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-python", help="python of a venv with llama-cpp-python")
    parser.add_argument("--llama-convert", help="llama.cpp's convert_hf_to_gguf.py (see the module doc)")
    parser.add_argument("--convert-python", default=sys.executable,
                        help="python that runs the converter (torch, transformers, sentencepiece)")
    parser.add_argument("--fastembed-python", help="python of a venv with fastembed")
    parser.add_argument("--no-openvino", action="store_true", help="skip qembed's OpenVINO int8 row")
    parser.add_argument("--json", help="write the rows to this file as JSON")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.model:
        folder = Path(args.model)
    else:
        from qembed.testing import build_random_qwen

        folder = build_random_qwen(work / "random-qwen3-embedding-0.6b", tiny=False, dtype="bfloat16", seed=0)
    texts = afqmc_sentences(args.sentences)
    print(f"{len(texts)} AFQMC dev sentences, {args.threads} threads, model {folder.name}", flush=True)

    rows: list[dict] = []
    skipped: list[str] = []
    torch_encoder = load_qembed(folder, "torch")
    seconds, reference = timed_encode(torch_encoder, texts)
    reference = normalised(reference)

    def add(name: str, seconds: float, vectors: np.ndarray, note: str = "") -> None:
        # the machine may be shared and its load move between rows: qembed torch is timed again
        # right after each row, and the row's ratio is to the mean of the torch times around it
        torch_seconds = (seconds if not rows else rows[-1]["torch_seconds_after"])
        after, _ = timed_encode(torch_encoder, texts)
        torch_rate = len(texts) / ((torch_seconds + after) / 2)
        cos = np.sum(normalised(vectors) * reference, axis=1)
        row = {"peer": name, "sentences_per_s": len(texts) / seconds, "torch_sentences_per_s": torch_rate,
               "ratio_to_torch": len(texts) / seconds / torch_rate, "torch_seconds_after": after,
               "worst_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "note": note}
        rows.append(row)
        print(f"{name}: {row['sentences_per_s']:.1f} sent/s (qembed torch around it {torch_rate:.1f}), "
              f"cosine worst {row['worst_cosine']:.4f} mean {row['mean_cosine']:.4f} {note}", flush=True)

    add("qembed torch bf16", seconds, reference, "reference")

    if args.no_openvino:
        skipped.append("qembed OpenVINO int8: --no-openvino")
    else:
        try:
            import openvino  # noqa: F401 - only to see whether the cpu extra is installed
        except ImportError:
            skipped.append("qembed OpenVINO int8: the cpu extra is not installed (pip install 'qembed[cpu]')")
        else:
            seconds, vectors = timed_encode(load_qembed(folder, "openvino"), texts)
            add("qembed OpenVINO int8", seconds, vectors, "int8 weights")

    why = importable(args.llama_python, "llama_cpp")
    if why is None and not args.llama_convert:
        why = "--llama-convert (llama.cpp's convert_hf_to_gguf.py) not given"
    if why:
        skipped.append(f"llama.cpp: skipped ({why})")
    else:
        gguf = make_gguf(folder, work, args.llama_convert, args.convert_python)
        for pooling, name in ((None, "llama.cpp Q8_0, default pooling"),
                              ("LLAMA_POOLING_TYPE_LAST", "llama.cpp Q8_0, pooling LAST"),
                              ("LLAMA_POOLING_TYPE_MEAN", "llama.cpp Q8_0, pooling MEAN (control)")):
            info, vectors = run_worker(args.llama_python, LLAMA_WORKER,
                                       {"gguf": str(gguf), "texts": texts, "threads": args.threads,
                                        "pooling": pooling})
            add(name, info["seconds"], vectors,
                f"llama-cpp-python {info['version']}, picks {info['pooling']}, "
                "appends <|endoftext|>" if info["ends_with_eos"] else "no end token")

    why = importable(args.fastembed_python, "fastembed")
    if why:
        skipped.append(f"fastembed: skipped ({why})")
    else:
        path = make_onnx(folder, work)
        info, vectors = run_worker(args.fastembed_python, FASTEMBED_WORKER,
                                   {"model": FASTEMBED_MODEL, "path": str(path), "texts": texts,
                                    "threads": args.threads})
        add("fastembed ONNX fp32", info["seconds"], vectors, f"fastembed {info['version']}, {info['pooling']}")

    for line in skipped:
        print(line)
    print("\n| peer | sent/s | qembed torch around it, sent/s | ratio to qembed torch "
          "| worst / mean cosine to qembed | note |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        print(f"| {row['peer']} | {row['sentences_per_s']:.1f} | {row['torch_sentences_per_s']:.1f} "
              f"| {row['ratio_to_torch']:.2f}x | "
              f"{row['worst_cosine']:.4f} / {row['mean_cosine']:.4f} | {row['note']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
