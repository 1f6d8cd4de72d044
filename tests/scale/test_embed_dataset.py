"""``qembed embed --ray`` / ``qembed.embed_dataset`` on a local Ray runtime (2 CPUs): the same
vectors as single-process embedding, ids and order kept across files and formats, resume after the
run is killed, bulk load into FAISS and Milvus Lite then search, and bad input refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from qembed.cli import main

from .conftest import manifest, read_dataset

pytestmark = pytest.mark.slow

INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_run_equals_single_process_and_keeps_ids_and_order(ray_runtime, mixed_corpus, tiny_model_path,
                                                                tiny_encoder, tmp_path, capsys):
    folder, texts, ids = mixed_corpus
    out = tmp_path / "vectors"
    code, stdout, err = run_cli(capsys, "embed", "--ray", "local", "-i", str(folder), "-o", str(out),
                                "-m", str(tiny_model_path), "--dtype", "float32", "--concurrency", "2",
                                "--shard-rows", "16", "--no-progress", "--json")
    assert code == 0, err
    summary = json.loads(stdout)  # stdout holds the JSON summary alone
    assert summary["object"] == "embedding_dataset"
    assert summary["rows"] == summary["embedded"] == len(texts) == 114
    assert summary["workers"] == 2 and summary["dim"] == tiny_encoder.dim
    assert summary["rows_per_second"] > 0 and summary["input_files"] == 3
    # what the run does shows on stderr from the start, in order, ending with the rows done
    steps = ["using the Ray runtime", "counting the rows of 3 file(s)", "114 of 114 row(s) to embed",
             "first rows embedded after", "114/114 rows done (100%)"]
    at = [err.find(step) for step in steps]
    assert -1 not in at and at == sorted(at), err

    index, got_ids, vectors = read_dataset(out)
    assert index.tolist() == list(range(len(texts)))  # every row once, in input order
    assert got_ids == ids  # a.jsonl, b.csv, c.parquet: files in path order, rows in file order
    assert vectors.shape == (len(texts), tiny_encoder.dim)
    expected = tiny_encoder.encode(texts)
    assert cosines(vectors, expected).min() >= 0.9999
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)

    meta = manifest(out)
    assert meta["status"] == "complete" and meta["model"] == tiny_encoder.name
    assert meta["dim"] == tiny_encoder.dim and meta["normalized"] is True and meta["instruction"] is None
    assert meta["id_column"] == "id" and meta["rows"] == len(texts)
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert parts == meta["parts"] and len(parts) >= 8  # 16-row parts, cut at file ends too
    import pyarrow as pa
    import pyarrow.parquet as pq

    facts = json.loads(pq.read_schema(out / parts[0]).metadata[b"qembed"])
    assert facts["model"] == tiny_encoder.name and facts["dim"] == tiny_encoder.dim
    kind = pq.read_schema(out / parts[0]).field("embedding").type
    assert pa.types.is_list(kind) and kind.value_type == pa.float32()

    # the same folder again without --resume is refused; with --resume nothing is left to embed
    code, _, err = run_cli(capsys, "embed", "--ray", "local", "-i", str(folder), "-o", str(out),
                           "-m", str(tiny_model_path))
    assert code == 2 and "--resume" in err
    code, stdout, err = run_cli(capsys, "embed", "--ray", "local", "-i", str(folder), "-o", str(out),
                                "-m", str(tiny_model_path), "--dtype", "float32", "--shard-rows", "16",
                                "--resume", "--json")
    assert code == 0, err
    again = json.loads(stdout)
    assert again["embedded"] == 0 and again["resumed"] == len(texts)
    # resuming with other settings would mix two kinds of vectors
    code, _, err = run_cli(capsys, "embed", "--ray", "local", "-i", str(folder), "-o", str(out),
                           "-m", str(tiny_model_path), "--shard-rows", "16", "--dimensions", "32", "--resume")
    assert code == 2 and "dimensions" in err


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group the run started in (its driver and the Ray processes it spawned)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


def test_resume_after_the_run_is_killed(ray_runtime, tiny_model_path, tiny_encoder, tmp_path):
    import random

    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    texts = []
    for name, n in (("part1.jsonl", 500), ("part2.jsonl", 400)):
        with (corpus / name).open("w", encoding="utf-8") as f:
            for i in range(n):
                t = " ".join(rng.choice(words) for _ in range(rng.randint(1, 10)))
                f.write(json.dumps({"_id": f"{name}:{i}", "text": t}) + "\n")
                texts.append(t)
    out = tmp_path / "vectors"
    args = ["embed", "--ray", "local", "-i", str(corpus), "-o", str(out), "-m", str(tiny_model_path),
            "--dtype", "float32", "--shard-rows", "8", "--dimensions", "32", "--instruction", INSTRUCTION]
    env = dict(os.environ, QEMBED_COMPILE="0", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "qembed.cli", *args], env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_dir() and any(p.name.startswith("part-") for p in out.iterdir()):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
    finally:
        _kill_group(proc)
    written = {p.name for p in out.glob("part-*.parquet")}
    assert 0 < len(written) < 900 // 8 + 2
    assert manifest(out)["status"] == "running"

    from qembed import embed_dataset

    result = embed_dataset(str(tiny_model_path), corpus, out, dimensions=32, instruction=INSTRUCTION,
                           shard_rows=8, dtype="float32", resume=True)
    assert result.output == str(out)
    summary = result.summary
    assert summary["rows"] == 900
    assert 0 < summary["resumed"] < 900 and summary["embedded"] == 900 - summary["resumed"]
    assert written <= {p.name for p in out.glob("part-*.parquet")}  # what was there is kept
    assert not list(out.glob(".tmp-*"))

    index, ids, vectors = read_dataset(out)
    assert index.tolist() == list(range(900))  # no duplicate, none missing
    assert ids == [f"part1.jsonl:{i}" for i in range(500)] + [f"part2.jsonl:{i}" for i in range(400)]
    expected = tiny_encoder.encode(texts, instruction=INSTRUCTION, dimensions=32)
    assert vectors.shape == (900, 32)
    assert cosines(vectors, expected).min() >= 0.9999
    meta = manifest(out)
    assert meta["status"] == "complete" and meta["id_column"] == "_id"
    assert meta["instruction"] == INSTRUCTION and meta["dimensions"] == 32 and meta["dim"] == 32


def test_minilm_txt_and_jsonl_then_bulk_load_and_search(ray_runtime, minilm_path, tmp_path, capsys):
    corpus = tmp_path / "notes"
    corpus.mkdir()
    lines = ["The cat sleeps on the warm windowsill.", "", "Stock markets fell sharply on Monday.",
             "How to bake sourdough bread at home.", "The striker scored twice in the final."]
    (corpus / "a.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = [{"text": "A kitten is napping in the sun.", "topic": "pets"},
               {"text": "Interest rates rise again, says the central bank.", "topic": "finance"}]
    (corpus / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    texts = [t for t in lines if t] + [r["text"] for r in records]

    from qembed import embed_dataset

    out = tmp_path / "vectors"
    result = embed_dataset(str(minilm_path), str(corpus), str(out), dtype="float32", shard_rows=3)
    assert result.summary["rows"] == len(texts) == 6
    index, ids, vectors = read_dataset(out)
    assert ids is None and index.tolist() == list(range(6))  # a .txt has no ids

    # single-process qembed embed on the same texts
    single = tmp_path / "single.jsonl"
    (tmp_path / "all.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "embed", "-i", str(tmp_path / "all.txt"), "-o", str(single),
                           "-m", str(minilm_path), "--dtype", "float32")
    assert code == 0, err
    rows = [json.loads(line) for line in single.read_text(encoding="utf-8").splitlines()]
    assert cosines(vectors, np.array([r["embedding"] for r in rows], dtype=np.float32)).min() >= 0.9999

    for index_uri in (str(tmp_path / "kb"), str(tmp_path / "kb.db")):
        code, stdout, err = run_cli(capsys, "index", "add", "--from-embeddings", str(out), "--index", index_uri,
                                    "--texts", str(corpus), "--json")
        assert code == 0, err
        loaded = json.loads(stdout)
        assert loaded["rows"] == 6 and loaded["count"] == 6 and loaded["dim"] == 384
        code, stdout, err = run_cli(capsys, "search", "a cat is sleeping", "--index", index_uri, "--top-k", "2",
                                    "--json")
        assert code == 0, err
        hits = json.loads(stdout)["data"]
        assert {h["text"] for h in hits} == {"The cat sleeps on the warm windowsill.",
                                              "A kitten is napping in the sun."}
        kitten = next(h for h in hits if h["text"].startswith("A kitten"))
        assert kitten["metadata"]["topic"] == "pets" and kitten["metadata"]["source"] == "b.jsonl"
        assert kitten["id"] == "4"  # no ids in the input: the row's index
        # loading the same vectors again replaces them, it does not add copies
        code, stdout, err = run_cli(capsys, "index", "add", "--from-embeddings", str(out), "--index", index_uri,
                                    "--json")
        assert code == 0, err
        assert json.loads(stdout)["replaced"] == 6 and json.loads(stdout)["count"] == 6


def test_bad_input_is_refused_before_anything_is_written(ray_runtime, tiny_model_path, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jsonl").write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text"}) + "\n",
                                 encoding="utf-8")
    out = tmp_path / "out"
    base = ["embed", "--ray", "local", "-m", str(tiny_model_path), "-o", str(out)]
    code, _, err = run_cli(capsys, *base, "-i", str(bad))
    assert code == 2 and "record 2 lacks column 'text'" in err and "Traceback" not in err
    assert not out.exists()

    code, _, err = run_cli(capsys, *base, "-i", str(bad), "--text-column", "body")
    assert code == 2 and "record 1 lacks column 'body'" in err

    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    code, _, err = run_cli(capsys, *base, "-i", str(empty))
    assert code == 2 and "contains no texts" in err and not out.exists()

    (tmp_path / "ids.jsonl").write_text(json.dumps({"text": "x", "key": "k1"}) + "\n" + json.dumps({"text": "y"}) + "\n",
                                        encoding="utf-8")
    code, _, err = run_cli(capsys, *base, "-i", str(tmp_path / "ids.jsonl"), "--id-column", "key")
    assert code == 2 and "lacks the id column 'key'" in err

    code, _, err = run_cli(capsys, *base, "-i", str(tmp_path / "nowhere"))
    assert code == 2 and "not found" in err
    code, _, err = run_cli(capsys, "embed", "--ray", "local", "some text", "-o", str(out))
    assert code == 2 and "--input" in err
    code, _, err = run_cli(capsys, *base, "-i", str(bad), "--concurrency", "0")
    assert code == 2 and "concurrency" in err


def _descendants_named(word: str) -> list[int]:
    """PIDs of this process' descendants whose command line holds ``word`` (Linux /proc)."""
    parent: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd[int(entry)] = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except (OSError, IndexError, ValueError):
            continue
    mine = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                changed = True
    return [pid for pid in mine if word in cmd.get(pid, "")]


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(ray_runtime, tiny_model_path, tmp_path):
    import threading

    corpus = tmp_path / "lines.txt"
    corpus.write_text("".join(f"line number {i} of the corpus\n" for i in range(1200)), encoding="utf-8")
    out = tmp_path / "vectors"
    box: dict = {}

    def run() -> None:
        from qembed import embed_dataset

        try:
            box["result"] = embed_dataset(str(tiny_model_path), corpus, out, shard_rows=4, dtype="float32")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 480
    while thread.is_alive() and time.monotonic() < deadline:
        if out.is_dir() and any(p.name.startswith("part-") for p in out.iterdir()):
            break
        time.sleep(0.02)
    victims = _descendants_named("MapWorker")
    assert victims and thread.is_alive()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=480)
    assert "error" not in box, box.get("error")
    assert box["result"].summary["rows"] == 1200
    index, _, vectors = read_dataset(out)
    assert index.tolist() == list(range(1200)) and vectors.shape == (1200, 64)
