"""Near-duplicate groups: exact range search, connected components, representatives."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.pairs.dedup import find_duplicates, similar_pairs

from .conftest import DEDUP_TEXTS


def test_minilm_finds_near_copy_groups(minilm_encoder):
    result = find_duplicates(minilm_encoder, DEDUP_TEXTS, min_similarity=0.9)
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
    strict = find_duplicates(minilm_encoder, texts, min_similarity=0.95)
    loose = find_duplicates(minilm_encoder, texts, min_similarity=0.6)
    assert strict.groups == []
    assert [g.members for g in loose.groups] == [[0, 1]]


def test_representative_is_the_earliest_and_chains_join(tiny_encoder):
    # Identical texts (after whitespace) always join, whatever the model.
    texts = ["b text", "a text", "b  text ", "c", "a text", "c"]
    result = find_duplicates(tiny_encoder, texts, min_similarity=0.999999)
    assert [g.members for g in result.groups] == [[0, 2], [1, 4], [3, 5]]
    assert result.keep == [0, 1, 3]


def _brute_force_groups(x: np.ndarray, min_similarity: float) -> list[list[int]]:
    """Groups of size >= 2 by single linkage over the full similarity matrix (breadth-first)."""
    sims = x @ x.T
    seen: set[int] = set()
    groups = []
    for start in range(len(x)):
        if start in seen:
            continue
        component, frontier = {start}, [start]
        while frontier:
            i = frontier.pop()
            for j in np.flatnonzero(sims[i] >= min_similarity):
                if int(j) not in component:
                    component.add(int(j))
                    frontier.append(int(j))
        seen |= component
        if len(component) > 1:
            groups.append(sorted(component))
    return groups


class VectorEncoder:
    """An encoder that returns fixed vectors (row i for the text "i"): the graph part is tested alone."""

    name = "fixed-vectors"

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.dim = x.shape[1]

    def encode(self, texts, instruction=None, dimensions=None, progress=False):
        return self.x[[int(t) for t in texts]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_equal_a_brute_force_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(300, 12)).astype(np.float32)
    copies = base[rng.integers(0, 300, size=200)] + 0.15 * rng.normal(size=(200, 12)).astype(np.float32)
    x = np.vstack([base, copies])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts = [str(i) for i in range(len(x))]
    result = find_duplicates(VectorEncoder(x), texts, min_similarity=0.85)
    expected = _brute_force_groups(x, 0.85)
    assert [g.members for g in result.groups] == expected and len(expected) >= 50
    members = {m for g in expected for m in g[1:]}
    assert result.keep == [i for i in range(len(x)) if i not in members]


def test_a_group_larger_than_the_old_neighbour_count_is_found_whole():
    # 60 near-copies of one text (the old k-nearest-neighbour search looked at 10 per text)
    rng = np.random.default_rng(5)
    centre = rng.normal(size=16)
    x = centre + 0.01 * rng.normal(size=(60, 16))
    others = rng.normal(size=(40, 16))
    x = np.vstack([others[:20], x, others[20:]]).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    result = find_duplicates(VectorEncoder(x), [str(i) for i in range(len(x))], min_similarity=0.99)
    assert [g.members for g in result.groups] == [list(range(20, 80))]
    assert result.groups[0].representative == 20 and len(result.keep) == 41


def test_similar_pairs_in_blocks_against_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 16)).astype(np.float32)
    noisy = base[:10] + 0.05 * rng.normal(size=(10, 16)).astype(np.float32)
    x = np.vstack([base, noisy])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    brute = {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if sims[i, j] >= 0.9}
    for block in (7, 4096):  # several blocks and one
        rows, cols = similar_pairs(x, min_similarity=0.9, block=block)
        assert set(zip(rows.tolist(), cols.tolist())) == brute and len(rows) == len(brute) >= 10


def test_the_threshold_itself_counts():
    x = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)  # cos(0, 1) = 0.6 exactly
    rows, cols = similar_pairs(x, min_similarity=0.6)
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 2)]


@pytest.mark.parametrize("kwargs, message", [
    ({"min_similarity": 1.5}, "min_similarity must be between -1 and 1"),
    ({"min_similarity": -2}, "between -1 and 1"),
    ({"min_similarity": "high"}, "min_similarity must be a number"),
])
def test_bad_arguments(tiny_encoder, kwargs, message):
    with pytest.raises(InputError, match=message):
        find_duplicates(tiny_encoder, ["a", "b"], **kwargs)


def test_blank_and_empty_input(tiny_encoder):
    with pytest.raises(InputError):
        find_duplicates(tiny_encoder, [])
    with pytest.raises(InputError, match="blank"):
        find_duplicates(tiny_encoder, ["a", "   "])
