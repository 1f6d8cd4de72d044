"""Reranking throughput: qembed's Reranker against sentence-transformers' CrossEncoder, same pairs,
same run; and the latency of a two-stage search over 100 candidates.

Model: Qwen3-Reranker-0.6B's architecture (a ``Qwen3ForCausalLM``, the configuration and tokenizer of
Qwen3-Embedding-0.6B) with random weights in bf16, built once under ``~/.cache/qembed``. Speed does
not depend on the weights' values.

Pairs: ``--queries`` AFQMC dev questions, each with ``--docs-per-query`` passages of 1 to 12 AFQMC
sentences (about 15 to 250 tokens; the prompt adds about 70). Methods, interleaved over
``--repeats`` rounds, median reported:

* ``qembed``: :class:`qembed.rerank.local.Reranker` (packed passes under a token budget, only the
  last position of the last layer, two rows of the output projection);
* ``sentence-transformers``: ``CrossEncoder`` on the same folder with a chat template that builds
  the same prompt (``qembed.rerank.inputs.qwen3_chat_template``), ``predict(batch_size=32)``; its
  scores are checked against qembed's;
* ``model card`` (``--model-card``): the transformers recipe of the Qwen3-Reranker model card —
  left-padded batches in input order, full-vocabulary logits, softmax over yes/no.

``--served``: the same pairs through ``qembed serve --reranker`` (the real CLI, its reranker in an
engine process of its own), one ``POST /v1/rerank`` per query, all queries at once, timed in the
same rounds as in process: served pairs/s beside in-process pairs/s (target: served >= 0.85x).

Then a two-stage search: a knowledge base of the passages embedded with the random-weight
Qwen3-Embedding-0.6B, ``search(query, top_k=10, rerank=reranker, candidates=C)`` per query for each
``C`` of ``--candidates`` (default 20, 50 and 100), median latency per query.

    .venv/bin/python benchmarks/rerank.py [--queries 8 --docs-per-query 32 --repeats 2]
    .venv/bin/python benchmarks/rerank.py --served --candidates 20,50,100 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from qembed.rerank.inputs import qwen3_chat_template
from qembed.rerank.local import Reranker
from qembed.rerank.testing import build_random_reranker
from qembed.testing import build_random_qwen, shared_dir

CACHE = Path(os.environ.get("QEMBED_CACHE", Path.home() / ".cache" / "qembed"))


def afqmc(n: int) -> list[tuple[str, str]]:
    out = []
    with open(shared_dir() / "data" / "afqmc" / "dev.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append((row["sentence1"], row["sentence2"]))
            if len(out) >= n:
                break
    return out


def make_pairs(queries: int, per_query: int, seed: int = 0) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    rows = afqmc(queries + 2000)
    sentences = [s for _, s in rows[queries:]] + [q for q, _ in rows[queries:]]
    rng = random.Random(seed)
    qs = [q for q, _ in rows[:queries]]
    passages = []
    for _ in range(queries * per_query):
        passages.append("".join(rng.sample(sentences, rng.randint(1, 12))))
    pairs = [(q, passages[i * per_query + j]) for i, q in enumerate(qs) for j in range(per_query)]
    return qs, passages, pairs


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def model_card_scores(model, tokenizer, pairs, batch_size: int, yes: int, no: int) -> np.ndarray:
    """The model card's recipe: left padding, batches in input order, full logits at the last position."""
    from qembed.rerank.inputs import QWEN3_PREFIX, QWEN3_SUFFIX, format_body

    prefix = tokenizer(QWEN3_PREFIX, add_special_tokens=False)["input_ids"]
    suffix = tokenizer(QWEN3_SUFFIX, add_special_tokens=False)["input_ids"]
    out = []
    for s in range(0, len(pairs), batch_size):
        bodies = [format_body(q, d, "Given a web search query, retrieve relevant passages that answer the query")
                  for q, d in pairs[s:s + batch_size]]
        enc = tokenizer(bodies, add_special_tokens=False, truncation=True,
                        max_length=8192 - len(prefix) - len(suffix))
        seqs = [prefix + x + suffix for x in enc["input_ids"]]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, x in enumerate(seqs):
            ids[r, width - len(x):] = torch.tensor(x)
            mask[r, width - len(x):] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -1, :]
            two = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
            out.append(torch.softmax(two, dim=1)[:, 1].numpy())
    return np.concatenate(out)


