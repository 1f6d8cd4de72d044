"""Cluster keywords by class-based TF-IDF, for any mix of languages.

Inputs are texts and one cluster id per text; outputs are, per cluster, its keywords ranked by
class-based TF-IDF (c-TF-IDF): a cluster's term counts (all its texts concatenated, L1-normalised)
times ``log(1 + A / f_t)``, where ``A`` is the mean number of words per cluster and ``f_t`` the
term's frequency over all clusters. Terms frequent in one cluster and rare elsewhere rank first.

Tokenization is script-aware:

* Chinese (Han) runs go through jieba. Words jieba does not know (product names such as 花呗 or
  借呗 come out as single characters) are discovered from the corpus itself: runs of single
  Han characters that recur in at least two texts are added to a private jieba dictionary for the
  call, so the global ``jieba`` state is never changed.
* Everything else is split into Unicode word tokens (letters and digits, inner apostrophes kept),
  case-folded; Arabic diacritics and tatweel are removed.
* Stop words (English from scikit-learn; Chinese, Spanish, French, German, Portuguese and Arabic
  lists in this module), pure numbers and one-character tokens are dropped.

Multilingual clusters: every text gets a language tag (:func:`detect_language`: the script, and
for Latin script the language whose stop words it uses most). Each keyword belongs to the
language that uses it most within the cluster, and keyword slots are shared between the languages
present in proportion to their texts, with at least one slot for every language present, so a
cluster of English, Spanish and Arabic texts is named in all three.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

from qembed.text import KEYWORD_STOP_WORDS, STOP_WORDS, ZH_STOP_WORDS

logger = logging.getLogger(__name__)

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df"
_HAN_RUN = re.compile(f"([{_HAN}]+)")
_IS_HAN = re.compile(f"^[{_HAN}]+$")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_ARABIC_MARKS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")

#: Label of the HDBSCAN noise cluster.
OUTLIER_LABEL = "outliers"
#: A language with at least this share of a cluster's texts gets one of its first keywords.
MIN_ROUND_SHARE = 0.1
#: Separator between the keywords of a label (``花呗_还款_失败``, ``payment_failed_card``).
LABEL_SEPARATOR = "_"

#: The stop words keyword extraction drops (the per-language lists live in :mod:`qembed.text`).
ALL_STOP_WORDS = KEYWORD_STOP_WORDS
_LATIN_LANGUAGES = ("en", "es", "fr", "de", "pt")

# Unicode script of a character, by block: enough to tell the writing systems apart.
_SCRIPT_RANGES = (
    ("han", 0x3400, 0x9FFF), ("han", 0xF900, 0xFAFF), ("han", 0x20000, 0x2A6DF),
    ("kana", 0x3040, 0x30FF), ("hangul", 0xAC00, 0xD7AF), ("hangul", 0x1100, 0x11FF),
    ("arabic", 0x0600, 0x06FF), ("arabic", 0x0750, 0x077F), ("arabic", 0xFB50, 0xFDFF),
    ("arabic", 0xFE70, 0xFEFF), ("hebrew", 0x0590, 0x05FF), ("cyrillic", 0x0400, 0x052F),
    ("greek", 0x0370, 0x03FF), ("devanagari", 0x0900, 0x097F), ("thai", 0x0E00, 0x0E7F),
)
_SCRIPT_CODE = {"han": "zh", "kana": "ja", "hangul": "ko", "arabic": "ar", "hebrew": "he",
                "cyrillic": "ru", "greek": "el", "devanagari": "hi", "thai": "th"}


def _script(ch: str) -> str | None:
    cp = ord(ch)
    for name, lo, hi in _SCRIPT_RANGES:
        if lo <= cp <= hi:
            return name
    if ch.isalpha():
        return "latin" if cp < 0x0250 or 0x1E00 <= cp <= 0x1EFF else "other"
    return None


def detect_language(text: str) -> str:
    """Tag ``text`` with a language code from its script (and stop words, for Latin script).

    Returns ``zh``, ``ja`` (any kana), ``ko``, ``ar``, ``he``, ``ru`` (Cyrillic), ``el``, ``hi``,
    ``th``; for Latin script ``en``, ``es``, ``fr``, ``de`` or ``pt`` by stop-word hits, else
    ``latin``; ``other`` for anything else. It is a grouping for keyword selection, not a full
    language identifier.
    """
    counts: Counter[str] = Counter()
    for ch in text:
        s = _script(ch)
        if s is not None:
            counts[s] += 1
    if not counts:
        return "other"
    if counts.get("kana"):
        return "ja"
    script = counts.most_common(1)[0][0]
    if script in _SCRIPT_CODE:
        return _SCRIPT_CODE[script]
    if script != "latin":
        return "other"
    words = [w.casefold() for w in _WORD.findall(text)]
    best, best_hits = "latin", 0
    for lang in _LATIN_LANGUAGES:
        hits = sum(1 for w in words if w in STOP_WORDS[lang])
        if hits > best_hits:
            best, best_hits = lang, hits
    return best


# --------------------------------------------------------------------------- tokenization


class _Jieba:
    """A private jieba dictionary: the global ``jieba`` module is never modified."""

    _base = None
    _lock = threading.Lock()

    @classmethod
    def base(cls):
        with cls._lock:
            if cls._base is None:
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tk = jieba.Tokenizer()
                tk.initialize()
                cls._base = tk
            return cls._base

    @classmethod
    def with_words(cls, words: Iterable[str]):
        """A tokenizer that knows ``words`` besides jieba's dictionary (the base when none)."""
        words = [w for w in words if w]
        base = cls.base()
        if not words:
            return base
        import jieba

        tk = jieba.Tokenizer()
        # Share the loaded dictionary by copy (about 20 ms) instead of reloading it (about 0.5 s).
        tk.FREQ = dict(base.FREQ)
        tk.total = base.total
        tk.initialized = True
        for w in words:
            tk.add_word(w, freq=max(tk.FREQ.get(w) or 0, 1000))
        return tk


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    return _ARABIC_MARKS.sub("", text)


