"""Near-duplicate detection at corpus scale: every pair above a cosine, joined into groups.

1. Texts that are identical once whitespace is collapsed are one entry (exact duplicates,
   score 1.0); each distinct text is encoded once, with the symmetric instruction.
2. FAISS ``range_search`` on an exact inner-product index finds, for every text, *all* texts
   whose cosine is ``>= min_similarity`` (unit vectors: inner product = cosine). Queries run in
   blocks of :data:`RANGE_BLOCK` rows, so memory holds one block's hits at a time, never an
   n x n matrix — and no neighbour count ``k`` can cut a group short.
3. The pairs are the edges of a sparse graph; ``scipy.sparse.csgraph.connected_components``
   joins them into groups (single linkage: ``a~b`` and ``b~c`` put ``a`` and ``c`` in one
   group even if ``a`` and ``c`` are further apart — keep the threshold high).
4. The representative of a group is its earliest text in input order (what a "keep the first
   occurrence" deduplication keeps); other members follow in input order, each with its cosine
   to the representative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from qembed import deprecated
from qembed.deprecated import old_keywords
from qembed.errors import InputError
from qembed.models.encoder import Encoder, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.pairs.scoring import check_threshold

logger = logging.getLogger(__name__)

#: Default cosine at or above which two texts are near-duplicates.
DEFAULT_MIN_SIMILARITY = 0.9
#: Query rows per FAISS range search (bounds the memory one search's hits take).
RANGE_BLOCK = 4096


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
    min_similarity: float
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.n - len(self.keep)

    threshold = deprecated.OldAttribute()  # the older name of min_similarity


def _key(text: str) -> str:
    return " ".join(text.split())


@old_keywords
def similar_pairs(
    vectors: np.ndarray,
    *,
    min_similarity: float,
    block: int = RANGE_BLOCK,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(i, j)``, ``i < j``, whose inner product is ``>= min_similarity``.

    In: unit vectors ``(n, d)``. Out: two int64 arrays ``(rows, cols)``. Exact: FAISS
    ``IndexFlatIP.range_search``, queried in blocks of ``block`` rows.
    """
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = x.shape
    if n < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    index = faiss.IndexFlatIP(int(dim))
    index.add(x)
    # range_search keeps scores strictly above the radius; the threshold itself counts
    radius = float(np.nextafter(np.float32(min_similarity), np.float32(-np.inf)))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="range search", unit="text")
    for start in range(0, n, block):
        lims, _, ids = index.range_search(x[start:start + block], radius)
        counts = np.diff(lims).astype(np.int64)
        src = np.repeat(np.arange(start, start + len(counts), dtype=np.int64), counts)
        dst = ids.astype(np.int64)
        keep = src < dst  # each pair once, no self pairs
        rows.append(src[keep])
        cols.append(dst[keep])
        if bar is not None:
            bar.update(len(counts))
    if bar is not None:
        bar.close()
    return np.concatenate(rows), np.concatenate(cols)


@old_keywords
def find_duplicates(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    instruction: str | None = SYMMETRIC_INSTRUCTION,
    dimensions: int | None = None,
    progress: bool | None = False,
) -> DedupResult:
    """Group near-duplicate texts.

    In: texts (any number; identical ones allowed), ``min_similarity`` (the cosine in [-1, 1] at
    or above which two texts are near-duplicates), the instruction both sides get (``None``: the
    symmetric default, ``""``: none). Out: a :class:`DedupResult` with the groups of size >= 2
    (representative = earliest text, first; groups ordered by their representative) and
    ``keep``, the sorted indices of a deduplicated corpus (every group's representative plus
    every text without duplicates). Exact: every pair at or above ``min_similarity`` is found.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    texts = validate_texts(texts)
    min_similarity = check_threshold(min_similarity, param="min_similarity")
    show = bool(progress)
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
    instr = SYMMETRIC_INSTRUCTION if instruction is None else (instruction or None)
    vectors = encoder.encode([texts[i] for i in reps], instruction=instr,
                             dimensions=dimensions, progress=show)
    # 2-3. all pairs above the threshold, joined as connected components
    rows, cols = similar_pairs(vectors, min_similarity=min_similarity, progress=show)
    m = len(reps)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(m, m))
    _, component = connected_components(graph, directed=False)
    # 4. groups over the original indices, representative = earliest
    by_component: dict[int, list[int]] = {}
    for i in range(len(texts)):
        by_component.setdefault(int(component[entry[i]]), []).append(i)
    groups: list[DuplicateGroup] = []
    keep: list[int] = []
    for members in by_component.values():
        rep = members[0]  # input order is preserved, so the first is the earliest
        keep.append(rep)
        if len(members) > 1:
            rv = vectors[entry[rep]]
            scores = [float(np.clip(vectors[entry[mm]] @ rv, -1.0, 1.0)) for mm in members]
            scores[0] = 1.0
            groups.append(DuplicateGroup(members=members, scores=scores))
    groups.sort(key=lambda g: g.representative)
    keep.sort()
    stats = {"texts": len(texts), "distinct": len(reps), "exact_duplicates": len(texts) - len(reps),
             "edges": len(rows), "groups": len(groups), "kept": len(keep),
             "removed": len(texts) - len(keep)}
    logger.info("%d group(s); keeping %d of %d texts", len(groups), len(keep), len(texts))
    return DedupResult(n=len(texts), groups=groups, keep=keep, min_similarity=min_similarity, stats=stats)


__getattr__ = deprecated.module_getattr(__name__)  # old names: qembed.deprecated.NAMES
