"""Fixtures for the reranker tests: tiny random Qwen3 rerankers (causal LM and seq-cls) with the
real tokenizer, a tiny CrossEncoder folder, and an independent reference scorer."""

from __future__ import annotations

from pathlib import Path

import pytest

from qembed.rerank.testing import build_random_reranker

#: makes the tiny random models' scores spread over (0, 1) instead of sitting at 0.5
HEAD_SCALE = 8.0

PREFIX = ('<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the '
          'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n')
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


@pytest.fixture(scope="session")
def reranker_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen3ForCausalLM reranker folder: 2 layers, hidden 64, real tokenizer, random weights."""
    return build_random_reranker(tmp_path_factory.mktemp("rerankers") / "tiny-qwen3-reranker",
                                 seed=1, head_scale=HEAD_SCALE)


@pytest.fixture(scope="session")
def seq_cls_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model converted to a one-label classifier (head = w_yes - w_no)."""
    return build_random_reranker(tmp_path_factory.mktemp("rerankers") / "tiny-qwen3-reranker-seq-cls",
                                 seed=1, head_scale=HEAD_SCALE, seq_cls=True)


@pytest.fixture(scope="session")
def reranker(reranker_path: Path):
    """The tiny reranker in fp32 on CPU (packed passes, eager element-wise ops)."""
    from qembed.rerank.local import Reranker

    return Reranker(str(reranker_path), device="cpu", dtype="float32", compile=False)


@pytest.fixture(scope="session")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> Path:
    """A sentence-transformers CrossEncoder folder: all-MiniLM-L6-v2's encoder with a random one-label head."""
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(3)
    ce = CrossEncoder(str(minilm_path), num_labels=1, local_files_only=True, device="cpu")
    with torch.no_grad():
        ce.model.classifier.weight.normal_(0.0, 0.5)
    out = tmp_path_factory.mktemp("rerankers") / "tiny-cross-encoder"
    ce.save(str(out))
    return out


class ReferenceScorer:
    """The model card's formula on a plain transformers forward: full logits at the last position,
    softmax over [no, yes], one pair at a time — independent of qembed's code."""

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        self.yes = self.tokenizer.convert_tokens_to_ids("yes")
        self.no = self.tokenizer.convert_tokens_to_ids("no")

    def ids(self, query: str, document: str, instruction: str | None = DEFAULT_INSTRUCTION,
            max_length: int = 8192) -> list[int]:
        enc = lambda text, **kw: self.tokenizer(text, add_special_tokens=False, **kw)["input_ids"]
        prefix, suffix = enc(PREFIX), enc(SUFFIX)
        head = f"<Instruct>: {instruction}\n" if instruction else ""
        body = enc(f"{head}<Query>: {query}\n<Document>: {document}", truncation=True,
                   max_length=max_length - len(prefix) - len(suffix))
        return prefix + body + suffix

    def __call__(self, pairs, instruction: str | None = DEFAULT_INSTRUCTION, max_length: int = 8192) -> list[float]:
        torch = self.torch
        out = []
        for query, document in pairs:
            ids = self.ids(query, document, instruction, max_length)
            with torch.no_grad():
                logits = self.model(torch.tensor([ids])).logits[0, -1]
            pair = torch.stack([logits[self.no], logits[self.yes]])
            out.append(float(torch.softmax(pair, dim=0)[1]))
        return out


@pytest.fixture(scope="session")
def reference(reranker_path: Path) -> ReferenceScorer:
    return ReferenceScorer(reranker_path)
