"""The qembed vocabulary, enforced: every command of the Typer app, the REST schemas, the one error
path and the one ``--json`` envelope shared by the CLI and the server.

The table lives in ``qembed/commands/_common.py``; this file walks the real app
(``typer.main.get_command``), so a command added later is checked too.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from qembed.cli import app, main
from qembed.commands._common import want_progress

# --------------------------------------------------------------------------- the app's commands

#: Spellings the vocabulary retired; they may live on only as hidden aliases.
RETIRED = {"--k", "--pairs", "--data", "--train", "--threshold", "--precision", "--no-instructions",
           "--csv", "--sentence1-column", "--sentence2-column", "-t", "-p"}

#: Parameter (Python name) -> the one option name it has wherever it appears.
CANONICAL = {
    "input": "--input", "output": "--output", "model": "--model", "device": "--device", "dtype": "--dtype",
    "backend": "--backend", "instruction": "--instruction", "no_instruction": "--no-instruction",
    "text_column": "--text-column", "id_column": "--id-column", "label_column": "--label-column",
    "text1_column": "--text1-column", "text2_column": "--text2-column", "top_k": "--top-k",
    "clusters": "--clusters", "min_similarity": "--min-similarity", "min_probability": "--min-probability",
    "dimensions": "--dimensions", "progress": "--progress", "as_json": "--json", "api_key": "--api-key",
}
#: Short options mean one thing everywhere.
SHORT = {"-i": "--input", "-o": "--output", "-m": "--model", "-d": "--dimensions", "-k": "--top-k",
         "-h": "--help"}

#: Files other than the main input and the output, named by their role.
ROLE_FILES = {"--dev", "--corpus", "--queries", "--qrels", "--labels-file", "--report", "--groups",
              "--classifier", "--adapter", "--threshold-file", "--save-threshold", "--user-dict",
              "--from-embeddings", "--texts", "--save-model", "--guard", "--calibration"}

#: Commands that load their model with torch only (training recipes, the LoRA pair classifier): no --backend.
TORCH_ONLY = {"finetune classifier", "finetune embedding", "classify-pairs"}
#: Commands that read only a tokenizer: --model without --device/--dtype.
TOKENIZER_ONLY = {"data lengths"}


def _walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    sub = getattr(cmd, "commands", None)
    if sub:
        out = []
        for name, child in sorted(sub.items()):
            out.extend(_walk(child, (*path, name)))
        return out
    return [(" ".join(path), cmd)]


COMMANDS = _walk(typer.main.get_command(app))
NAMES = [name for name, _ in COMMANDS]


def _options(cmd: Any, *, visible: bool = True) -> dict[str, Any]:
    """Every option name (long and short, both halves of a flag pair) -> its parameter."""
    out: dict[str, Any] = {}
    for p in cmd.params:
        if p.param_type_name != "option" or (visible and getattr(p, "hidden", False)):
            continue
        for opt in (*p.opts, *p.secondary_opts):
            out[opt] = p
    return out


def _is_path(param: Any) -> bool:
    """Whether the parameter takes a file path (``Path`` or a list of them)."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if annotation is None:  # other Typer versions: Click's own type
        return getattr(getattr(param, "type", None), "name", "") == "path"
    return annotation is Path or "Path" in str(annotation)


def test_the_walk_finds_every_command():
    expected = {"embed", "info", "serve", "similarity", "classify zero-shot", "classify train",
                "classify predict", "dedup", "cluster", "eval clustering", "eval retrieval", "index add",
                "index delete", "index info", "search", "data lengths", "finetune classifier",
                "finetune embedding", "classify-pairs"}
    assert expected <= set(NAMES), sorted(expected - set(NAMES))


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_every_command_has_help_and_json(name, cmd, capsys):
    assert main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out and "Usage" in out
    assert "--json" in _options(cmd)
    assert cmd.help, f"{name} has no help text"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_no_visible_option_uses_a_retired_spelling(name, cmd):
    visible = set(_options(cmd))
    assert not visible & RETIRED, f"{name} shows {sorted(visible & RETIRED)}"
    for p in cmd.params:
        if p.param_type_name == "option" and not getattr(p, "hidden", False):
            assert p.help, f"{name}: {p.opts} has no help"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_same_thing_same_name(name, cmd):
    options = _options(cmd)
    for p in cmd.params:
        if p.param_type_name != "option" or getattr(p, "hidden", False):
            continue
        if p.name in CANONICAL:
            assert CANONICAL[p.name] in p.opts, f"{name}: {p.name} is spelled {p.opts}"
    for opt, canonical in SHORT.items():
        if opt in options:
            assert canonical in options[opt].opts, f"{name}: {opt} means {options[opt].opts}"
    for canonical_opt in CANONICAL.values():
        if canonical_opt in options:
            assert options[canonical_opt].name in CANONICAL and CANONICAL[options[canonical_opt].name] == canonical_opt


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_files_come_in_through_input_or_a_role_name(name, cmd):
    for p in cmd.params:
        if getattr(p, "hidden", False) or not _is_path(p):
            continue
        assert p.param_type_name == "option", f"{name}: a visible positional file argument {p.name}"
        names = set(p.opts)
        assert names & ({"--input", "--output"} | ROLE_FILES), f"{name}: file option {p.opts}"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_model_loading_commands_share_their_options(name, cmd):
    options = _options(cmd)
    if name in TOKENIZER_ONLY:
        assert "--model" in options and "--device" not in options
        return
    if "--device" not in options and "--model" not in options:
        return  # index delete/info: no model
    assert {"--model", "--device", "--dtype"} <= set(options), name
    if name not in TORCH_ONLY:
        assert "--backend" in options, f"{name} loads a model but has no --backend"


