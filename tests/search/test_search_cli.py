"""``qembed index add|delete|info`` and ``qembed search``: formats, --json, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qembed.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process and return its exit code, stdout and stderr."""
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    txt = tmp_path / "faq.txt"
    txt.write_text("订单超过48小时未发货怎么办\n\n花呗还款失败有哪些原因\n如何关闭借呗自动扣款功能\n", encoding="utf-8")
    jsonl = tmp_path / "kb.jsonl"
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "refund", "text": "退款申请提交后多久到账", "topic": "refund"},
        {"id": "lost", "title": "物流", "text": "快递丢失怎么申请赔偿", "topic": "shipping"},
    ]), encoding="utf-8")
    csv = tmp_path / "kb.csv"
    csv.write_text("qid,question,topic\nc1,信用卡怎么提额,card\nc2,如何修改收货地址,shipping\n", encoding="utf-8")
    md = tmp_path / "guide.md"
    md.write_text("# 退货指南\n\n" + "收到商品七天内可以申请无理由退货。" * 40, encoding="utf-8")
    return {"txt": txt, "jsonl": jsonl, "csv": csv, "md": md}


@pytest.mark.slow
def test_index_add_search_info_delete(capsys, tmp_path, sources, tiny_model_path):
    index = tmp_path / "index"
    rc, out, _ = run(capsys, "index", "add", "-i", sources["txt"], "-i", sources["jsonl"], "--index", index,
                     "--model", tiny_model_path, "--json")
    assert rc == 0
    added = json.loads(out)
    assert added["documents"] == 5 and added["chunks"] == 5 and added["count"] == 5
    rc, out, _ = run(capsys, "index", "add", "--input", sources["csv"], "--text-column", "question", "--id-column", "qid",
                     "--index", index, "--json")  # the model is taken from the index's manifest
    assert rc == 0 and json.loads(out)["count"] == 7
    rc, out, _ = run(capsys, "index", "add", "--input", sources["md"], "--chunk-tokens", "48", "--chunk-overlap", "8",
                     "--index", index, "--json")
    assert rc == 0 and json.loads(out)["chunks"] > 3

    rc, out, _ = run(capsys, "search", "买了东西两天了怎么还不发快递?", "--index", index, "--top-k", "3", "--json")
    assert rc == 0
    res = json.loads(out)
    assert res["object"] == "list" and res["mode"] == "dense" and res["model"] == tiny_model_path.name
    assert len(res["data"]) == 3 and "results" not in res
    assert set(res["data"][0]) == {"id", "score", "text", "metadata"}
    rc, out, _ = run(capsys, "search", "快递", "--index", index, "--filter", "topic=shipping", "--json")
    hits = json.loads(out)["data"]
    assert {h["id"] for h in hits} == {"lost", "c2"}
    rc, out, _ = run(capsys, "search", "花呗还款失败", "--index", index, "--mode", "bm25", "--json")
    hits = json.loads(out)["data"]
    assert hits[0]["text"] == "花呗还款失败有哪些原因" and hits[0]["metadata"]["source"] == "faq.txt"
    rc, out, _ = run(capsys, "search", "退货", "--index", index, "--mode", "hybrid", "--unique-documents",
                     "--filter", f"source={sources['md'].name}", "--json")
    hits = json.loads(out)["data"]
    assert len(hits) == 1 and hits[0]["metadata"]["title"] == "退货指南"
    rc, out, _ = run(capsys, "search", "快递", "--index", index, "--top-k", "2")
    assert rc == 0 and out.startswith(" 1. ")

    rc, out, _ = run(capsys, "index", "info", "--index", index, "--json")
    info = json.loads(out)
    assert info["backend"] == "faiss" and info["dim"] == 64 and info["manifest"]["model"] == tiny_model_path.name
    rc, out, _ = run(capsys, "index", "delete", "refund", str(sources["md"]), "nope", "--index", index, "--json")
    assert rc == 0 and json.loads(out)["deleted"] == 2 and json.loads(out)["count"] == 6


def test_readding_changed_file_replaces_its_documents(capsys, tmp_path, tiny_model_path):
    src = tmp_path / "notes.txt"
    src.write_text("第一版说明\n", encoding="utf-8")
    index = tmp_path / "ix"
    run(capsys, "index", "add", "-i", src, "--per-file", "--index", index, "--model", tiny_model_path)
    src.write_text("第二版说明,内容已更新\n", encoding="utf-8")
    rc, out, err = run(capsys, "index", "add", src, "--per-file", "--index", index, "--json")  # old: FILE argument
    assert rc == 0 and "deprecated; use --input FILE" in err
    assert json.loads(out)["replaced"] == 1 and json.loads(out)["count"] == 1
    _, out, _ = run(capsys, "search", "说明", "--index", index, "--mode", "bm25", "--json")
    assert json.loads(out)["data"][0]["text"].startswith("第二版")


