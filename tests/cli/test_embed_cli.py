"""`qembed embed` and `qembed info` through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from qembed.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qembed.cli", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_embed_json(tiny_model_path, tiny_encoder, capsys):
    code = main(["embed", "--model", str(tiny_model_path), "--dtype", "float32", "--json",
                 "--dimensions", "32", "怎么还花呗", "如何归还蚂蚁花呗"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    # the body of POST /v1/embeddings
    assert out["object"] == "list" and out["model"] == tiny_model_path.name
    assert [d["index"] for d in out["data"]] == [0, 1] and {d["object"] for d in out["data"]} == {"embedding"}
    assert all(len(d["embedding"]) == 32 for d in out["data"])
    expected = tiny_encoder.encode(["怎么还花呗", "如何归还蚂蚁花呗"], dimensions=32)
    np.testing.assert_allclose(np.array([d["embedding"] for d in out["data"]]), expected, atol=1e-5)


def test_embed_with_instruction(tiny_model_path, tiny_encoder, capsys):
    assert main(["embed", "-m", str(tiny_model_path), "--dtype", "float32", "--json",
                 "--instruction", "Retrieve semantically similar text", "借呗能分期吗"]) == 0
    vec = np.array(json.loads(capsys.readouterr().out)["data"][0]["embedding"])
    expected = tiny_encoder.encode(["借呗能分期吗"], instruction="Retrieve semantically similar text")[0]
    np.testing.assert_allclose(vec, expected, atol=1e-5)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv"])
def test_embed_file_to_npy_and_jsonl(tmp_path, tiny_model_path, tiny_encoder, suffix, capsys):
    texts = ["怎么还花呗", "借呗能分期吗", "hello, world"]
    src = tmp_path / f"in{suffix}"
    if suffix == ".txt":
        src.write_text("\n".join(texts) + "\n\n", encoding="utf-8")
        extra = []
    elif suffix == ".jsonl":
        src.write_text("\n".join(json.dumps({"text": t, "id": i}) for i, t in enumerate(texts)), encoding="utf-8")
        extra = []
    else:
        src.write_text("id,body\n" + "\n".join(f'{i},"{t}"' for i, t in enumerate(texts)), encoding="utf-8")
        extra = ["--text-column", "body"]
    npy = tmp_path / "out.npy"
    assert main(["embed", "-m", str(tiny_model_path), "--dtype", "float32", "--input", str(src),
                 "--output", str(npy), "--json", *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["count"] == 3 and summary["output"] == str(npy) and summary["dimensions"] == 64
    np.testing.assert_allclose(np.load(npy), tiny_encoder.encode(texts), atol=1e-5)
    jsonl = tmp_path / "out.jsonl"
    assert main(["embed", "-m", str(tiny_model_path), "--dtype", "float32", "--input", str(src),
                 "--output", str(jsonl), *extra]) == 0
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts and len(rows[0]["embedding"]) == 64


def test_info_json(tiny_model_path, capsys):
    assert main(["info", "--model", str(tiny_model_path), "--dtype", "float32", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dim"] == 64 and info["pooling"] == "lasttoken" and info["supports_instructions"]
    assert info["max_input_tokens"] == 8192 and info["device"] == "cpu" and info["dtype"] == "float32"


@pytest.mark.parametrize("args, message", [
    (["embed", "--model", "./missing-model", "x"], "does not exist"),
    (["embed"], "give texts as arguments or --input"),
    (["embed", "--input", "nope.txt"], "file not found"),
    (["embed", "x", "--output", "v.bin"], ".npy or .jsonl"),
])
def test_cli_errors_are_clean(args, message):
    result = run_cli(*args)
    assert result.returncode == 2  # all bad input, a mistyped model folder included
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_missing_model_folder_is_refused_before_torch_is_imported():
    code = ("import sys; from qembed.cli import main; "
            "rc = main(['embed', '--model', './missing-model', 'x']); print(rc, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert "does not exist" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_bad_dimensions_clean(tiny_model_path, capsys):
    # in this process (the model loads before its size is known); the clean exit of a real process
    # is test_cli_errors_are_clean's
    assert main(["embed", "-m", str(tiny_model_path), "--dimensions", "8", "x"]) == 2
    err = capsys.readouterr().err
    assert "dimensions must be between 32 and 64" in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error: ")


def test_no_instruction_and_progress(tiny_model_path, tiny_encoder, capsys):
    """--no-instruction is the same as no --instruction for embed; --progress draws on stderr only."""
    assert main(["embed", "-m", str(tiny_model_path), "--dtype", "float32", "--json", "--no-instruction",
                 "--progress", "借呗能分期吗"]) == 0
    captured = capsys.readouterr()
    vec = np.array(json.loads(captured.out)["data"][0]["embedding"])
    np.testing.assert_allclose(vec, tiny_encoder.encode(["借呗能分期吗"])[0], atol=1e-5)
    assert "embedding" in captured.err  # the progress bar's label
    assert main(["embed", "-m", str(tiny_model_path), "--instruction", "x", "--no-instruction", "y"]) == 2
    assert "not both" in capsys.readouterr().err


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and "embed" in result.stdout and "info" in result.stdout
    assert run_cli("embed", "--help").returncode == 0


@pytest.mark.slow
def test_json_stdout_holds_only_json_on_a_first_openvino_run(tiny_model_path, tmp_path):
    """nncf prints its statistics table on stdout while it compresses the weights (first run only):
    under --json that table, and every other write to stdout, goes to stderr."""
    env = {**__import__("os").environ, "QEMBED_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "qembed.cli", "embed", "hello", "--backend", "openvino",
                           "--model", str(tiny_model_path), "--json"], capture_output=True, text=True,
                          timeout=600, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)  # the whole of stdout is one JSON document
    assert body["object"] == "list" and len(body["data"]) == 1
    assert "nncf" in proc.stderr  # the export did run, and its table went to stderr


def test_qembed_model_is_the_default_of_load_encoder_and_data_lengths(tiny_model_path, monkeypatch, capsys):
    import qembed

    monkeypatch.setenv("QEMBED_MODEL", str(tiny_model_path))
    enc = qembed.load_encoder(dtype="float32")
    assert enc.path == tiny_model_path
    assert main(["data", "lengths", "--input", str(_afqmc_sample(tiny_model_path)), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body  # the tokenizer of $QEMBED_MODEL was found offline (the built-in Hub id is not cached)


def _afqmc_sample(tiny_model_path):
    path = tiny_model_path.parent / "afqmc-sample.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": "1"}, ensure_ascii=False) + "\n"
                                for a, b in [("借呗能分期吗", "借呗支持分几期还款"), ("怎么还花呗", "如何归还蚂蚁花呗")]),
                        encoding="utf-8")
    return path
