"""Hostile and careless input to the knowledge base and the ``qembed index``/``search`` CLI
(issue 11, items 1, 2, 4, 6, 9), on both backends.

A ``KnowledgeBase.add`` is applied whole or not at all: the test below makes the encoder refuse
part-way through, as the server's queue does with a 429, and checks nothing was written.
"""

from __future__ import annotations

import pytest

from qembed.cli import main
from qembed.errors import InputError
from qembed.server.errors import QueueFullError
from qembed.store import open_store
from qembed.search.knowledge_base import KnowledgeBase

CRAFTED = "zz'] or id != 'q' or id in ['zz"


class RefusingEncoder:
    """The real tiny encoder, except that its ``refuse_at``-th ``encode`` call answers like a full
    server queue (``QueueFullError``, a 429) — the failure the issue saw part-way through a request."""

    def __init__(self, encoder, refuse_at: int) -> None:
        self.inner = encoder
        self.refuse_at = refuse_at
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, *args, **kwargs):
        self.calls += 1
        if self.calls == self.refuse_at:
            raise QueueFullError("the server is busy: queue full; retry shortly", code="queue_full")
        return self.inner.encode(texts, *args, **kwargs)


@pytest.fixture
def kb_uri(store_uri):
    return store_uri


def docs(n: int, prefix: str = "doc", text: str = "document number {i} about shipping") -> list[dict]:
    return [{"id": f"{prefix}-{i}", "text": text.format(i=i), "metadata": {"n": i}} for i in range(n)]


def snapshot(kb) -> dict:
    return {r.id: (r.text, r.metadata) for batch in kb.store.scan() for r in batch}


def test_add_refused_part_way_writes_nothing(tiny_encoder, kb_uri):
    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    kb.add(docs(6))
    before = snapshot(kb)
    kb.close()

    flaky = RefusingEncoder(tiny_encoder, refuse_at=3)  # batches 1 and 2 embed, batch 3 is refused
    kb = KnowledgeBase.open(kb_uri, flaky, chunk_tokens=24, chunk_overlap=4)
    replacement = docs(3, text="replaced text {i}") + docs(10, prefix="new")
    with pytest.raises(QueueFullError):
        kb.add(replacement, batch_size=4)
    assert flaky.calls == 3
    assert snapshot(kb) == before
    kb.close()

    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    try:
        assert snapshot(kb) == before  # nothing was saved either
        assert kb.add(docs(1, prefix="later")) == {"documents": 1, "chunks": 1, "replaced": 0}
        assert len(kb) == len(before) + 1
        assert [h.id for h in kb.search("document number", 20, mode="bm25")
                if h.id.startswith("new")] == []
    finally:
        kb.close()


@pytest.mark.parametrize("field", ["text", "title", "metadata", "metadata key", "id"])
def test_unpaired_surrogate_in_a_document_writes_nothing(tiny_encoder, kb_uri, field):
    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    try:
        kb.add(docs(36))
        before = snapshot(kb)
        for target in ("doc-7", "brand-new"):  # a replace and an add
            bad = {"id": target, "text": "fine text"}
            if field == "text":
                bad["text"] = "broken \ud800 text"
            elif field == "title":
                bad["title"] = "\udc00"
            elif field == "metadata":
                bad["metadata"] = {"note": ["ok", "x\ud83d"]}
            elif field == "metadata key":
                bad["metadata"] = {"nested": {"k\ud800": 1}}
            else:
                bad["id"] = "id-\ud800"
            with pytest.raises(InputError, match="surrogate"):
                kb.add(docs(2, prefix="with-bad") + [bad])
        assert snapshot(kb) == before
        kb.add(docs(1, prefix="after"))
    finally:
        kb.close()
    again = open_store(kb_uri)
    try:
        assert again.count() == 37
        assert again.get(["doc-7"])[0].text == "document number 7 about shipping"
    finally:
        again.close()


def test_crafted_id_through_the_knowledge_base_and_the_cli(tiny_encoder, kb_uri, capsys):
    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    kb.add(docs(16) + [{"id": CRAFTED, "text": "x"}, {"id": "quote'and\\slash", "text": "y"}])
    assert len(kb) == 18
    assert kb.delete(CRAFTED) == 1
    assert len(kb) == 17
    kb.close()
    rc = main(["index", "delete", "quote'and\\slash", "--index", kb_uri, "--json"])
    out = capsys.readouterr().out
    assert rc == 0 and '"deleted": 1' in out
    store = open_store(kb_uri)
    try:
        assert store.count() == 16
        assert sorted(store.ids()) == sorted(f"doc-{i}" for i in range(16))
    finally:
        store.close()


def test_delete_by_chunk_id_is_refused(tiny_encoder, kb_uri):
    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=16, chunk_overlap=2)
    try:
        kb.add([{"id": "doc", "text": "a long document about shipping and refunds " * 8}])
        chunks = sorted(kb.store.ids())
        assert len(chunks) > 2 and "doc#0" in chunks
        with pytest.raises(InputError, match="'#'"):
            kb.delete("doc#0")
        with pytest.raises(InputError, match="'#'"):
            kb.add([{"id": "doc#0", "text": "a chunk id used as a document id"}])
        assert sorted(kb.store.ids()) == chunks
        assert kb.delete("doc") == 1 and len(kb) == 0
    finally:
        kb.close()