def test_milvus_lite_from_the_cli(capsys, tmp_path, sources, tiny_model_path):
    uri = tmp_path / "kb.db"
    rc, out, _ = run(capsys, "index", "add", "-i", sources["jsonl"], "--index", uri, "--model", tiny_model_path,
                     "--json")
    assert rc == 0 and json.loads(out)["count"] == 2
    rc, out, _ = run(capsys, "search", "快递", "--index", uri, "--filter", "topic=shipping", "--json")
    assert [h["id"] for h in json.loads(out)["data"]] == ["lost"]
    rc, out, _ = run(capsys, "index", "info", "--index", uri, "--json")
    assert json.loads(out)["backend"] == "milvus"


def test_bad_input_gives_clear_errors_and_keeps_data(capsys, tmp_path, sources, tiny_model_path):
    index = tmp_path / "index"
    run(capsys, "index", "add", "-i", sources["jsonl"], "--index", index, "--model", tiny_model_path)
    before = sorted(p.name for p in index.rglob("*"))

    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"id": "x1", "text": "好的"}\n{"id": "x2", "text": ""}\n', encoding="utf-8")
    cases = [
        (["search", "  ", "--index", index], "the query is empty"),
        (["search", "快递", "--index", tmp_path / "absent"], "index not found"),
        (["search", "快递", "--index", index, "--filter", "colour=red"], "unknown metadata field 'colour'"),
        (["search", "快递", "--index", index, "--filter", "colour"], "key=value"),
        (["search", "快递", "--index", index, "--mode", "fuzzy"], "mode must be one of"),
        (["index", "add", "-i", bad_jsonl, "--index", index], "has no text"),
        (["index", "add", "-i", sources["csv"], "--index", index], "no 'text' field"),
        (["index", "add", "-i", tmp_path / "missing.txt", "--index", index], "file not found"),
        (["index", "add", "--index", index], "--input"),
        (["index", "info", "--index", tmp_path / "absent"], "index not found"),
    ]
    for args, message in cases:
        rc, out, err = run(capsys, *args)
        assert rc == 2, args
        assert "error: " in err and message in err, (args, err)
        assert "Traceback" not in err
    assert sorted(p.name for p in index.rglob("*")) == before
    rc, out, _ = run(capsys, "index", "info", "--index", index, "--json")
    assert json.loads(out)["count"] == 2

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "CURRENT").write_text("gen-000001")
    (corrupt / "gen-000001").mkdir()
    (corrupt / "gen-000001" / "vectors.faiss").write_bytes(b"not faiss")
    rc, _, err = run(capsys, "search", "快递", "--index", corrupt, "--model", tiny_model_path)
    assert rc == 1 and "corrupt" in err  # a damaged index is a runtime failure, not bad input


def test_help_for_every_command(capsys):
    for args in (["index", "add"], ["index", "delete"], ["index", "info"], ["search"], ["eval", "retrieval"]):
        rc, out, _ = run(capsys, *args, "--help")
        assert rc == 0 and "--json" in out and "Usage" in out


def test_index_built_with_a_cached_hub_model_reopens_by_its_hub_id(tmp_path, monkeypatch, capsys,
                                                                   tiny_model_path):
    """The default model comes from the Hugging Face cache (a snapshot folder named by a hash): the
    index records the Hub id, and a later search without --model loads the same model by it."""
    import shutil

    from qembed.cli import main as cli
    from qembed.store import open_store

    repo = tmp_path / "hf" / "models--Qwen--Qwen3-Embedding-0.6B"
    shutil.copytree(tiny_model_path, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # read once at import
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("QEMBED_MODEL", raising=False)
    docs = tmp_path / "faq.txt"
    docs.write_text("花呗怎么还款\n快递几天到\n借呗能分期吗\n", encoding="utf-8")
    kb = str(tmp_path / "kb")
    assert cli(["index", "add", "--input", str(docs), "--index", kb, "--dtype", "float32"]) == 0
    store = open_store(kb, create=False)
    try:
        assert store.get_meta("model") == store.get_meta("model_source") == "Qwen/Qwen3-Embedding-0.6B"
    finally:
        store.close()
    capsys.readouterr()
    assert cli(["search", "花呗还款", "--index", kb, "--top-k", "1", "--dtype", "float32", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["model"] == "Qwen/Qwen3-Embedding-0.6B" and len(body["data"]) == 1
