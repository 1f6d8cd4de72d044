"""Hand-written English data where meaning decides, shared by the pair/classify/dedup tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

#: (text a, text b, 1 = same intent) — paraphrases and unrelated questions.
PAIRS = [
    ("How can I pay back my loan in installments?", "Is it possible to repay the loan in monthly instalments?", 1),
    ("What happens if I miss my credit card payment?", "What are the consequences of paying my card bill late?", 1),
    ("How do I change my account password?", "I want to reset the password for my account.", 1),
    ("When will my order be delivered?", "How long does shipping take for my order?", 1),
    ("Can I get a refund for a damaged item?", "The product arrived broken, can I have my money back?", 1),
    ("How can I pay back my loan in installments?", "What is the weather like in Paris today?", 0),
    ("How do I change my account password?", "Where can I buy cheap flights to Tokyo?", 0),
    ("When will my order be delivered?", "Which football team won the league last year?", 0),
    ("Can I get a refund for a damaged item?", "How many calories are in a banana?", 0),
    ("What happens if I miss my credit card payment?", "Recommend a good recipe for tomato soup.", 0),
]

QUEUES = [
    "billing: questions about invoices, charges, payments and refunds",
    "shipping: questions about delivery, parcels, couriers and tracking",
    "login: problems signing in, passwords and account access",
]

#: (ticket, queue) for zero-shot routing.
TICKETS = [
    ("I was charged twice on my credit card for the same invoice", "billing"),
    ("Please refund the payment for my cancelled subscription", "billing"),
    ("Why is there an extra fee on my latest invoice?", "billing"),
    ("My parcel has not been delivered and the tracking has not updated for a week", "shipping"),
    ("The courier left the package at the wrong address", "shipping"),
    ("When will my delivery arrive?", "shipping"),
    ("I forgot my password and cannot sign in", "login"),
    ("The login page says my account is locked", "login"),
    ("I never receive the password reset email so I cannot access my account", "login"),
]

#: Labelled tickets for the supervised classifier (10 per queue).
TRAINING = [
    *[(t, "billing") for t in [
        "I was billed twice this month", "Can I get a refund for my last payment?",
        "My invoice shows the wrong amount", "Why was my card charged again?",
        "I want my money back for the order", "The payment failed but I was still charged",
        "How do I download a copy of my invoice?", "Please cancel the charge on my account",
        "There is an unknown transaction on my statement", "Can I pay the bill in instalments?"]],
    *[(t, "shipping") for t in [
        "Where is my package?", "The parcel tracking number does not work",
        "My order has not arrived yet", "The delivery was late by three days",
        "Can I change the delivery address?", "The courier never came to my house",
        "How long does shipping to Canada take?", "My box arrived damaged in transit",
        "The tracking says delivered but I have nothing", "Do you ship to Australia?"]],
    *[(t, "login") for t in [
        "I cannot log in to my account", "My password reset link expired",
        "The app keeps signing me out", "I forgot my username",
        "Two-factor code is not accepted", "My account was locked after failed attempts",
        "How do I change my password?", "The sign-in page shows an error",
        "I did not get the verification email", "Someone else logged into my account"]],
]

#: Texts with near-duplicate groups (paraphrases / near copies) and unrelated singletons.
DEDUP_TEXTS = [
    "How do I reset my password?",                          # 0  group A
    "The weather will be sunny tomorrow.",                  # 1  single
    "How can I reset my password?",                         # 2  A (near copy)
    "Where is my parcel? It has not arrived.",              # 3  group B
    "How do I reset my password?",                          # 4  A (exact copy)
    "I like to play the guitar in the evening.",            # 5  single
    "Where is my parcel? It still has not arrived.",        # 6  B (near copy)
    "Stock markets fell sharply on Monday.",                # 7  single
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def pairs_file(tmp_path: Path) -> Path:
    """AFQMC-style JSON lines: sentence1, sentence2, label as the strings "0"/"1"."""
    return write_jsonl(tmp_path / "pairs.jsonl",
                       [{"sentence1": a, "sentence2": b, "label": str(y)} for a, b, y in PAIRS])


@pytest.fixture()
def training_file(tmp_path: Path) -> Path:
    import csv

    path = tmp_path / "tickets.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "queue"])
        w.writerows(TRAINING)
    return path