@pytest.mark.parametrize("bad_id", ["a\x00b", "new\nline", "\x1b[31mred"])
def test_document_ids_with_control_characters_are_refused(tiny_encoder, kb_uri, bad_id):
    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    try:
        kb.add(docs(2))
        with pytest.raises(InputError, match="control character"):
            kb.add([{"id": bad_id, "text": "x"}])
        with pytest.raises(InputError, match="control character"):
            kb.delete(bad_id)
        assert len(kb) == 2
    finally:
        kb.close()


def test_cli_filters_beyond_int64_and_with_many_values_are_clean_errors(tiny_encoder, tmp_path, capsys):
    index = tmp_path / "ix"
    kb = KnowledgeBase.open(index, tiny_encoder)
    kb.add(docs(4))
    kb.close()
    capsys.readouterr()
    rc = main(["search", "shipping", "--index", str(index), "--mode", "bm25", "--filter", "n=99999999999999999999"])
    err = capsys.readouterr().err
    assert rc != 0 and "64-bit" in err and "Traceback" not in err
    many = [x for i in range(1100) for x in ("--filter", f"n={i}")]
    rc = main(["search", "shipping", "--index", str(index), "--mode", "bm25", *many])
    err = capsys.readouterr().err
    assert rc != 0 and "limit of 1024" in err and "Traceback" not in err
    rc = main(["search", "shipping", "--index", str(index), "--mode", "bm25", "--json",
               *[x for i in range(1000) for x in ("--filter", f"n={i}")]])
    assert rc == 0 and '"doc-3"' in capsys.readouterr().out


def test_a_failed_save_leaves_the_knowledge_base_as_it_was(tiny_encoder, tmp_path, monkeypatch):
    from qembed.store import faiss_store

    kb = KnowledgeBase.open(tmp_path / "ix", tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    try:
        kb.add(docs(5))
        before = snapshot(kb)

        def disk_full(index, fname):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(faiss_store.faiss, "write_index", disk_full)
        with pytest.raises(OSError, match="No space left"):
            kb.add(docs(3, prefix="new") + docs(2, text="replaced {i}"))
        with pytest.raises(OSError, match="No space left"):
            kb.delete("doc-4")
        assert snapshot(kb) == before  # not even in memory: the request failed, nothing changed
        assert kb.search("document number", 10, mode="bm25") and not kb.store.has_unsaved_changes
        monkeypatch.undo()
        kb.add(docs(1, prefix="later"))
    finally:
        kb.close()
    again = open_store(tmp_path / "ix")
    try:
        assert sorted(again.ids()) == sorted(list(before) + ["later-0"])
    finally:
        again.close()


@pytest.mark.parametrize("length", [500, 510, 512])
def test_ids_up_to_the_limit_work_whatever_the_number_of_chunks(tiny_encoder, kb_uri, length):
    from qembed.search.knowledge_base import chunk_ids
    from qembed.store.base import MAX_ID_LENGTH

    kb = KnowledgeBase.open(kb_uri, tiny_encoder, chunk_tokens=24, chunk_overlap=4)
    try:
        long_id = ("长" if length == 512 else "a") * (length - 1) + "z"
        twin = long_id[:-1] + "y"  # same first 511 characters: its chunks must not meet long_id's
        text = " ".join(f"word{i} shipping refunds" for i in range(120))  # a dozen or more chunks
        kb.add([{"id": "short", "text": "a short document"}])
        before = snapshot(kb)
        result = kb.add([{"id": long_id, "text": text, "metadata": {"k": 1}}, {"id": twin, "text": text}])
        assert result["documents"] == 2 and result["chunks"] >= 24
        stored = snapshot(kb)
        new = {i: m for i, (_, m) in stored.items() if i not in before}
        assert all(len(i) <= MAX_ID_LENGTH for i in new)
        assert {m["doc_id"] for m in new.values()} == {long_id, twin}
        assert sorted(i for i, m in new.items() if m["doc_id"] == long_id) == sorted(
            chunk_ids(long_id, result["chunks"] // 2))
        assert kb.info()["documents"] == 3
        hits = kb.search("word7 shipping", top_k=5, filter={"k": 1}, unique_documents=True)
        assert [h.metadata["doc_id"] for h in hits] == [long_id]
        again = kb.add([{"id": long_id, "text": text + " more", "metadata": {"k": 2}}])  # replaces whole
        assert again["replaced"] == 1
        assert {m["doc_id"] for _, (_, m) in snapshot(kb).items()} == {"short", long_id, twin}
        assert kb.delete(long_id) == 1
        left = snapshot(kb)
        assert {m["doc_id"] for _, (_, m) in left.items()} == {"short", twin}
        assert kb.delete([twin]) == 1 and snapshot(kb) == before
    finally:
        kb.close()


def test_chunk_ids_keep_their_short_form_below_the_limit():
    from qembed.search.knowledge_base import chunk_ids

    assert chunk_ids("doc", 1) == ["doc"]
    assert chunk_ids("doc", 3) == ["doc#0", "doc#1", "doc#2"]
    assert chunk_ids("a" * 510, 10)[-1] == "a" * 510 + "#9"  # 512 characters: still the short form
    bounded = chunk_ids("a" * 510, 11)
    assert all(len(c) <= 512 and c.count("#") == 2 for c in bounded) and len(set(bounded)) == 11