@pytest.mark.parametrize("name, cmd", COMMANDS, ids=NAMES)
def test_long_work_has_progress(name, cmd):
    options = _options(cmd)
    if "--input" in options and "--device" in options:
        assert "--progress" in options and "--no-progress" in options, f"{name} reads a file but has no --progress"
        assert options["--progress"].default is None  # the rule decides when not given


def test_the_progress_rule(capsys):
    assert want_progress(True, 1) is True
    assert want_progress(False, 10_000) is False
    # under pytest stderr is not a terminal: no bar by default, however long the work
    assert want_progress(None, 10_000, batch=8) is False


# --------------------------------------------------------------------------- REST schemas


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from qembed.config import Settings
    from qembed.server.app import create_app

    return create_app(Settings(model="unused-model")).openapi()


def _props(openapi: dict[str, Any], schema: str) -> dict[str, Any]:
    return openapi["components"]["schemas"][schema]["properties"]


REST_OPERATIONS = {  # request schema -> the CLI command of the same operation
    "SimilarityRequest": "similarity", "ClassifyRequest": "classify zero-shot", "DedupRequest": "dedup",
    "ClusterRequest": "cluster", "SearchRequest": "search", "EmbeddingRequest": "embed",
}
SHARED_FIELDS = {"top_k", "min_similarity", "min_probability", "instruction", "dimensions", "model", "clusters"}


def test_rest_fields_follow_the_vocabulary(openapi):
    schemas = openapi["components"]["schemas"]
    for name, schema in schemas.items():
        for field, spec in schema.get("properties", {}).items():
            if field in {"k", "threshold", "precision"}:
                assert spec.get("deprecated") is True, f"{name}.{field} is a retired name and not deprecated"
    assert "min_similarity" in _props(openapi, "SimilarityRequest")
    assert "min_similarity" in _props(openapi, "DedupRequest")
    assert "clusters" in _props(openapi, "ClusterRequest")
    assert "top_k" in _props(openapi, "SearchRequest") and "top_k" in _props(openapi, "ClassifyRequest")
    for schema in ("SimilarityRequest", "ClassifyRequest", "DedupRequest", "ClusterRequest", "EmbeddingRequest"):
        props = _props(openapi, schema)
        assert {"instruction", "dimensions", "model"} <= set(props), schema
    assert "model" in _props(openapi, "SearchRequest")


@pytest.mark.parametrize("schema, command", sorted(REST_OPERATIONS.items()))
def test_rest_and_cli_use_the_same_names(openapi, schema, command):
    cmd = dict(COMMANDS)[command]
    options = _options(cmd)
    for field, spec in _props(openapi, schema).items():
        if field in SHARED_FIELDS and not spec.get("deprecated"):
            assert "--" + field.replace("_", "-") in options, f"{schema}.{field} has no --{field} on {command}"


# --------------------------------------------------------------------------- the error path


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("argv, fragment", [
    (["embed", "--no-such-option", "x"], "No such option"),
    (["embed", "--dimensions", "many", "x"], "Invalid value"),
    (["search"], "Missing"),
    (["cluster", "--input"], "requires an argument"),
    (["embed"], "give texts as arguments or --input"),
    (["dedup", "--input", "missing-file.txt"], "file not found"),
])
def test_bad_input_and_usage_exit_2_with_error_line(capsys, argv, fragment):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and fragment in captured.err
    assert "Traceback" not in captured.err and "╭" not in captured.err and "Usage:" not in captured.err