class ServedReranker:
    """``qembed serve --reranker`` as a subprocess (benchmarks/server_load.py's management); one
    ``POST /v1/rerank`` per query, every query at once."""

    def __init__(self, reranker: Path, embedding_dir: Path, queries: list[str], pairs: list[tuple[str, str]],
                 per_query: int, compiled: bool = False) -> None:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import server_load

        self.sl = server_load
        embedding = build_random_qwen(embedding_dir, tiny=False, dtype="bfloat16", seed=0)
        ns = argparse.Namespace(threads=None, device="cpu", backend="torch", backend_dtype="auto",
                                serve_arg=["--reranker", str(reranker), "--compile" if compiled else "--no-compile"])
        self.spec = server_load.server_spec("qembed", ns, embedding, embedding.name, "bfloat16")
        self.server = server_load.ManagedServer(self.spec, Path(os.environ.get("TMPDIR", "/tmp")) / "rerank-serve.log", 900)
        self.bodies = [json.dumps({"model": reranker.name, "query": q, "return_documents": False,
                                   "documents": [d for _, d in pairs[i * per_query:(i + 1) * per_query]]})
                       for i, q in enumerate(queries)]
        self.n = len(pairs)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    async def _all(self) -> list[dict]:
        import asyncio

        import httpx

        async with httpx.AsyncClient(base_url=self.server.url, timeout=3600, trust_env=False) as client:
            rs = await asyncio.gather(*(client.post("/v1/rerank", content=b, headers={"content-type": "application/json"})
                                        for b in self.bodies))
        for r in rs:
            r.raise_for_status()
        return [r.json() for r in rs]

    def run(self) -> list[dict]:
        import asyncio

        return asyncio.run(self._all())

    def scores(self) -> np.ndarray:
        out = []
        for body in self.run():
            row = sorted(body["results"], key=lambda x: x["index"])
            out.extend(x["relevance_score"] for x in row)
        return np.asarray(out, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=8)
    parser.add_argument("--docs-per-query", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--st-batch-size", type=int, default=32)
    parser.add_argument("--model-card", action="store_true", help="also time the model card's transformers recipe")
    parser.add_argument("--card-batch-size", type=int, default=8)
    parser.add_argument("--search-queries", type=int, default=3, help="queries timed in the two-stage search")
    parser.add_argument("--candidates", default="20,50,100", help="comma-separated candidate counts (default 20,50,100)")
    parser.add_argument("--skip-st", action="store_true", help="leave sentence-transformers' CrossEncoder out")
    parser.add_argument("--served", action="store_true",
                        help="also time the same pairs through qembed serve --reranker (POST /v1/rerank)")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--model-dir", type=Path, default=CACHE / "random-qwen3-reranker-0.6b")
    parser.add_argument("--embedding-dir", type=Path, default=CACHE / "random-qwen3-embedding-0.6b")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON at the end")
    args = parser.parse_args()

    t0 = time.perf_counter()
    path = build_random_reranker(args.model_dir, tiny=False, dtype="bfloat16", seed=0)
    print(f"reranker: {path} (random weights, real architecture) ready in {time.perf_counter() - t0:.0f}s")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    rr = Reranker(str(path), device="cpu", dtype="bfloat16")
    if not args.skip_st:
        from sentence_transformers import CrossEncoder

        ce = CrossEncoder(str(path), device="cpu", local_files_only=True, model_kwargs={"dtype": torch.bfloat16},
                          processor_kwargs={"chat_template": qwen3_chat_template()})
    print(f"qembed: {rr!r}, packed={rr.packed}, compiled={rr.info()['compiled']}")

    queries, passages, pairs = make_pairs(args.queries, args.docs_per_query)
    n_tokens = sum(len(x) for x in rr.tokenize_pairs(pairs))
    methods = {"qembed": lambda: rr.score(pairs)}
    if not args.skip_st:
        methods["sentence-transformers"] = lambda: ce.predict(pairs, batch_size=args.st_batch_size)
    if args.model_card:
        from transformers import AutoModelForCausalLM

        card = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.bfloat16).eval()
        yes, no = rr.yes_no_ids
        methods["model card (transformers)"] = lambda: model_card_scores(card, rr.tokenizer, pairs,
                                                                         args.card_batch_size, yes, no)
    served = None
    if args.served:
        served = ServedReranker(path, args.embedding_dir, queries, pairs, args.docs_per_query,
                                compiled=bool(rr.info()["compiled"]))  # as in process: compare passes alike
        methods["qembed serve /v1/rerank"] = served.run
    # warm-up and a correctness check on the same pairs
    ours = rr.score(pairs[:32])
    diff = None
    if not args.skip_st:
        theirs = np.asarray(ce.predict(pairs[:32], batch_size=args.st_batch_size))
        diff = float(np.max(np.abs(ours - theirs)))
    served_diff = None
    if served is not None:
        try:
            served.start()
            served_scores = served.scores()
            served_diff = float(np.max(np.abs(served_scores - rr.score(pairs))))
        except BaseException:
            served.stop()
            raise
    times: dict[str, list[float]] = {m: [] for m in methods}
    try:
        for r in range(args.repeats):
            for name, fn in methods.items():
                times[name].append(timed(fn))
                print(f"  round {r + 1}: {name:<28} {times[name][-1]:7.2f}s", flush=True)
    finally:
        if served is not None:
            served.stop()
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\n{len(pairs)} pairs ({args.queries} queries x {args.docs_per_query} passages), {n_tokens} tokens "
          f"with the prompt" + (f"; max |qembed - sentence-transformers| score difference (bf16): {diff:.4f}"
                                 if diff is not None else ""))
    print(f"{'method':<30}{'seconds':>9}{'pairs/s':>9}{'tok/s':>9}")
    for m, t in med.items():
        print(f"{m:<30}{t:>9.2f}{len(pairs) / t:>9.1f}{n_tokens / t:>9.0f}")
    results: dict = {"pairs": len(pairs), "tokens": n_tokens, "seconds": med, "max_score_diff_vs_st": diff}
    if not args.skip_st:
        ratio = med["sentence-transformers"] / med["qembed"]
        print(f"qembed / sentence-transformers CrossEncoder throughput: {ratio:.2f}x   (target >= 1.0x)")
        results["qembed_vs_st"] = ratio
    if served is not None:
        served_ratio = med["qembed"] / med["qembed serve /v1/rerank"]
        print(f"served /v1/rerank / in-process throughput: {served_ratio:.2f}x   (target >= 0.85x); "
              f"max |served - in-process| score difference: {served_diff:.4f}")
        results["served_vs_in_process"] = served_ratio
        results["served_pairs_s"] = len(pairs) / med["qembed serve /v1/rerank"]
        results["in_process_pairs_s"] = len(pairs) / med["qembed"]
        results["max_score_diff_served"] = served_diff
    if args.model_card:
        card_ratio = med["model card (transformers)"] / med["qembed"]
        print(f"qembed / model-card transformers recipe throughput:    {card_ratio:.2f}x")
        results["qembed_vs_model_card"] = card_ratio

    if not args.skip_search:
        from qembed.models.local import LocalEncoder
        from qembed.search.knowledge_base import KnowledgeBase

        emb_path = build_random_qwen(args.embedding_dir, tiny=False, dtype="bfloat16", seed=0)
        enc = LocalEncoder(str(emb_path), device="cpu", dtype="bfloat16")
        kb = KnowledgeBase.open(None, enc, store_options={"index": "flat"}, chunk_tokens=None)
        kb.add(passages, save=False)
        counts = [int(c) for c in str(args.candidates).split(",") if c.strip()]
        first: list[float] = []
        both: dict[int, list[float]] = {c: [] for c in counts}
        kb.search(queries[0], top_k=10)  # warm-up
        for q in queries[: args.search_queries]:
            first.append(timed(lambda q=q: kb.search(q, top_k=10)))
            for c in counts:
                both[c].append(timed(lambda q=q, c=c: kb.search(q, top_k=10, rerank=rr, candidates=c)))
        f_med = statistics.median(first)
        print(f"\ntwo-stage search over {len(passages)} passages, top 10, median of {len(first)} queries "
              f"(first stage alone {f_med * 1000:.0f} ms):")
        print(f"{'candidates':>10}{'ms per query':>14}")
        results["two_stage_ms"] = {}
        for c in counts:
            b_med = statistics.median(both[c])
            print(f"{c:>10}{b_med * 1000:>14.0f}")
            results["two_stage_ms"][c] = b_med * 1000
        results["first_stage_ms"] = f_med * 1000
        kb.close()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