def _raw_tokens(text: str, segmenter) -> list[str]:
    """Tokens of ``text`` before filtering: jieba words for Han runs, word tokens otherwise."""
    out: list[str] = []
    for part in _HAN_RUN.split(_normalize(text)):
        if not part:
            continue
        if _IS_HAN.match(part):
            out.extend(segmenter.lcut(part, HMM=True))
        else:
            out.extend(w.casefold().replace("’", "'") for w in _WORD.findall(part))
    return out


def _keep(token: str, stop_words: frozenset[str]) -> bool:
    return len(token) >= 2 and not token.isdigit() and token not in stop_words


def discover_chinese_words(texts: Sequence[str], min_df: int = 2, max_len: int = 4) -> list[str]:
    """Chinese words jieba splits into single characters but that recur in ``min_df``+ texts.

    A run of 2..``max_len`` consecutive one-character jieba tokens (none a stop word) is a
    candidate; e.g. 花呗 (jieba: 花 / 呗) in customer-support messages.
    """
    base = _Jieba.base()
    df: Counter[str] = Counter()
    for text in texts:
        seen: set[str] = set()
        for part in _HAN_RUN.findall(_normalize(text)):
            run: list[str] = []
            for tok in [*base.lcut(part, HMM=True), ""]:
                if len(tok) == 1 and tok not in ZH_STOP_WORDS:
                    run.append(tok)
                    continue
                if 2 <= len(run) <= max_len:
                    seen.add("".join(run))
                run = []
        df.update(seen)
    return sorted(w for w, c in df.items() if c >= min_df)