def test_runtime_failure_exits_1(capsys, tmp_path: Path, monkeypatch):
    # a Hub id the machine cannot fetch is a runtime failure; a mistyped folder is bad input
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["embed", "--model", "qembed-tests/no-such-model", "hello"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "not available" in err and "Traceback" not in err
    assert main(["embed", "--model", str(tmp_path / "no-such-model"), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "does not exist" in err and "Traceback" not in err


def test_failing_endpoint_exits_1(capsys, monkeypatch):
    # the client retries with backoff before it gives up; the waits (15 s in all) are recorded, not slept
    from types import SimpleNamespace

    import qembed.models.remote as remote

    waits: list[float] = []
    monkeypatch.setattr(remote, "time", SimpleNamespace(sleep=waits.append))  # this module's waits only
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    assert main(["embed", "--model", url, "hello"]) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert len(waits) == 5 and waits == sorted(waits), waits  # it did retry, each wait longer


def test_corrupt_index_is_a_runtime_failure(capsys, tmp_path: Path, tiny_model_path):
    corrupt = tmp_path / "corrupt"
    (corrupt / "gen-000001").mkdir(parents=True)
    (corrupt / "CURRENT").write_text("gen-000001")
    (corrupt / "gen-000001" / "vectors.faiss").write_bytes(b"not faiss")
    assert main(["search", "x", "--index", str(corrupt), "--model", str(tiny_model_path)]) == 1
    err = capsys.readouterr().err
    assert "error: " in err and "corrupt" in err and "Traceback" not in err


# --------------------------------------------------------------------------- one envelope, CLI = REST


@pytest.fixture(scope="module")
def served_index(tmp_path_factory, tiny_model_path, tiny_encoder):
    """A knowledge base built by ``qembed index add`` and a server answering from it."""
    from qembed.server.testing import running_server

    folder = tmp_path_factory.mktemp("vocab")
    docs = folder / "faq.jsonl"
    docs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in [
        {"id": "ship", "text": "订单超过48小时未发货怎么办", "topic": "shipping"},
        {"id": "repay", "text": "花呗还款失败有哪些原因", "topic": "repayment"},
        {"id": "auto", "text": "如何关闭借呗自动扣款功能", "topic": "repayment"},
        {"id": "refund", "text": "退款申请提交后多久到账", "topic": "refund"},
    ]), encoding="utf-8")
    index = folder / "index"
    assert main(["index", "add", "--input", str(docs), "--index", str(index), "--model", str(tiny_model_path),
                 "--dtype", "float32"]) == 0
    with running_server(encoder=tiny_encoder, index=str(index)) as url:
        yield index, url


def _cli_json(capsys, *argv: str) -> dict[str, Any]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def _same_items(cli: list[dict[str, Any]], rest: list[dict[str, Any]], score_keys=("score",)) -> None:
    assert len(cli) == len(rest)
    for a, b in zip(cli, rest):
        assert set(a) == set(b)
        for key in a:
            if key in score_keys:
                assert a[key] == pytest.approx(b[key], abs=1e-4)
            else:
                assert a[key] == b[key], key


def test_search_cli_json_is_the_rest_body(capsys, served_index, tiny_model_path):
    index, url = served_index
    query = "买了东西两天了怎么还不发快递?"
    cli = _cli_json(capsys, "search", query, "--index", index, "--top-k", "3", "--dtype", "float32", "--json")
    rest = httpx.post(f"{url}/v1/search", json={"query": query, "top_k": 3}, timeout=60).json()
    assert {"object", "model", "mode", "data"} <= set(cli) and {"object", "model", "mode", "data"} <= set(rest)
    assert cli["object"] == rest["object"] == "list" and cli["mode"] == rest["mode"] == "dense"
    assert "results" not in cli
    assert len(cli["data"]) == 3
    _same_items(cli["data"], rest["data"])
    # filtered and BM25 searches agree too
    cli = _cli_json(capsys, "search", "还款", "--index", index, "--mode", "bm25", "--filter", "topic=repayment",
                    "--json")
    rest = httpx.post(f"{url}/v1/search", json={"query": "还款", "mode": "bm25",
                                                "filter": {"topic": "repayment"}}, timeout=60).json()
    assert cli["data"] and {d["metadata"]["topic"] for d in cli["data"]} == {"repayment"}
    _same_items(cli["data"], rest["data"])


def test_similarity_and_dedup_cli_json_are_the_rest_bodies(capsys, served_index, tiny_model_path, tmp_path):
    _, url = served_index
    model = ["-m", str(tiny_model_path), "--dtype", "float32"]
    cli = _cli_json(capsys, "similarity", "借呗能分期吗", "借呗可以分几期", "--min-similarity", "0.5", *model, "--json")
    rest = httpx.post(f"{url}/v1/similarity", json={"pairs": [["借呗能分期吗", "借呗可以分几期"]],
                                                    "min_similarity": 0.5}, timeout=60).json()
    assert cli["object"] == rest["object"] and cli["min_similarity"] == rest["min_similarity"] == 0.5
    assert set(cli) == set(rest) and "calibrated" not in cli  # a typed threshold is not a calibrated one
    _same_items(cli["data"], rest["data"])
    cli = _cli_json(capsys, "similarity", "借呗能分期吗", "借呗可以分几期", *model, "--json")
    rest = httpx.post(f"{url}/v1/similarity", json={"pairs": [["借呗能分期吗", "借呗可以分几期"]]},
                      timeout=60).json()
    assert set(cli) == set(rest) and cli["min_similarity"] is rest["min_similarity"] is None
    assert set(cli["data"][0]) == set(rest["data"][0]) == {"index", "score"}
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"sentence1": a, "sentence2": b}, ensure_ascii=False) + "\n"
                             for a, b in [("借呗能分期吗", "借呗可以分几期"), ("花呗怎么还", "如何归还花呗")]),
                     encoding="utf-8")
    cli = _cli_json(capsys, "similarity", "--input", pairs, "--min-similarity", "0.5", *model, "--json")
    rest = httpx.post(f"{url}/v1/similarity", json={"pairs": [["借呗能分期吗", "借呗可以分几期"],
                                                              ["花呗怎么还", "如何归还花呗"]],
                                                    "min_similarity": 0.5}, timeout=60).json()
    assert set(cli) == set(rest)
    _same_items(cli["data"], rest["data"])

    texts = ["How do I reset my password?", "How do I reset my password?", "Where is my parcel?",
             "where is my parcel?", "Stock markets fell."]
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    cli = _cli_json(capsys, "dedup", "--input", src, "--min-similarity", "0.95", *model, "--json")
    rest = httpx.post(f"{url}/v1/dedup", json={"input": texts, "min_similarity": 0.95, "return_texts": True},
                      timeout=60).json()
    assert cli["object"] == rest["object"] == "dedup.result"
    assert isinstance(cli["n_groups"], int) and cli["n_groups"] == len(cli["data"]) >= 1
    assert cli["n_groups"] == rest["n_groups"] and cli["keep"] == rest["keep"]
    assert [[m["index"] for m in g["members"]] for g in cli["data"]] == \
        [[m["index"] for m in g["members"]] for g in rest["data"]]
    assert [[m["text"] for m in g["members"]] for g in cli["data"]] == \
        [[m["text"] for m in g["members"]] for g in rest["data"]]


