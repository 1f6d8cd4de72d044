"""Any sentence-transformers folder works with its own pooling: all-MiniLM-L6-v2 (mean pooling)."""

from __future__ import annotations

import numpy as np
from sentence_transformers import SentenceTransformer


def test_paraphrase_scores_above_unrelated(minilm_encoder):
    a, b, c = minilm_encoder.encode([
        "How do I repay my credit card bill?",
        "What is the way to pay back my credit card balance?",
        "The football match was cancelled because of heavy snow.",
    ])
    assert float(a @ b) > float(a @ c) + 0.3


def test_matches_sentence_transformers(minilm_encoder, minilm_path):
    texts = ["a short one", "a somewhat longer sentence about embeddings and search", "x"]
    ref = SentenceTransformer(str(minilm_path), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(minilm_encoder.encode(texts), ref, atol=1e-5)


def test_non_instruction_model_ignores_instruction(minilm_encoder):
    assert not minilm_encoder.supports_instructions
    assert minilm_encoder.info()["pooling"] == "mean"
    assert minilm_encoder.max_input_tokens == 256
    np.testing.assert_allclose(
        minilm_encoder.encode(["hello"], instruction="Retrieve semantically similar text"),
        minilm_encoder.encode(["hello"]),
    )


def test_truncation_keeps_sep(minilm_encoder):
    ids = minilm_encoder.tokenize(["word " * 1000])[0]
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102
