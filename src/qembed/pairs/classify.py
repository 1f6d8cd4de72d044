"""Text classification on embeddings: zero-shot (nearest label) and supervised (logistic regression).

Zero-shot: each label is a name (``billing``) or ``name: description`` (``billing: invoices,
charges, refunds``); the label texts and the input texts are embedded with the same symmetric
instruction and each input goes to the label whose text is nearest (cosine). A label may be given
several times with different descriptions; its score is the best of them. Probabilities are a
softmax of the cosines divided by a temperature (0.05 by default, the scale contrastive
embedding models are trained with), so they rank like the scores but are not calibrated.

Supervised: :func:`train_classifier` embeds labelled texts, fits scikit-learn's
``LogisticRegression`` on a stratified training split and measures accuracy and macro-F1 on the
held-out split. :meth:`TrainedClassifier.save` writes a folder: ``classifier.json`` (manifest:
encoder model, instruction, dimensions, labels, metrics) and ``weights.npz`` (coefficients and
intercepts — plain arrays, no pickle, so loading a folder never runs code).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from qembed import deprecated
from qembed.config import resolve_instruction, want_progress
from qembed.deprecated import old_keywords
from qembed.errors import InputError, NotFoundError
from qembed.eval import classification as _metrics
from qembed.models.encoder import Encoder, validate_texts
from qembed.models.prompts import SYMMETRIC_INSTRUCTION

logger = logging.getLogger(__name__)

MANIFEST = "classifier.json"
WEIGHTS = "weights.npz"
FORMAT = "qembed-classifier"
FORMAT_VERSION = 1
DEFAULT_TEMPERATURE = 0.05


def encoder_reference(encoder: Encoder) -> str:
    """What to pass to :func:`qembed.load_encoder` to get ``encoder`` again (folder, Hub id or URL)."""
    path = getattr(encoder, "path", None)
    if path is not None:
        return str(path)
    base_url = getattr(encoder, "base_url", None)
    return str(base_url) if base_url else encoder.name


def _softmax(x: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """softmax(x / temperature), the maximum subtracted before dividing: no overflow for any
    positive temperature (a tiny one gives the arg-max one-hot, not NaN)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):  # a gap over a tiny temperature is -inf: exp gives 0
        z = (x - x.max(axis=axis, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def parse_labels(labels: Sequence[str]) -> tuple[list[str], list[str], list[int]]:
    """Split label specs into ``(names, texts, owner)``.

    In: specs such as ``"billing"`` or ``"billing: invoices, charges and refunds"``. Out: the
    distinct names in first-seen order, the text embedded for each spec (the whole spec), and for
    each spec the index of its name. Raises :class:`InputError` for fewer than two names.
    """
    specs = validate_texts(list(labels), param="labels")
    names: list[str] = []
    texts: list[str] = []
    owner: list[int] = []
    for i, spec in enumerate(specs):
        name = spec.split(":", 1)[0].strip() if ":" in spec else spec.strip()
        if not name:
            raise InputError(f"labels[{i}] {spec!r} has an empty name before ':'", param="labels")
        if name not in names:
            names.append(name)
        texts.append(spec.strip())
        owner.append(names.index(name))
    if len(names) < 2:
        raise InputError(f"zero-shot classification needs at least two labels, got {names}",
                         param="labels")
    return names, texts, owner


@dataclass
class ZeroShotClassifier:
    """Route texts to the nearest of a fixed set of labels.

    ``labels``: names or ``name: description`` specs (a name may repeat with other descriptions).
    ``instruction``: given to the input texts (``None``: the symmetric default, ``""``: none);
    ``label_instruction`` to the label texts (``None``: the same as the texts, ``""``: none).
    """

    encoder: Encoder
    labels: Sequence[str]
    instruction: str | None = None
    label_instruction: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    dimensions: int | None = None
    names: list[str] = field(init=False)
    _label_vectors: np.ndarray = field(init=False, repr=False)
    _owner: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise InputError(f"temperature must be positive, got {self.temperature}", param="temperature")
        self.names, texts, owner = parse_labels(self.labels)
        self._instruction = resolve_instruction(self.instruction, SYMMETRIC_INSTRUCTION)
        self._label_instruction = resolve_instruction(self.label_instruction, self._instruction)
        self._label_vectors = self.encoder.encode(texts, instruction=self._label_instruction,
                                                  dimensions=self.dimensions)
        self._owner = np.asarray(owner, dtype=np.int64)

    def scores(self, texts: Sequence[str], *, progress: bool | None = False) -> np.ndarray:
        """Cosine of every text to every label name, ``(n_texts, n_labels)`` (best description)."""
        texts = validate_texts(texts)
        vectors = self.encoder.encode(texts, instruction=self._instruction, dimensions=self.dimensions,
                                      progress=want_progress(progress, len(texts)))
        per_spec = vectors @ self._label_vectors.T
        out = np.full((len(texts), len(self.names)), -np.inf, dtype=np.float32)
        for j in range(len(self.names)):
            out[:, j] = per_spec[:, self._owner == j].max(axis=1)
        return out

    @old_keywords
    def predict(self, texts: Sequence[str], *, top_k: int | None = None, temperature: float | None = None,
                progress: bool | None = False) -> list[dict[str, Any]]:
        """Classify texts.

        Out: one dict per text: ``label`` (nearest), ``score`` (its cosine), and ``labels`` —
        the ``top_k`` (default all) labels best first, each ``{"label", "score", "probability"}``.
        ``temperature`` overrides the classifier's for this call.
        """
        texts = validate_texts(texts)
        k = len(self.names) if top_k is None else int(top_k)
        if k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}", param="top_k")
        temp = self.temperature if temperature is None else float(temperature)
        if not temp > 0:
            raise InputError(f"temperature must be positive, got {temperature}", param="temperature")
        sims = self.scores(texts, progress=progress)
        probs = _softmax(sims, temp, axis=1)
        results = []
        for row, prow in zip(sims, probs):
            order = np.argsort(-row, kind="stable")[:k]
            ranked = [{"label": self.names[j], "score": float(row[j]), "probability": float(prow[j])}
                      for j in order]
            results.append({"label": ranked[0]["label"], "score": ranked[0]["score"], "labels": ranked})
        return results


def zero_shot(encoder: Encoder, texts: Sequence[str], labels: Sequence[str], *, top_k: int | None = None,
              progress: bool | None = False, **kwargs: Any) -> list[dict[str, Any]]:
    """One-call zero-shot classification; see :class:`ZeroShotClassifier` for ``kwargs``
    (``instruction``, ``label_instruction``, ``temperature``, ``dimensions``)."""
    return ZeroShotClassifier(encoder, labels, **kwargs).predict(texts, top_k=top_k, progress=progress)


def _check_training_labels(labels: Sequence[Any]) -> list[str]:
    out = []
    for i, v in enumerate(labels):
        if v is None or (isinstance(v, str) and not v.strip()):
            raise InputError(f"label {i + 1} is empty", param="labels")
        out.append(str(v).strip())
    return out


@dataclass
class TrainedClassifier:
    """A logistic-regression head over an encoder's embeddings."""

    model: str
    labels: list[str]
    coef: np.ndarray
    intercept: np.ndarray
    instruction: str | None = SYMMETRIC_INSTRUCTION
    dimensions: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def _estimator(self):
        from sklearn.linear_model import LogisticRegression

        est = LogisticRegression()
        est.classes_ = np.arange(len(self.labels))
        est.coef_ = np.asarray(self.coef, dtype=np.float64)
        est.intercept_ = np.asarray(self.intercept, dtype=np.float64)
        est.n_features_in_ = est.coef_.shape[1]
        return est

    @property
    def dim(self) -> int:
        return int(np.asarray(self.coef).shape[1])

    def predict_vectors(self, vectors: np.ndarray, *, top_k: int | None = None) -> list[dict[str, Any]]:
        """Classify embeddings ``(n, dim)``: ``{"label", "probability", "labels": [...]}`` each."""
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise InputError(f"this classifier takes vectors of size {self.dim}, got shape {vectors.shape}")
        probs = self._estimator().predict_proba(vectors)
        k = len(self.labels) if top_k is None else max(1, int(top_k))
        out = []
        for row in probs:
            order = np.argsort(-row, kind="stable")[:k]
            ranked = [{"label": self.labels[j], "probability": float(row[j])} for j in order]
            out.append({"label": ranked[0]["label"], "probability": ranked[0]["probability"],
                        "labels": ranked})
        return out

    @old_keywords
    def predict(self, encoder: Encoder, texts: Sequence[str], *, top_k: int | None = None,
                progress: bool | None = False) -> list[dict[str, Any]]:
        """Embed ``texts`` with ``encoder`` (same instruction as in training) and classify them."""
        texts = validate_texts(texts)
        vectors = encoder.encode(texts, instruction=self.instruction or None, dimensions=self.dimensions,
                                 progress=want_progress(progress, len(texts)))
        if vectors.shape[1] != self.dim:
            raise InputError(
                f"the encoder {encoder.name} gives vectors of size {vectors.shape[1]} but this classifier "
                f"was trained on {self.model} with size {self.dim}; use --model {self.model}"
            )
        return self.predict_vectors(vectors, top_k=top_k)

    def save(self, folder: str | Path) -> Path:
        """Write ``classifier.json`` and ``weights.npz`` into ``folder`` (created if needed)."""
        import sklearn

        out = Path(folder)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} exists and is not a folder")
        out.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.model,
            "instruction": self.instruction,
            "dimensions": self.dimensions,
            "dim": self.dim,
            "labels": self.labels,
            "head": "sklearn.linear_model.LogisticRegression",
            "sklearn_version": sklearn.__version__,
            "metrics": self.metrics,
            **self.info,
        }
        tmp = out / (WEIGHTS + ".tmp.npz")
        np.savez(tmp, coef=np.asarray(self.coef, dtype=np.float32),
                 intercept=np.asarray(self.intercept, dtype=np.float32))
        tmp.replace(out / WEIGHTS)
        tmp_manifest = out / (MANIFEST + ".tmp")
        tmp_manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        tmp_manifest.replace(out / MANIFEST)
        return out

    @classmethod
    def load(cls, folder: str | Path) -> "TrainedClassifier":
        """Read a folder written by :meth:`save`; :class:`NotFoundError` when it is not one."""
        p = Path(folder)
        if not (p / MANIFEST).is_file() or not (p / WEIGHTS).is_file():
            raise NotFoundError(
                f"no classifier at {p}: expected {MANIFEST} and {WEIGHTS} (train one with "
                "`qembed classify train --output DIR`)"
            )
        try:
            manifest = json.loads((p / MANIFEST).read_text(encoding="utf-8"))
            weights = np.load(p / WEIGHTS, allow_pickle=False)
            coef, intercept = weights["coef"], weights["intercept"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, ValueError, OSError) as exc:
            raise InputError(f"{p} holds a damaged classifier: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise InputError(f"{p / MANIFEST} is not a qembed classifier manifest")
        labels = list(manifest.get("labels") or [])
        if coef.ndim != 2 or coef.shape[0] not in (1, len(labels)) or len(labels) < 2:
            raise InputError(f"{p} holds a damaged classifier: {coef.shape} weights for {len(labels)} labels")
        known = {"format", "version", "model", "instruction", "dimensions", "dim", "labels", "head",
                 "sklearn_version", "metrics"}
        return cls(model=manifest.get("model", ""), labels=labels, coef=coef, intercept=intercept,
                   instruction=manifest.get("instruction"), dimensions=manifest.get("dimensions"),
                   metrics=manifest.get("metrics") or {},
                   info={k: v for k, v in manifest.items() if k not in known})


@old_keywords
def train_classifier(
    encoder: Encoder,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    instruction: str | None = None,
    dimensions: int | None = None,
    test_size: float = 0.2,
    seed: int = 0,
    c: float = 1.0,
    refit: bool = False,
    model: str | None = None,
    progress: bool | None = False,
) -> TrainedClassifier:
    """Fit a logistic-regression head on embeddings and measure it on a held-out split.

    In: texts and their labels (any strings; at least two classes, each with at least two
    examples), ``instruction`` (``None``: the symmetric default, ``""``: none), ``test_size``
    (fraction in (0, 1) held out, stratified by label, or 0 to skip the evaluation), ``c``
    (inverse L2 strength). With ``refit`` the head is refitted on all data
    after the held-out measurement. Out: a :class:`TrainedClassifier` whose ``metrics`` holds
    ``accuracy``, ``macro_f1`` and per-label figures on the held-out split (``metrics["test"]``)
    and on the training split (``metrics["train"]``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    instruction = resolve_instruction(instruction, SYMMETRIC_INSTRUCTION)
    texts = validate_texts(texts)
    y_names = _check_training_labels(labels)
    if len(y_names) != len(texts):
        raise InputError(f"got {len(texts)} texts but {len(y_names)} labels")
    names = sorted(set(y_names))
    if len(names) < 2:
        raise InputError(f"training needs at least two distinct labels, got {names}")
    counts = {n: y_names.count(n) for n in names}
    if not 0 <= test_size < 1:
        raise InputError(f"test_size must be in [0, 1), got {test_size}", param="test_size")
    if not c > 0:
        raise InputError(f"C must be positive, got {c}")
    y = np.asarray([names.index(n) for n in y_names])
    logger.info("embedding %d labelled texts (%d labels)", len(texts), len(names))
    vectors = encoder.encode(texts, instruction=instruction, dimensions=dimensions,
                             progress=want_progress(progress, len(texts)))

    def fit(x: np.ndarray, t: np.ndarray):
        return LogisticRegression(C=c, max_iter=2000).fit(x, t)

    metrics: dict[str, Any] = {"label_counts": counts}
    if test_size > 0:
        rare = [n for n, k in counts.items() if k < 2]
        if rare:
            raise InputError(f"labels {rare} have a single example; a stratified held-out split needs "
                             "at least two per label (add examples or use --test-size 0)")
        n_test = int(np.ceil(test_size * len(texts)))
        if n_test < len(names) or len(texts) - n_test < len(names):
            raise InputError(
                f"a test split of {n_test} of {len(texts)} texts cannot hold every one of the "
                f"{len(names)} labels on both sides; change --test-size or add examples"
            )
        idx_train, idx_test = train_test_split(np.arange(len(texts)), test_size=test_size,
                                               stratify=y, random_state=seed)
        est = fit(vectors[idx_train], y[idx_train])
        to_names = np.asarray(names, dtype=object)
        metrics["test"] = _metrics.classification_metrics(
            to_names[y[idx_test]], to_names[est.predict(vectors[idx_test])], names)
        metrics["train"] = _metrics.classification_metrics(
            to_names[y[idx_train]], to_names[est.predict(vectors[idx_train])], names)
        metrics["test_size"] = test_size
        metrics["seed"] = seed
        logger.info("held-out accuracy %.4f, macro-F1 %.4f on %d texts",
                    metrics["test"]["accuracy"], metrics["test"]["macro_f1"], len(idx_test))
        if refit:
            est = fit(vectors, y)
        metrics["fitted_on"] = "all" if refit else "train"
    else:
        est = fit(vectors, y)
        metrics["fitted_on"] = "all"
    return TrainedClassifier(model=model or encoder_reference(encoder), labels=names,
                             coef=est.coef_, intercept=est.intercept_, instruction=instruction,
                             dimensions=dimensions, metrics=metrics,
                             info={"model_name": encoder.name})


__getattr__ = deprecated.module_getattr(__name__)  # old names: qembed.deprecated.NAMES