def test_classify_and_cluster_cli_json_are_the_rest_bodies(capsys, served_index, tiny_model_path, tmp_path):
    _, url = served_index
    model = ["-m", str(tiny_model_path), "--dtype", "float32"]
    texts = ["花呗还款失败", "快递一直没有到", "借呗怎么提前还款", "包裹显示已签收但没收到", "退款多久到账",
             "修改收货地址"]
    labels = ["repayment: 还款", "shipping: 快递"]
    cli = _cli_json(capsys, "classify", "zero-shot", *texts, "--label", labels[0], "--label", labels[1],
                    "--top-k", "2", *model, "--json")
    rest = httpx.post(f"{url}/v1/classify", json={"input": texts, "labels": labels, "top_k": 2}, timeout=60).json()
    assert cli["object"] == rest["object"] and cli["labels"] == rest["labels"]
    assert [d["label"] for d in cli["data"]] == [d["label"] for d in rest["data"]]
    assert [d["index"] for d in cli["data"]] == list(range(len(texts)))
    assert [d["score"] for d in cli["data"]] == pytest.approx([d["score"] for d in rest["data"]], abs=1e-4)

    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    cli = _cli_json(capsys, "cluster", "--input", src, "--clusters", "2", "--seed", "1", *model, "--json")
    rest = httpx.post(f"{url}/v1/cluster", json={"input": texts, "clusters": 2, "seed": 1}, timeout=60).json()
    assert cli["object"] == rest["object"] == "cluster.result" and "texts" not in cli
    assert cli["n_clusters"] == rest["n_clusters"] == 2 and cli["params"] == rest["params"]
    _same_items(cli["data"], rest["data"], score_keys=("distance",))
    assert [c["keywords"] for c in cli["clusters"]] == [c["keywords"] for c in rest["clusters"]]
