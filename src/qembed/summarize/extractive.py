"""Extractive summaries: pick the k sentences that say the most, over sentence embeddings.

In: an :class:`~qembed.models.encoder.Encoder` and one long text or a set of texts. Out: a
:class:`Summary` — the chosen sentences in their original order (text, document, position,
score).

How sentences are chosen (:func:`select`), on unit sentence vectors:

* the *reference* is what the text is about on the whole: the centroid of the sentence vectors,
  each weighted by how much more similar it is to the other sentences than the average pair
  (``w_i = sum_j max(0, cos(s_i, s_j) - mean cos)``, LexRank's idea of centrality with an adaptive
  threshold), so content that recurs outweighs one-off filler sentences — a plain mean is pulled
  towards whatever the filler has in common (for a topic, the reference is the topic's centroid);
* ``method="centroid"``: sentences ranked by cosine to the reference (Radev et al.'s centroid
  scoring over embeddings), best first;
* ``method="mmr"``: maximal marginal relevance (Carbonell & Goldstein, 1998): each next sentence
  maximises ``(1 - diversity) * cos(s, reference) - diversity * max cos(s, chosen)``;
* both skip a sentence whose cosine to one already chosen is at least ``max_similarity``
  (redundancy removed), and exact repeats count once;
* the chosen sentences come back in the order they had in the input.

Sentences come from :func:`qembed.summarize.sentences.split_sentences` (Chinese 。！？；… and
English punctuation alike) and are embedded with the symmetric instruction clustering uses.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from qembed.config import resolve_instruction, want_progress
from qembed.errors import InputError
from qembed.models.encoder import normalize
from qembed.models.prompts import SYMMETRIC_INSTRUCTION
from qembed.summarize.sentences import split_sentences

logger = logging.getLogger(__name__)

METHODS = ("centroid", "mmr")
#: Default share of diversity in MMR (0: centroid ranking, 1: diversity only).
DEFAULT_DIVERSITY = 0.3
#: Two sentences at least this similar count as saying the same thing.
DEFAULT_MAX_SIMILARITY = 0.95
#: Most sentences one call embeds (a long book: split it first).
MAX_SENTENCES = 20_000


@dataclass
class SummarySentence:
    """One chosen sentence: its ``text``, ``document`` (index of the input text), ``index`` (its
    number among all sentences of the input, in order), character span in its document and ``score``
    (cosine to the reference)."""

    index: int
    document: int
    text: str
    start: int
    end: int
    score: float


@dataclass
class Summary:
    """The chosen sentences in input order, and how they were chosen."""

    sentences: list[SummarySentence]
    n_sentences: int
    method: str
    k: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The summary as one string (see :func:`join_sentences`)."""
        return join_sentences([s.text for s in self.sentences], [s.document for s in self.sentences])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_sentences": self.n_sentences, "params": self.params,
                "summary": self.text, "sentences": [asdict(s) for s in self.sentences]}


#: Full-width marks that end a sentence: nothing is put after them (inside one document).
_FULL_WIDTH_ENDS = frozenset("。！？；…｡”’」』）》】〕〉")


def join_sentences(sentences: Sequence[str], documents: Sequence[int] | None = None) -> str:
    """Sentences as one string, a space between two of them, except after a sentence that ends in a
    full-width mark (``。！？`` …) within one document. A sentence without an end mark (a heading, a
    list item, a chat line) and the last sentence of one document (``documents``: the document of
    each sentence) are always followed by a space, so they are never glued to the next."""
    out = ""
    for i, s in enumerate(sentences):
        if out:
            same_document = documents is None or documents[i] == documents[i - 1]
            if not (same_document and out[-1] in _FULL_WIDTH_ENDS):
                out += " "
        out += s
    return out


def _check_choice(k: Any, method: str, diversity: float, max_similarity: float,
                  name: str = "k") -> tuple[int, str]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"{name} must be a positive integer, got {k!r}", param=name)
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise InputError(f"unknown summary method {method!r}; use one of: {', '.join(METHODS)}", param="method")
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0.0 <= diversity <= 1.0:
        raise InputError(f"diversity must be a number from 0 to 1, got {diversity!r}", param="diversity")
    if isinstance(max_similarity, bool) or not isinstance(max_similarity, (int, float)) \
            or not 0.0 < max_similarity <= 1.0:
        raise InputError(f"max_similarity must be a number above 0 and at most 1, got {max_similarity!r}",
                         param="max_similarity")
    return int(k), method.lower()


def select(
    vectors: np.ndarray,
    k: int,
    *,
    method: str = "centroid",
    diversity: float = DEFAULT_DIVERSITY,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    reference: np.ndarray | None = None,
    keys: Sequence[Any] | None = None,
) -> tuple[list[int], np.ndarray]:
    """Choose up to ``k`` rows of unit ``vectors``; returns ``(indices in ascending order, scores)``.

    ``scores`` holds every row's cosine to ``reference`` (default: the normalised mean of
    ``vectors``). ``keys`` (e.g. the sentence texts): rows with the same key count once.
    See the module docstring for ``method``, ``diversity`` and ``max_similarity``.
    """
    chosen, scores = rank(vectors, k, method=method, diversity=diversity, max_similarity=max_similarity,
                          reference=reference, keys=keys)
    return sorted(chosen), scores


