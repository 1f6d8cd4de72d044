"""What the documented examples need around them: a Hugging Face cache holding the tiny models under
the names the docs use, and a working folder with the files the examples name.

The cache is the one a user has after downloading once (``models--Qwen--Qwen3-Embedding-0.6B/
snapshots/<rev>/``, ``refs/main``), so ``Qwen/Qwen3-Embedding-0.6B`` resolves offline exactly as for
them; only the weights are the tiny random ones of the test fixtures.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np

REVISION = "0" * 40

#: Hub id -> which fixture folder stands in for it
HUB_MODELS = {
    "Qwen/Qwen3-Embedding-0.6B": "embedding",
    "Qwen/Qwen3-Reranker-0.6B": "reranker",
    "sentence-transformers/all-MiniLM-L6-v2": "minilm",
}


def build_hf_cache(hub: Path, folders: dict[str, Path]) -> Path:
    """A Hugging Face hub cache (``HF_HUB_CACHE``) whose snapshots link to the fixture folders."""
    for repo, role in HUB_MODELS.items():
        repo_dir = hub / ("models--" + repo.replace("/", "--"))
        snapshot = repo_dir / "snapshots" / REVISION
        if snapshot.exists():
            continue
        (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / "main").write_text(REVISION, encoding="utf-8")
        shutil.copytree(folders[role], snapshot, copy_function=os.symlink)
    return hub


# ------------------------------------------------------------------------------- the user's files

MESSAGES = [
    "花呗还款总是失败", "每次还花呗都提示系统错误", "花呗怎么还款", "花呗还款失败怎么办", "如何归还蚂蚁花呗",
    "借呗能分期吗", "借呗支持分几期还款", "我可以分几个月还借呗", "借呗提前还款有手续费吗", "借呗额度怎么提升",
    "My payment failed again", "The card payment did not go through", "Why was my payment declined?",
    "Where is my package?", "My parcel has not arrived yet", "When will my order be delivered?",
    "How do I reset my password?", "I forgot my password", "I cannot sign in to my account",
    "Mi pago falló otra vez", "¿Dónde está mi paquete?", "No puedo iniciar sesión",
    "I was charged twice for my order", "Refund please, the item was broken", "How long does a refund take?",
    "订单超过48小时未发货怎么办", "快递一直没有更新物流信息", "买了东西两天了怎么还不发快递",
    "退款一直没到账", "申请退款后多久到账",
]
#: A second day's messages (docs/clustering.md folds them into the topic model fitted on MESSAGES).
MESSAGES_DAY2 = [
    "花呗还款一直提示失败", "借呗可以分十二期吗", "My card payment was declined today", "My parcel is late again",
    "I cannot log in since yesterday", "退款三天了还没到账", "How do I change my delivery address?",
    "怎么修改收货地址", "Can I change the address on my order?",
]
MESSAGE_TOPICS = ["huabei"] * 5 + ["jiebei"] * 5 + ["payment"] * 3 + ["shipping"] * 3 + ["login"] * 3 + \
    ["payment", "shipping", "login"] + ["refund"] * 3 + ["shipping"] * 3 + ["refund"] * 2

FAQ = [
    "订单超过48小时未发货怎么办", "花呗还款失败有哪些原因", "如何关闭借呗自动扣款功能", "退款多久可以到账",
    "花呗怎么还款", "借呗支持分几期还款", "快递一直没有更新物流信息怎么办", "怎么修改收货地址",
]
FAQ_TOPICS = ["shipping", "repayment", "repayment", "refund", "repayment", "repayment", "shipping", "shipping"]

QUEUES = ["billing: invoices, charges, payments and refunds", "shipping: delivery, parcels, couriers and tracking",
          "login: passwords, sign-in and account access"]
TICKETS = [
    ("I was charged twice for my order", "billing"), ("Refund please, the item was broken", "billing"),
    ("Why was my card payment declined?", "billing"), ("Where is my parcel?", "shipping"),
    ("My package has not arrived yet", "shipping"), ("The courier lost my delivery", "shipping"),
    ("I forgot my password", "login"), ("I cannot sign in to my account", "login"),
    ("How do I reset my password?", "login"), ("Please send me an invoice for March", "billing"),
    ("Tracking number does not work", "shipping"), ("My account is locked after three attempts", "login"),
]


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def _afqmc(shared: Path, name: str, n: int) -> list[dict]:
    """The first ``n`` pairs of AFQMC's ``name`` split, both labels present."""
    rows = []
    with (shared / "data" / "afqmc" / name).open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= n:
                break
    return rows


def _stsb(shared: Path, name: str, n: int) -> list[str]:
    with (shared / "data" / "stsb_zh" / name).open(encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n)]


