"""``qembed rerank`` through the real entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qembed.cli import main

QUERY = "how do I reset my password?"
DOCS = ["Click 'Forgot password' on the sign-in page.", "Our shop opens at 9.", "重置密码请点击忘记密码", "ok"]


def _run(capsys, *args):
    code = main(["rerank", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_is_the_rest_body_sorted_by_score(reranker_path, reranker, capsys):
    code, out, _ = _run(capsys, QUERY, *DOCS, "--model", str(reranker_path), "--dtype", "float32", "--json")
    assert code == 0
    body = json.loads(out)
    assert body["query"] == QUERY and body["model"] == reranker_path.name
    expected = reranker.score([(QUERY, d) for d in DOCS])
    assert [r["index"] for r in body["results"]] == list(np.argsort(-expected, kind="stable"))
    scores = [r["relevance_score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, np.sort(expected)[::-1], atol=1e-5)
    assert all(r["document"] == {"text": DOCS[r["index"]]} for r in body["results"])
    tokens = sum(len(x) for x in reranker.tokenize(QUERY, DOCS))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_documents_from_a_file_top_n_and_instruction(reranker_path, reranker, tmp_path, suffix, capsys):
    path = tmp_path / f"docs{suffix}"
    if suffix == ".txt":
        path.write_text("\n".join(DOCS) + "\n", encoding="utf-8")
        extra = []
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps({"body": d}, ensure_ascii=False) + "\n" for d in DOCS), encoding="utf-8")
        extra = ["--text-column", "body"]
    else:
        path.write_text("text\n" + "".join(f'"{d}"\n' for d in DOCS), encoding="utf-8")
        extra = []
    instruction = "Find the help article"
    code, out, _ = _run(capsys, QUERY, "--input", str(path), *extra, "-m", str(reranker_path), "--dtype",
                        "float32", "--top-n", "2", "--instruction", instruction, "--json")
    assert code == 0
    results = json.loads(out)["results"]
    expected = reranker.rerank(QUERY, DOCS, instruction=instruction, top_n=2)
    assert [r["index"] for r in results] == [r.index for r in expected]
    np.testing.assert_allclose([r["relevance_score"] for r in results], [r.score for r in expected], atol=1e-5)


def test_no_instruction_and_plain_output(reranker_path, reranker, capsys):
    code, out, _ = _run(capsys, QUERY, *DOCS, "-m", str(reranker_path), "--dtype", "float32", "--no-instruction")
    assert code == 0
    lines = out.strip().splitlines()
    best = reranker.rerank(QUERY, DOCS, instruction="")[0]
    assert len(lines) == len(DOCS)
    assert lines[0].startswith(f"{best.score:.4f}  [{best.index}]") and DOCS[best.index] in lines[0]


@pytest.mark.parametrize("args, message, code", [
    ([QUERY], "give documents as arguments or --input", 2),
    ([QUERY, "a", "--top-n", "0"], "--top-n must be at least 1", 2),
    ([QUERY, "a", "--instruction", "x", "--no-instruction"], "not both", 2),
    (["", "a"], "query is empty", 2),
    ([QUERY, "a", "--backend", "onnx"], "torch", 2),
    ([QUERY, "--input", "missing-file.txt"], "missing-file.txt", 2),
])
def test_bad_input_is_an_error_line_and_exit_2(reranker_path, args, message, code, capsys):
    rc, out, err = _run(capsys, *args, "-m", str(reranker_path), "--dtype", "float32")
    assert rc == code
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err
    assert "Traceback" not in err and out == ""


def test_a_missing_model_folder_exits_2(tmp_path, capsys):
    """A mistyped folder is bad input (exit 2); a Hub id that cannot be fetched exits 1 (below)."""
    rc, _, err = _run(capsys, QUERY, "a", "-m", str(tmp_path / "nowhere"))
    assert rc == 2 and "error: " in err and "does not exist" in err


def test_remote_reranker_url(reranker_path, tiny_encoder, reranker, capsys):
    from qembed.server.testing import running_server

    with running_server(encoder=tiny_encoder, reranker=str(reranker_path), engine="thread", compile=False) as url:
        code, out, _ = _run(capsys, QUERY, *DOCS, "-m", url + "/v1", "--json", "--top-n", "2")
    assert code == 0
    body = json.loads(out)
    expected = reranker.rerank(QUERY, DOCS, top_n=2)
    assert body["model"] == reranker_path.name
    assert [r["index"] for r in body["results"]] == [r.index for r in expected]


def test_an_embedding_folder_is_refused_as_a_reranker(tiny_model_path, capsys):
    code = main(["rerank", "query", "a document", "another one", "--model", str(tiny_model_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1
    assert "is an embedding model" in err and "Qwen3-Reranker" in err and "Traceback" not in err


def test_missing_reranker_names_the_reranker_option(tmp_path, monkeypatch, capsys, tiny_model_path):
    from qembed.cli import main as cli

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("QEMBED_RERANKER", raising=False)
    assert cli(["index", "add", "--index", str(tmp_path / "kb"), "-m", str(tiny_model_path), "--dtype",
                "float32", "-i", str(_docs(tmp_path))]) == 0
    capsys.readouterr()
    code = cli(["search", "hello", "--index", str(tmp_path / "kb"), "--rerank"])
    err = capsys.readouterr().err
    assert code == 1 and "Qwen/Qwen3-Reranker-0.6B" in err
    assert "--reranker DIR" in err and "--model DIR" not in err


def _docs(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("花呗怎么还款\n快递几天到\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("fixture", ["seq_cls_path", "cross_encoder_path"])
def test_a_reranker_folder_is_refused_as_an_embedding_model(fixture, request, capsys):
    path = request.getfixturevalue(fixture)
    code = main(["embed", "hello", "--model", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1
    assert "not an embedding model" in err and "qembed rerank" in err
