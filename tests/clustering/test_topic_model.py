"""Topic models that last, with all-MiniLM-L6-v2: fit, save, load in a new process, place held-back
texts, fold texts in with stable ids, a new topic's texts as outliers then as a proposed topic,
the diff between runs, and every refusal of a damaged or foreign folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import v_measure_score

from qembed.clustering.topic_model import (
    FORMAT,
    TopicModel,
    TopicModelMismatchError,
    diff,
    held_out_distances,
)
from qembed.errors import InputError, NotFoundError

from .conftest import HELD_BACK, NEW_TOPIC, TOPICS, flatten

#: V-measure of the saved model's placements may trail re-clustering everything by this much.
MARGIN = 0.1


@pytest.fixture(scope="module")
def fitted(minilm_encoder, topic_vectors, topic_texts, tmp_path_factory) -> tuple[TopicModel, Path]:
    """The four topics fitted (K-Means, k=4) and saved once for the module."""
    texts, _ = topic_texts
    tm = TopicModel.fit(minilm_encoder, texts, embeddings=topic_vectors, clusters=4, seed=0)
    path = tm.save(tmp_path_factory.mktemp("topics") / "model")
    return tm, path


@pytest.fixture(scope="module")
def held_back(minilm_encoder):
    texts, gold = flatten(HELD_BACK)
    return texts, gold, minilm_encoder.encode(texts)


def test_fit_keeps_what_placing_needs(fitted, topic_texts, minilm_encoder):
    tm, path = fitted
    texts, gold = topic_texts
    assert sorted(t.id for t in tm.topics) == [0, 1, 2, 3] and sum(t.size for t in tm.topics) == 32
    assert tm.model == minilm_encoder.name  # the encoder's name, recorded
    assert tm.dim == 384 and tm.instruction == "Retrieve semantically similar text"
    by_topic = {}
    for t in tm.topics:
        members = {g for text, g in zip(texts, gold) if text in t.representatives}
        assert len(members) == 1, t.representatives  # representatives come from one topic
        by_topic[members.pop()] = t
        assert len(t.representatives) == 5 and 1 <= len(t.summary) <= 3 and t.keywords and t.label
        assert 0.0 < t.threshold < 1.0
    assert set(by_topic) == set(TOPICS)
    manifest = json.loads((path / "topic_model.json").read_text(encoding="utf-8"))
    assert manifest["format"] == FORMAT and manifest["version"] == 1 and manifest["dim"] == 384
    assert sorted(p.name for p in path.iterdir()) == ["centroids.npy", "counts.npy", "pending.npy",
                                                      "representatives.npy", "sums.npy", "topic_model.json"]


def test_representatives_are_the_most_central_members(fitted, topic_texts, topic_vectors):
    tm, _ = fitted
    texts, _ = topic_texts
    for r, t in enumerate(tm.topics):
        members = [i for i, text in enumerate(texts) if tm.assign(embeddings=topic_vectors[i:i + 1])[0].nearest == t.id]
        sims = topic_vectors[members] @ tm.centroids[r]
        expected = [texts[members[i]] for i in np.argsort(-sims, kind="stable")[:5]]
        assert t.representatives == expected


def test_held_out_distances_match_brute_force(topic_vectors):
    x = topic_vectors[:8]
    got = held_out_distances(x)
    for i in range(8):
        rest = np.delete(x, i, axis=0).mean(axis=0)
        assert got[i] == pytest.approx(1 - x[i] @ rest / np.linalg.norm(rest), abs=1e-5)


@pytest.mark.slow
def test_saved_model_places_held_back_texts_in_a_new_process(fitted, held_back, topic_texts, topic_vectors,
                                                             minilm_encoder, minilm_path, tmp_path):
    """Saved, loaded by `qembed topics assign` in a new process: the held-back texts land in their
    topics about as well as re-clustering everything does."""
    _, path = fitted
    texts, gold, vectors = held_back
    new = tmp_path / "new.txt"
    new.write_text("\n".join(texts) + "\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "qembed.cli", "topics", "assign", "--model", str(path),
                           "--input", str(new), "--embedding-model", str(minilm_path), "--json"],
                          capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["object"] == "topics.assignment" and len(body["data"]) == len(texts)
    placed = [row["topic"] for row in body["data"]]
    # the same placements in this process
    assert placed == [a.topic for a in TopicModel.load(path).assign(texts, encoder=minilm_encoder)]
    import qembed

    all_texts = topic_texts[0] + texts
    again = qembed.cluster(None, all_texts, clusters=4, seed=0, embeddings=np.vstack([topic_vectors, vectors]))
    reclustered = again.labels[len(topic_texts[0]):]
    ours, theirs = v_measure_score(gold, placed), v_measure_score(gold, reclustered)
    assert ours >= theirs - MARGIN, (ours, theirs)
    assert sum(p == -1 for p in placed) <= 2  # ~5% of texts that belong are outliers by design


def test_update_keeps_ids_and_proposes_the_new_topic(fitted, held_back, minilm_encoder, tmp_path):
    tm0, path = fitted
    texts, gold, vectors = held_back
    tm = TopicModel.load(path, minilm_encoder)
    garden = minilm_encoder.encode(NEW_TOPIC)
    # before: the new topic's texts fit no topic
    assert all(a.outlier and a.topic == -1 for a in tm.assign(NEW_TOPIC, embeddings=garden))
    before = {t.id: (t.size, tm.centroids[r].copy()) for r, t in enumerate(tm.topics)}
    result = tm.update(texts + NEW_TOPIC, embeddings=np.vstack([vectors, garden]))
    # ids stable: every old topic is still there, grown by its held-back texts, centroid nearby
    for r, t in enumerate(tm.topics[:4]):
        size, centroid = before[t.id]
        assert t.size >= size and float(centroid @ tm.centroids[r]) > 0.95
    placed = {}
    for a, g in zip(result.assignments[:len(texts)], gold):
        if a.topic >= 0:
            placed.setdefault(g, set()).add(a.topic)
    assert all(len(v) == 1 for v in placed.values()) and len(placed) == 4
    # after: the garden texts form one proposed topic, with the next id
    assert [t.id for t in result.proposed] == [4] and result.proposed[0].origin == "update"
    garden_rows = result.assignments[len(texts):]
    assert sum(a.topic == 4 for a in garden_rows) >= 6 and not any(a.topic == 4 for a in result.assignments[:len(texts)])
    new = tm.topic(4)
    assert any(w in new.keywords for w in ("garden", "soil", "plants", "plant", "spring")), new.keywords
    assert set(new.representatives) <= set(NEW_TOPIC)
    # saved and reloaded: the same model; the diff against the fit says what changed
    saved = tm.save(tmp_path / "day2")
    again = TopicModel.load(saved)
    assert [t.to_dict() for t in again.topics] == [t.to_dict() for t in tm.topics]
    np.testing.assert_array_equal(again.centroids, tm.centroids)
    d = diff(path, saved)
    assert d.matched_by == "id" and d.count("appeared") == 1 and d.count("vanished") == 0
    assert d.count("grew") + d.count("unchanged") == 4
    assert result.diff.to_dict()["counts"] == d.to_dict()["counts"]
    # a second update with the same texts: ids still the same, no second garden topic
    second = again.update(NEW_TOPIC[:3], embeddings=garden[:3])
    assert [a.topic for a in second.assignments] == [4, 4, 4] and not second.proposed
    assert tm0.revision == 0 and again.revision == 2


def test_separate_fits_are_matched_by_centroid(fitted, topic_texts, topic_vectors):
    tm, _ = fitted
    texts, _ = topic_texts
    keep = [i for i in range(len(texts)) if i < 24 or i % 2 == 0]  # fewer programming texts, other fit
    other = TopicModel.fit(None, [texts[i] for i in keep], embeddings=topic_vectors[keep], clusters=3, seed=1)
    other.model = tm.model
    d = diff(tm, other)
    assert d.matched_by == "centroid"
    assert d.count("vanished") + d.count("grew") + d.count("shrank") + d.count("unchanged") == 4
    assert d.count("vanished") >= 1


def test_loading_refuses_foreign_and_damaged_folders(fitted, tiny_encoder, minilm_encoder, tmp_path):
    tm, path = fitted
    with pytest.raises(NotFoundError, match="topic model folder not found"):
        TopicModel.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="not a topic model folder"):
        TopicModel.load(tmp_path / "empty")
    with pytest.raises(TopicModelMismatchError, match="vectors of size 64"):
        TopicModel.load(path, tiny_encoder)
    with pytest.raises(TopicModelMismatchError, match="size 64"):
        tm.assign(embeddings=np.ones((1, 64), dtype=np.float32))
    other = TopicModel.load(path)
    other.model, other.model_source = "another-384-model", None  # the same size, another model
    with pytest.raises(TopicModelMismatchError, match="made with 'another-384-model'"):
        other.assign(["a text"], encoder=minilm_encoder)

    def damaged(name: str, edit) -> Path:
        folder = tmp_path / name
        import shutil

        shutil.copytree(path, folder)
        edit(folder)
        return folder

    def manifest_edit(**changes):
        def edit(folder):
            m = json.loads((folder / "topic_model.json").read_text(encoding="utf-8"))
            m.update(changes)
            (folder / "topic_model.json").write_text(json.dumps(m), encoding="utf-8")
        return edit

    cases = [
        (damaged("newer", manifest_edit(version=99)), "saved by a newer qembed"),
        (damaged("format", manifest_edit(format="bertopic")), "not a qembed topic model"),
        (damaged("dim", manifest_edit(dim=128)), "centroids.npy has shape"),
        (damaged("json", lambda f: (f / "topic_model.json").write_text("{", encoding="utf-8")), "not readable JSON"),
        (damaged("gone", lambda f: (f / "sums.npy").unlink()), "sums.npy is missing"),
        (damaged("pickle", lambda f: np.save(f / "centroids.npy", np.array([{"x": 1}], dtype=object),
                                             allow_pickle=True)), "not a plain .npy array"),
        (damaged("nan", lambda f: np.save(f / "sums.npy", np.full((4, 384), np.nan, dtype=np.float32))), "NaN"),
    ]
    for folder, match in cases:
        with pytest.raises(InputError, match=match):
            TopicModel.load(folder)


def test_bad_input(fitted, minilm_encoder, tmp_path):
    tm, _ = fitted
    with pytest.raises(InputError, match=r"texts\[1\] is blank"):
        tm.assign(["fine", "  "], encoder=minilm_encoder)
    with pytest.raises(InputError, match="needs the encoder"):
        tm.assign(["a text"])
    with pytest.raises(InputError, match="outlier_quantile"):
        TopicModel.fit(minilm_encoder, ["a b", "c d", "e f"], clusters=2, outlier_quantile=0.2)
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="is a file"):
        tm.save(tmp_path / "file")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="holds other files"):
        tm.save(tmp_path / "other")
