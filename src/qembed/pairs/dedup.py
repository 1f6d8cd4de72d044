"""Near-duplicate detection at corpus scale: nearest neighbours, a threshold, and union-find.

1. Texts that are identical once whitespace is collapsed are one entry (exact duplicates,
   score 1.0); each distinct text is encoded once, with the symmetric instruction.
2. The vectors go into a vector store (:func:`qembed.store.open_store` with no location: an
   in-memory FAISS index, exact inner product until it grows large) and every text asks for its
   ``k`` nearest neighbours. No n x n similarity matrix is ever built, so memory grows with
   ``n * k``, not ``n ** 2``.
3. Every neighbour pair scoring ``>= threshold`` is an edge; union-find joins edges into groups
   (single linkage: ``a~b`` and ``b~c`` put ``a`` and ``c`` in one group even if ``a`` and ``c``
   are further apart — keep the threshold high).
4. The representative of a group is its earliest text in input order (what a "keep the first
   occurrence" deduplication keeps); other members follow in input order, each with its cosine
   to the representative.

A text whose ``k`` neighbours all pass the threshold may have more; those are usually reached
through the group's other members. The count of such texts is logged so ``k`` can be raised.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qembed.errors import InputError
from qembed.models.encoder import Encoder, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.pairs.scoring import check_threshold

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.9
DEFAULT_K = 10
SEARCH_CHUNK = 1024


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    def union(self, a: int, b: int) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True


@dataclass
class DuplicateGroup:
    """Indices (into the input) of near-duplicate texts; ``members[0]`` is the representative."""

    members: list[int]
    scores: list[float]  # cosine of each member to the representative (1.0 for itself)

    @property
    def representative(self) -> int:
        return self.members[0]

    def to_dict(self, texts: Sequence[str] | None = None) -> dict[str, Any]:
        """``{"representative", "size", "members": [{"index", "score"[, "text"]}]}``."""
        members = []
        for i, s in zip(self.members, self.scores):
            item: dict[str, Any] = {"index": i, "score": round(float(s), 6)}
            if texts is not None:
                item["text"] = texts[i]
            members.append(item)
        return {"representative": self.representative, "size": len(self.members), "members": members}


@dataclass
class DedupResult:
    """Groups of two or more near-duplicates, and the indices a deduplicated corpus keeps."""

    n: int
    groups: list[DuplicateGroup]
    keep: list[int]
    threshold: float
    k: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.n - len(self.keep)


def _key(text: str) -> str:
    return " ".join(text.split())


def neighbour_edges(
    vectors: np.ndarray,
    *,
    threshold: float,
    k: int,
    show_progress_bar: bool = False,
) -> tuple[list[tuple[int, int]], int]:
    """Pairs ``(i, j)`` with ``i < j`` whose cosine is ``>= threshold``, among each row's ``k`` neighbours.

    In: unit vectors ``(n, d)``. Out: the edge list and the number of rows whose ``k`` nearest
    neighbours all passed (their neighbourhood may be larger). Uses an in-memory vector store.
    """
    from qembed.store import open_store

    n, dim = vectors.shape
    if n < 2:
        return [], 0
    want = min(k + 1, n)  # +1: a text is its own nearest neighbour
    store = open_store(None, dim=int(dim))
    try:
        store.upsert([str(i) for i in range(n)], vectors)
        edges: set[tuple[int, int]] = set()
        saturated = 0
        bar = None
        if show_progress_bar:
            from tqdm.auto import tqdm

            bar = tqdm(total=n, desc="neighbours", unit="text")
        for start in range(0, n, SEARCH_CHUNK):
            block = vectors[start:start + SEARCH_CHUNK]
            hits = store.search(block, k=want)
            for offset, row in enumerate(hits):
                i = start + offset
                passed = 0
                for hit in row:
                    j = int(hit.id)
                    if j == i:
                        continue
                    if hit.score >= threshold:
                        passed += 1
                        edges.add((i, j) if i < j else (j, i))
                if passed >= want - 1 and want - 1 < n - 1:
                    saturated += 1
            if bar is not None:
                bar.update(len(block))
        if bar is not None:
            bar.close()
    finally:
        store.close()
    return sorted(edges), saturated


def find_duplicates(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    k: int = DEFAULT_K,
    instruction: str | None = SYMMETRIC_INSTRUCTION,
    dimensions: int | None = None,
    show_progress_bar: bool = False,
) -> DedupResult:
    """Group near-duplicate texts.

    In: texts (any number; identical ones allowed), a cosine ``threshold`` in [-1, 1], ``k``
    neighbours per text, the instruction both sides get. Out: a :class:`DedupResult` with the
    groups of size >= 2 (representative = earliest text, first; groups ordered by their
    representative) and ``keep``, the sorted indices of a deduplicated corpus (every group's
    representative plus every text without duplicates).
    """
    texts = validate_texts(texts)
    threshold = check_threshold(threshold)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}", param="k")
    k = int(k)
    # 1. exact duplicates share one entry
    first_of: dict[str, int] = {}
    entry = np.empty(len(texts), dtype=np.int64)
    reps: list[int] = []
    for i, t in enumerate(texts):
        key = _key(t)
        if key not in first_of:
            first_of[key] = len(reps)
            reps.append(i)
        entry[i] = first_of[key]
    if not reps or any(not _key(texts[i]) for i in reps):
        bad = next(i for i, t in enumerate(texts) if not _key(t))
        raise InputError(f"texts[{bad}] is blank", param="input")
    logger.info("%d texts, %d distinct after exact matching; encoding", len(texts), len(reps))
    vectors = encoder.encode([texts[i] for i in reps], instruction=instruction or None,
                             dimensions=dimensions, show_progress_bar=show_progress_bar)
    # 2-3. neighbours above the threshold, joined with union-find
    edges, saturated = neighbour_edges(vectors, threshold=threshold, k=k,
                                       show_progress_bar=show_progress_bar)
    if saturated:
        logger.info("%d text(s) had all %d neighbours above the threshold; raise k to be thorough",
                    saturated, k)
    uf = UnionFind(len(reps))
    for a, b in edges:
        uf.union(a, b)
    # 4. groups over the original indices, representative = earliest
    by_root: dict[int, list[int]] = {}
    for i in range(len(texts)):
        by_root.setdefault(uf.find(int(entry[i])), []).append(i)
    groups: list[DuplicateGroup] = []
    keep: list[int] = []
    for members in by_root.values():
        rep = members[0]  # input order is preserved, so the first is the earliest
        keep.append(rep)
        if len(members) > 1:
            rv = vectors[entry[rep]]
            scores = [float(np.clip(vectors[entry[m]] @ rv, -1.0, 1.0)) for m in members]
            scores[0] = 1.0
            groups.append(DuplicateGroup(members=members, scores=scores))
    groups.sort(key=lambda g: g.representative)
    keep.sort()
    stats = {"texts": len(texts), "distinct": len(reps), "exact_duplicates": len(texts) - len(reps),
             "edges": len(edges), "groups": len(groups), "kept": len(keep),
             "removed": len(texts) - len(keep), "saturated": saturated}
    logger.info("%d group(s); keeping %d of %d texts", len(groups), len(keep), len(texts))
    return DedupResult(n=len(texts), groups=groups, keep=keep, threshold=threshold, k=k, stats=stats)