def prepare(workdir: Path, shared: Path, tiny_model: Path) -> Path:
    """Write every file the documented commands name into ``workdir`` (small samples)."""
    workdir.mkdir(parents=True, exist_ok=True)
    train, dev = _afqmc(shared, "train.json", 48), _afqmc(shared, "dev.json", 24)
    test = [{k: v for k, v in row.items() if k != "label"} for row in _afqmc(shared, "test.json", 16)]
    for folder in (workdir, workdir / "afqmc"):
        _jsonl(folder / "train.json", train)
        _jsonl(folder / "dev.json", dev)
        _jsonl(folder / "test.json", test)
    stsb = sorted(p.name for p in (shared / "data" / "stsb_zh").iterdir())
    (workdir / "stsb").mkdir(exist_ok=True)
    for name in stsb:
        _lines(workdir / "stsb" / name, _stsb(shared, name, 64))

    _lines(workdir / "questions.txt", MESSAGES + ["花呗怎么还款"])  # one exact duplicate for dedup
    _lines(workdir / "messages.txt", MESSAGES)
    _lines(workdir / "messages-day2.txt", MESSAGES_DAY2)
    _lines(workdir / "faq.txt", FAQ)
    _lines(workdir / "queues.txt", QUEUES)
    _lines(workdir / "new-tickets.txt", [t for t, _ in TICKETS[:4]])
    many = [(f"{t} (#{i})", q) for i, (t, q) in enumerate(TICKETS * 4)]  # hdbscan --min-cluster-size 20
    _csv(workdir / "tickets.csv", ["ticket_id", "text", "question", "body", "queue"],
         [[f"T{i}", t, t, t, q] for i, (t, q) in enumerate(many)])
    _csv(workdir / "labelled.csv", ["text", "queue"], [[t, q] for t, q in TICKETS * 2])
    _csv(workdir / "kb.csv", ["id", "body"], [[f"faq-{i}", t] for i, t in enumerate(FAQ)])
    _jsonl(workdir / "labelled.jsonl", [{"text": t, "label": lab} for t, lab in zip(MESSAGES, MESSAGE_TOPICS)])
    _jsonl(workdir / "tickets.jsonl", [{"id": f"T{i}", "body": t} for i, (t, _) in enumerate(TICKETS + TICKETS[:2])])
    _jsonl(workdir / "faq.jsonl", [{"id": f"faq-{i}", "text": t, "topic": topic}
                                   for i, (t, topic) in enumerate(zip(FAQ, FAQ_TOPICS))])
    _jsonl(workdir / "articles.jsonl", [{"id": f"a{i}", "title": t[:6], "text": t, "topic": topic}
                                        for i, (t, topic) in enumerate(zip(FAQ, FAQ_TOPICS))])
    (workdir / "guide.md").write_text("# 还款指南\n\n花呗每月10号还款,可以用余额或银行卡。\n", encoding="utf-8")
    for i, chunk in enumerate((MESSAGES[:15], MESSAGES[15:])):
        _jsonl(workdir / "tickets" / f"part-{i}.jsonl", [{"id": f"m{i}-{j}", "text": t} for j, t in enumerate(chunk)])

    # BEIR-style retrieval data (scifact/ and the flat names the rerank page uses)
    corpus = [{"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(FAQ)]
    queries = [{"_id": "q0", "text": "花呗还不上"}, {"_id": "q1", "text": "发货太慢"}]
    qrels = ["query-id\tcorpus-id\tscore", "q0\td1\t1", "q0\td4\t1", "q1\td0\t1", "q1\td6\t1"]
    for folder, qrels_path in ((workdir / "scifact", workdir / "scifact" / "qrels" / "test.tsv"),
                               (workdir, workdir / "qrels.tsv")):
        _jsonl(folder / "corpus.jsonl", corpus)
        _jsonl(folder / "queries.jsonl", queries)
        _lines(qrels_path, qrels)

    # a local model folder, as `hf download Qwen/Qwen3-Embedding-0.6B --local-dir ./Qwen3-Embedding-0.6B` leaves
    local = workdir / "Qwen3-Embedding-0.6B"
    if not local.exists():
        shutil.copytree(tiny_model, local, copy_function=os.symlink)
    return workdir


def placeholders(dim: int = 1024, seed: int = 0) -> dict:
    """The names the docs' snippets use for "your data" (``texts``, ``documents``, ``gold_labels`` …)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(MESSAGES), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return {
        "texts": list(MESSAGES),
        "new_texts": list(MESSAGES_DAY2),
        "gold_labels": list(MESSAGE_TOPICS),
        "predicted_labels": [hash(t) % 3 for t in MESSAGE_TOPICS],
        "documents": ["Click 'Forgot password' on the sign-in page.", "Our shop opens at 9.",
                      "Passwords must be at least 12 characters.", "Refunds take 3 to 5 days."],
        "tickets": [t for t, _ in TICKETS] * 2,
        "queues": [q for _, q in TICKETS] * 2,
        "ids": [f"id-{i}" for i in range(len(MESSAGES))],
        "vectors": vectors,
        "query_vectors": vectors[:2],
    }
