"""Near-duplicate groups through the vector store, union-find, representatives."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.pairs.dedup import UnionFind, find_duplicates, neighbour_edges

from .conftest import DEDUP_TEXTS


def test_minilm_finds_near_copy_groups(minilm_encoder):
    result = find_duplicates(minilm_encoder, DEDUP_TEXTS, threshold=0.9)
    groups = [g.members for g in result.groups]
    assert groups == [[0, 2, 4], [3, 6]]
    assert result.keep == [0, 1, 3, 5, 7]
    assert result.groups[0].representative == 0
    assert result.groups[0].scores[2] == pytest.approx(1.0)  # exact copy
    assert 0.9 <= result.groups[1].scores[1] < 1.0
    assert result.stats["exact_duplicates"] == 1 and result.stats["distinct"] == 7


def test_paraphrases_join_at_a_lower_threshold_only(minilm_encoder):
    texts = ["How do I reset my password?", "I forgot my password, how can I set a new one?",
             "What time does the store open?"]
    strict = find_duplicates(minilm_encoder, texts, threshold=0.95)
    loose = find_duplicates(minilm_encoder, texts, threshold=0.6)
    assert strict.groups == []
    assert [g.members for g in loose.groups] == [[0, 1]]


def test_representative_is_the_earliest_and_chains_join(tiny_encoder):
    # Identical texts (after whitespace) always join, whatever the model.
    texts = ["b text", "a text", "b  text ", "c", "a text", "c"]
    result = find_duplicates(tiny_encoder, texts, threshold=0.999999)
    assert [g.members for g in result.groups] == [[0, 2], [1, 4], [3, 5]]
    assert result.keep == [0, 1, 3]


def test_neighbour_edges_against_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    noisy = base[:10] + 0.05 * rng.normal(size=(10, 16)).astype(np.float32)
    x = np.vstack([base, noisy])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    edges, _ = neighbour_edges(x, threshold=0.9, k=5)
    sims = x @ x.T
    brute = {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if sims[i, j] >= 0.9}
    assert set(edges) == brute and len(brute) >= 10


def test_union_find():
    uf = UnionFind(5)
    assert uf.union(0, 1) and uf.union(3, 4) and uf.union(1, 4)
    assert not uf.union(0, 3)
    assert len({uf.find(i) for i in range(5)}) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"threshold": 1.5}, "between -1 and 1"),
    ({"threshold": -2}, "between -1 and 1"),
    ({"k": 0}, "k must be a positive integer"),
])
def test_bad_arguments(tiny_encoder, kwargs, message):
    with pytest.raises(InputError, match=message):
        find_duplicates(tiny_encoder, ["a", "b"], **kwargs)


def test_blank_and_empty_input(tiny_encoder):
    with pytest.raises(InputError):
        find_duplicates(tiny_encoder, [])
    with pytest.raises(InputError, match="blank"):
        find_duplicates(tiny_encoder, ["a", "   "])