class Tokenizer:
    """Callable text → keyword tokens, usable as scikit-learn's ``CountVectorizer(tokenizer=…)``.

    ``words``: extra Chinese words for jieba (e.g. a domain dictionary); ``stop_words``: the set
    of tokens to drop (default: :data:`qembed.text.KEYWORD_STOP_WORDS`).
    """

    def __init__(self, words: Iterable[str] = (), stop_words: Iterable[str] | None = None) -> None:
        self.words = sorted(set(words))
        self.stop_words = frozenset(stop_words) if stop_words is not None else KEYWORD_STOP_WORDS
        self._segmenter = _Jieba.with_words(self.words)

    @classmethod
    def for_corpus(cls, texts: Sequence[str], words: Iterable[str] = (),
                   stop_words: Iterable[str] | None = None) -> "Tokenizer":
        """A tokenizer that also knows the Chinese words discovered in ``texts``."""
        found = discover_chinese_words(texts) if any(_HAN_RUN.search(t) for t in texts) else []
        if found:
            logger.debug("discovered %d Chinese word(s): %s", len(found), ", ".join(found[:20]))
        return cls([*words, *found], stop_words)

    def __call__(self, text: str) -> list[str]:
        return [t for t in _raw_tokens(text, self._segmenter) if _keep(t, self.stop_words)]


def keyword_tokens(text: str, words: Iterable[str] = ()) -> list[str]:
    """Keyword tokens of one text: jieba words for Chinese, word tokens otherwise, at least two
    characters, no digits-only tokens, no :data:`~qembed.text.KEYWORD_STOP_WORDS`.

    Not the tokens BM25 indexes (:func:`qembed.search.lexical.bm25_tokens`): a keyword must name
    a topic, so short words and generic words go; a search must still match them."""
    return Tokenizer(words)(text)


# --------------------------------------------------------------------------- c-TF-IDF


