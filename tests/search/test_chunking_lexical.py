"""Token chunking with overlap, and BM25 over jieba-segmented Chinese."""

from __future__ import annotations

import pytest

from qembed.errors import InputError
from qembed.search.chunking import Chunker
from qembed.search.lexical import BM25Index, bm25_tokens


def test_chunks_fit_the_budget_overlap_and_cover_the_text(tiny_encoder):
    text = " ".join(f"sentence {i} about refunds, shipping and repayments." for i in range(60))
    chunker = Chunker(tiny_encoder, chunk_tokens=40, overlap=8)
    chunks = chunker.split(text)
    assert len(chunks) > 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert tiny_encoder.count_tokens([c.text])[0] <= 40 + 1  # end token included; BPE re-merge slack of 1
        assert c.text == text[c.start:c.end]
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # consecutive chunks overlap
        overlap = tiny_encoder.tokenizer(text[b.start:a.end], add_special_tokens=False)["input_ids"]
        assert 6 <= len(overlap) <= 10
    short = chunker.split("short text")
    assert len(short) == 1 and short[0].text == "short text"
    assert Chunker(tiny_encoder, chunk_tokens=None).split(text)[0].text == text


def _assert_covers(text, chunks):
    """Chunks are slices of the text, in order, overlapping, together the whole text."""
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for c in chunks:
        assert c.text == text[c.start:c.end]
    rebuilt = chunks[0].text
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start < a.end <= b.end  # each starts inside the previous one
        rebuilt += text[a.end:b.end]
    assert rebuilt == text


def test_chinese_chunks(tiny_encoder):
    text = "花呗账单每月自动还款,余额不足时会还款失败。" * 30
    chunks = Chunker(tiny_encoder, chunk_tokens=32, overlap=4).split(text)
    assert len(chunks) > 3
    assert all(tiny_encoder.count_tokens([c.text])[0] <= 33 for c in chunks)
    _assert_covers(text, chunks)


def test_remote_encoders_chunk_by_characters(tiny_encoder):
    """A remote endpoint lends no tokenizer: windows of about 2 characters per token."""
    from qembed.models import load_encoder
    from qembed.search.chunking import FALLBACK_CHARS_PER_TOKEN
    from qembed.search.knowledge_base import KnowledgeBase
    from qembed.server.testing import running_server
    from qembed.store import open_store

    text = "".join(f"第{i}条:花呗账单每月自动还款,余额不足时会还款失败。" for i in range(40))
    with running_server(encoder=tiny_encoder) as url:
        remote = load_encoder(url + "/v1", model=tiny_encoder.name)
        assert getattr(remote, "tokenizer", None) is None
        chunker = Chunker(remote, chunk_tokens=40, overlap=8)
        chunks = chunker.split(text)
        size = (40 - 2) * FALLBACK_CHARS_PER_TOKEN  # room for two special tokens
        step = (40 - 2 - 8) * FALLBACK_CHARS_PER_TOKEN
        assert len(chunks) == len(range(0, len(text) - 8 * FALLBACK_CHARS_PER_TOKEN, step)) > 5
        assert [c.start for c in chunks] == [i * step for i in range(len(chunks))]
        assert all(len(c.text) == size for c in chunks[:-1]) and len(chunks[-1].text) <= size
        _assert_covers(text, chunks)
        # the knowledge base indexes exactly these chunks through the endpoint
        kb = KnowledgeBase(remote, open_store(None, dim=remote.dim), chunk_tokens=40, chunk_overlap=8)
        added = kb.add([{"id": "doc", "text": text}])
        assert added["chunks"] == len(chunks)
        hits = kb.search(chunks[3].text, top_k=1)
        assert hits[0].id == "doc#3" and hits[0].text == chunks[3].text


@pytest.mark.parametrize("size,overlap", [(8, 0), (64, 32), (64, -1), (64, 40)])
def test_bad_chunk_settings(tiny_encoder, size, overlap):
    with pytest.raises(InputError):
        Chunker(tiny_encoder, chunk_tokens=size, overlap=overlap)


def test_tokenize_segments_chinese_and_drops_noise():
    assert bm25_tokens("订单超过48小时未发货怎么办?") == ["订单", "超过", "48", "小时", "未", "发货", "怎么办"]
    assert bm25_tokens("The parcel has NOT shipped!") == ["parcel", "has", "shipped"]  # "the", "not" are stopwords


def test_bm25_ranks_by_shared_words_and_filters(tmp_path):
    ids = ["ship", "huabei", "jiebei", "refund"]
    texts = ["订单超过48小时未发货怎么办", "花呗还款失败有哪些原因", "如何关闭借呗自动扣款功能", "退款多久到账"]
    index = BM25Index(ids, texts, version=3)
    hits = index.search("花呗还款失败了", 3)
    assert hits[0][0] == "huabei" and hits[0][1] > 0
    assert index.search("完全无关的词语", 3) == []  # no shared word: nothing, not noise
    assert [d for d, _ in index.search("还款 扣款", 4, allowed={"jiebei"})] == ["jiebei"]
    index.save(tmp_path / "bm25")
    loaded = BM25Index.load(tmp_path / "bm25")
    assert loaded.version == 3 and loaded.search("花呗还款失败了", 1) == hits[:1]
    assert BM25Index.load(tmp_path / "missing") is None
