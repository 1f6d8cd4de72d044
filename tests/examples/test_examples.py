"""Every script in ``examples/`` runs as a user would run it, with all-MiniLM-L6-v2, and says the right thing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TESTED = {"embed", "similarity", "search", "cluster_topics", "classify_zero_shot", "dedup", "serve_openai",
          "finetune_small"}


def run(name: str, *args: str, model: Path | None, env: dict[str, str] | None = None) -> str:
    """Run ``examples/<name>.py`` in a fresh interpreter; return its stdout (fail with its stderr)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    cmd = [sys.executable, str(EXAMPLES / f"{name}.py"), *args]
    if model is not None:
        cmd += ["--model", str(model)]
    proc = subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_every_example_is_tested() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} == TESTED


def test_embed_takes_the_model_from_the_environment(minilm_path: Path) -> None:
    out = run("embed", model=None, env={"QEMBED_MODEL": str(minilm_path)})
    assert "4 documents -> vectors of size 384" in out
    assert "'how do I reset my password' -> 'Forgot your password?" in out
    assert "'my parcel has not arrived yet' -> 'Deliveries usually take" in out
    assert "Matryoshka: 128 dimensions, row norms 1.000..1.000" in out


def test_similarity_calibrates_on_train_and_separates_dev(minilm_path: Path) -> None:
    out = run("similarity", model=minilm_path)
    accuracy = float(re.search(r"dev accuracy ([0-9.]+)", out).group(1))
    assert accuracy >= 0.9, out
    verdicts = {pair: verdict for verdict, pair in
                re.findall(r"^(same|different)\s+-?[0-9.]+\s+(.+)$", out, flags=re.MULTILINE)}
    assert len(verdicts) == 12, out
    assert verdicts["I forgot my password | How can I recover access after forgetting my password?"] == "same"
    assert verdicts["I forgot my password | Do you deliver to other countries?"] == "different"


def test_search_dense_hybrid_and_filter(minilm_path: Path, tmp_path: Path) -> None:
    out = run("search", "--index", str(tmp_path / "kb"), model=minilm_path)
    sections = {block.split("\n", 1)[0].split(":")[0]: block for block in out.split("\n\n")}
    assert sections["dense"].splitlines()[1].split()[1] == "shipping-delay"
    assert "shipping-delay" in sections["hybrid"] and len(sections["hybrid"].splitlines()) == 4
    assert len(sections["bm25"].splitlines()) == 4
    filtered = [line.split()[1] for line in sections["dense, filter topic=refunds"].splitlines()[1:]]
    assert filtered and all(doc_id.startswith("refund-") for doc_id in filtered)
    assert (tmp_path / "kb" / "CURRENT").is_file()  # a FAISS folder was written


def test_cluster_topics_finds_the_four_topics(minilm_path: Path, tmp_path: Path) -> None:
    from sklearn.metrics import v_measure_score

    report = tmp_path / "report.html"
    out = run("cluster_topics", "--report", str(report), model=minilm_path)
    messages = (EXAMPLES / "data" / "messages.txt").read_text(encoding="utf-8").splitlines()
    topic = {text: i // 6 for i, text in enumerate(messages)}  # the file holds 4 topics x 6 messages
    found: dict[str, int] = {}
    cluster = -1
    for line in out.splitlines():
        if line.startswith("#"):
            cluster = int(line[1:].split()[0])
        elif line.startswith("  - "):
            found[line[4:]] = cluster
    assert set(found) == set(messages)
    assert v_measure_score([topic[t] for t in messages], [found[t] for t in messages]) >= 0.9, out
    assert report.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")


def test_classify_zero_shot_routes_each_ticket(minilm_path: Path) -> None:
    out = run("classify_zero_shot", model=minilm_path)
    routed = {line.rsplit(")  ", 1)[1]: line.split()[0] for line in out.splitlines()}
    assert routed == {"I was charged twice for the same order": "billing",
                      "The courier left my parcel at the wrong house": "shipping",
                      "I cannot sign in since I changed my password": "login"}


def test_dedup_groups_the_password_questions(minilm_path: Path) -> None:
    out = run("dedup", model=minilm_path)
    group = out.split("keep:    How do I reset my password?\n", 1)[1].split("\n\n", 1)[0]
    assert "how do I reset my password" in group and "How can I reset my password?" in group
    kept = out.split("kept ", 1)[1].splitlines()[1:]
    kept = [line.strip() for line in kept]
    assert "How do I reset my password?" in kept and "how do I reset my password" not in kept
    assert "How do I delete my account?" in kept and "Where is my parcel?" in kept


@pytest.mark.slow
def test_serve_openai_gives_the_in_process_vectors(minilm_path: Path) -> None:
    out = run("serve_openai", model=minilm_path)
    assert "openai client: 2 vectors of size 384" in out
    cosines = [float(x) for x in re.findall(r"lowest cosine to the [a-z' ]+ vectors (-?[0-9.]+)", out)]
    assert len(cosines) == 2 and min(cosines) >= 0.999, out


@pytest.mark.slow
def test_finetune_small_saves_a_model_that_loads(minilm_path: Path, tmp_path: Path) -> None:
    output = tmp_path / "tuned"
    out = run("finetune_small", "--output", str(output), model=minilm_path)
    assert re.search(r"^before: dev Spearman -?[0-9.]+, calibrated accuracy [0-9.]+$", out, flags=re.MULTILINE), out
    assert re.search(r"^after : dev Spearman -?[0-9.]+, calibrated accuracy [0-9.]+$", out, flags=re.MULTILINE), out
    assert f"saved (merged) to {output}" in out
    metrics = json.loads((output / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["saved"] == "merged" and metrics["after"]["spearman"] is not None
    assert re.search(r"tuned model: cosine -?[0-9.]+ for a paraphrase pair", out)