def class_tfidf(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    *,
    tokenizer: Tokenizer | None = None,
):
    """Class-based TF-IDF of ``texts`` grouped by ``labels``.

    Returns ``(classes, vocabulary, scores, counts, doc_term)``: the sorted class ids, the terms,
    the ``(n_classes, n_terms)`` score matrix, the raw class-term counts and the sparse
    document-term count matrix (CSR).
    """
    from scipy import sparse
    from sklearn.feature_extraction.text import CountVectorizer

    labels = np.asarray(labels)
    if len(labels) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    tokenizer = tokenizer or Tokenizer.for_corpus(texts)
    vectorizer = CountVectorizer(tokenizer=tokenizer, lowercase=False, token_pattern=None)
    try:
        doc_term = vectorizer.fit_transform(list(texts)).tocsr()
        vocabulary = vectorizer.get_feature_names_out()
    except ValueError:  # every text was stop words / punctuation only
        doc_term = sparse.csr_matrix((len(texts), 0), dtype=np.int64)
        vocabulary = np.array([], dtype=object)
    classes, inverse = np.unique(labels, return_inverse=True)
    onehot = sparse.csr_matrix(
        (np.ones(len(labels)), (inverse, np.arange(len(labels)))), shape=(len(classes), len(labels))
    )
    counts = np.asarray((onehot @ doc_term).todense(), dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    tf = counts / np.maximum(totals, 1.0)
    avg_words = counts.sum() / max(len(classes), 1)
    term_freq = counts.sum(axis=0)
    idf = np.log1p(avg_words / np.maximum(term_freq, 1.0))
    return classes, vocabulary, tf * idf, counts, doc_term


def _select(queues: dict[str, list[int]], shares: dict[str, float], slots: int) -> list[int]:
    """Take ``slots`` terms from per-language queues (each best first).

    First every language holding at least :data:`MIN_ROUND_SHARE` of the texts takes its best term
    (largest share first), so the label names the cluster in each of its main languages; then
    slots go in proportion to ``shares`` (D'Hondt: the language furthest below its quota picks
    next); finally every language with terms left gets at least one slot, replacing the last pick
    of a language that holds several.
    """
    queues = {g: list(q) for g, q in queues.items() if q}
    picked: Counter[str] = Counter()
    chosen: list[tuple[str, int]] = []
    order = sorted(queues, key=lambda g: (-shares[g], g))
    total = sum(shares[g] for g in order) or 1.0
    for g in order:
        if len(chosen) < slots and shares[g] / total >= MIN_ROUND_SHARE:
            picked[g] += 1
            chosen.append((g, queues[g].pop(0)))
    while len(chosen) < slots:
        live = [g for g in order if queues[g]]
        if not live:
            break
        lang = min(live, key=lambda g: ((picked[g] + 1) / shares[g], order.index(g)))
        picked[lang] += 1
        chosen.append((lang, queues[lang].pop(0)))
    for g in order:
        if picked[g] or not queues[g]:
            continue
        for i in range(len(chosen) - 1, -1, -1):
            owner = chosen[i][0]
            if picked[owner] > 1:
                picked[owner] -= 1
                picked[g] += 1
                chosen[i] = (g, queues[g].pop(0))
                break
    return [t for _, t in chosen]


def cluster_keywords(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    *,
    top_n: int = 10,
    languages: Sequence[str] | None = None,
    words: Iterable[str] = (),
    tokenizer: Tokenizer | None = None,
) -> dict[int, list[tuple[str, float]]]:
    """Keywords of every cluster: ``{cluster_id: [(keyword, c-TF-IDF score), …]}``.

    ``labels`` gives each text's cluster (any integers, ``-1`` included). ``languages`` (one code
    per text, default :func:`detect_language`) decides how the ``top_n`` slots are shared so that
    every language present in a cluster contributes keywords. ``words`` adds Chinese words to
    jieba's dictionary.
    """
    texts = list(texts)
    labels = np.asarray(labels)
    if top_n < 1:
        raise ValueError("top_n must be at least 1")
    tokenizer = tokenizer or Tokenizer.for_corpus(texts, words)
    classes, vocab, scores, _, doc_term = class_tfidf(texts, labels, tokenizer=tokenizer)
    langs = np.asarray(list(languages) if languages is not None else [detect_language(t) for t in texts])
    if len(langs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(langs)} language tags")
    out: dict[int, list[tuple[str, float]]] = {}
    for ci, c in enumerate(classes):
        members = np.flatnonzero(labels == c)
        row = scores[ci]
        if len(vocab) == 0 or not row.any():
            out[int(c)] = []
            continue
        member_langs = langs[members]
        present, lang_docs = np.unique(member_langs, return_counts=True)
        # term counts per language inside the cluster → each term's language
        per_lang = np.vstack([
            np.asarray(doc_term[members[member_langs == g]].sum(axis=0)).ravel() for g in present
        ])
        term_lang = per_lang.argmax(axis=0)
        # best score first; ties go to the term found in more of the cluster's texts
        doc_freq = np.asarray((doc_term[members] > 0).sum(axis=0)).ravel()
        ranked = [int(t) for t in np.lexsort((-doc_freq, -row)) if row[t] > 0]
        queues: dict[str, list[int]] = {str(g): [] for g in present}
        for t in ranked:
            queues[str(present[term_lang[t]])].append(t)
        shares = {str(g): float(n) for g, n in zip(present, lang_docs)}
        chosen = _select(queues, shares, top_n)
        out[int(c)] = [(str(vocab[t]), float(row[t])) for t in chosen]
    return out


def make_label(keywords: Sequence[str], n: int = 3, cluster_id: int | None = None) -> str:
    """A short label: the top ``n`` keywords joined by :data:`LABEL_SEPARATOR`.

    The noise cluster (``cluster_id == -1``) is always labelled :data:`OUTLIER_LABEL`; a cluster
    without keywords gets ``cluster_<id>``.
    """
    if cluster_id == -1:
        return OUTLIER_LABEL
    parts = [k for k in keywords[:n] if k]
    if not parts:
        return f"cluster_{cluster_id}" if cluster_id is not None else "cluster"
    return LABEL_SEPARATOR.join(parts)


__all__ = [
    "ALL_STOP_WORDS", "LABEL_SEPARATOR", "OUTLIER_LABEL", "STOP_WORDS", "Tokenizer",
    "class_tfidf", "cluster_keywords", "detect_language", "discover_chinese_words", "make_label",
    "keyword_tokens",
]