def central_reference(x: np.ndarray, block: int = 1024) -> np.ndarray:
    """The centrality-weighted centroid of unit rows ``x`` (see the module docstring); the plain
    mean when no row is more similar to the others than the average pair."""
    n = len(x)
    if n < 3:
        return x.mean(axis=0)
    total = x.sum(axis=0, dtype=np.float64)
    mean_cos = (float(total @ total) - float((x.astype(np.float64) ** 2).sum())) / (n * (n - 1))
    weights = np.zeros(n, dtype=np.float64)
    for start in range(0, n, block):
        sims = x[start:start + block] @ x.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = mean_cos  # not itself
        weights[start:start + len(sims)] = np.maximum(sims - mean_cos, 0.0).sum(axis=1)
    if weights.sum() <= 0:
        return x.mean(axis=0)
    return (weights[:, None] * x).sum(axis=0)


def rank(
    vectors: np.ndarray,
    k: int,
    *,
    method: str = "centroid",
    diversity: float = DEFAULT_DIVERSITY,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    reference: np.ndarray | None = None,
    keys: Sequence[Any] | None = None,
) -> tuple[list[int], np.ndarray]:
    """As :func:`select`, with the indices in the order they were chosen (best first)."""
    k, method = _check_choice(k, method, diversity, max_similarity)
    x = normalize(np.asarray(vectors, dtype=np.float32))
    n = len(x)
    if n == 0:
        return [], np.zeros(0, dtype=np.float32)
    ref = normalize(central_reference(x) if reference is None else np.asarray(reference, dtype=np.float32))
    scores = x @ ref
    eligible = np.ones(n, dtype=bool)
    if keys is not None:
        seen: set[Any] = set()
        for i, key in enumerate(keys):
            if key in seen:
                eligible[i] = False
            seen.add(key)
    chosen: list[int] = []
    closest = np.full(n, -np.inf, dtype=np.float32)  # max cosine to a chosen row
    while len(chosen) < k:
        live = eligible & (closest < max_similarity)
        if not live.any():
            break
        if method == "mmr" and chosen:
            value = (1.0 - diversity) * scores - diversity * closest
        else:
            value = scores.copy()
        value[~live] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        eligible[best] = False
        closest = np.maximum(closest, x @ x[best])
    return chosen, scores


def summarize(
    encoder: Any,
    texts: str | Sequence[str],
    sentences: int = 3,
    *,
    method: str = "centroid",
    diversity: float = DEFAULT_DIVERSITY,
    max_similarity: float = DEFAULT_MAX_SIMILARITY,
    instruction: str | None = None,
    dimensions: int | None = None,
    progress: bool | None = False,
) -> Summary:
    """The ``sentences`` sentences of ``texts`` (one long text, or a list: a set of texts summarised
    together) that best cover them, in their original order.

    ``instruction``: ``None`` = the symmetric default, ``""`` = none. Raises :class:`InputError` for
    an empty text, a text without a sentence, bad ``sentences``/``method``/``diversity``/``max_similarity``.
    """
    k, method = _check_choice(sentences, method, diversity, max_similarity, name="sentences")
    single = isinstance(texts, str)
    items = [texts] if single else texts
    if not isinstance(items, (list, tuple)):
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}",
                         param="input")
    if not items:
        raise InputError("no text to summarize", param="input")
    found: list[tuple[int, Any]] = []
    for d, text in enumerate(items):
        where = "the text" if single else f"input[{d}]"
        if not isinstance(text, str):
            raise InputError(f"{where} is {type(text).__name__}, not a string", param="input")
        if not text.strip():
            raise InputError(f"{where} is empty", param="input")
        found += [(d, s) for s in split_sentences(text)]
    if not found:
        raise InputError("the text holds no sentence (no letter or digit)", param="input")
    if len(found) > MAX_SENTENCES:
        raise InputError(f"the text has {len(found)} sentences, more than {MAX_SENTENCES}; "
                         "summarize it in parts", param="input")
    params: dict[str, Any] = {"max_similarity": max_similarity}
    if method == "mmr":
        params["diversity"] = diversity
    texts_only = [s.text for _, s in found]
    if len(found) == 1:
        chosen, scores = [0], np.ones(1, dtype=np.float32)
    else:
        logger.info("embedding %d sentence(s) of %d text(s)", len(found), len(items))
        vectors = encoder.encode(texts_only, instruction=resolve_instruction(instruction, SYMMETRIC_INSTRUCTION),
                                 dimensions=dimensions, progress=want_progress(progress, len(texts_only)))
        chosen, scores = select(vectors, k, method=method, diversity=diversity, max_similarity=max_similarity,
                                keys=texts_only)
    picked = [SummarySentence(index=i, document=found[i][0], text=found[i][1].text,
                              start=found[i][1].start, end=found[i][1].end,
                              score=round(float(scores[i]), 6)) for i in chosen]
    return Summary(sentences=picked, n_sentences=len(found), method=method, k=k, params=params)


def lead(texts: str | Sequence[str], k: int = 3) -> list[str]:
    """The Lead-k baseline: the first ``k`` sentences (of the first text, then the next …)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    out: list[str] = []
    for text in items:
        for s in split_sentences(text):
            if len(out) == k:
                return out
            out.append(s.text)
    return out


__all__ = ["METHODS", "Summary", "SummarySentence", "join_sentences", "lead", "rank", "select", "summarize"]
