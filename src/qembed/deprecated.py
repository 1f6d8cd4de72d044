"""Every old name qembed still accepts, in one place, and the release that drops them.

qembed 0.1 gave the command line, the REST bodies and the Python API one vocabulary
(docs/vocabulary.md). The names it retired keep working until qembed :data:`REMOVED_IN`; each use
says so once and names that release:

- Python keywords (:data:`KEYWORDS`, applied with :func:`old_keywords`), the older argument order
  of two functions (:data:`ARGUMENT_ORDERS`, :func:`old_argument_order`), module-level names and
  attributes (:data:`NAMES`, :data:`ATTRIBUTES`) and moved modules (:data:`MODULES`): a
  :class:`QembedDeprecationWarning`.
- Command-line options (:data:`CLI_OPTIONS`, read by :func:`qembed.commands._common.deprecated_options`):
  one ``warning: … deprecated`` line on stderr per run.
- REST body fields (:data:`REST_FIELDS`): accepted, marked ``deprecated`` in the OpenAPI schema,
  400 when given beside their new name.

The test of every entry is ``tests/test_deprecated.py``; the suite turns any other
:class:`QembedDeprecationWarning` into an error, so qembed's own code cannot use an old name.

The one keyword here that is not qembed's: sentence-transformers still calls its progress
keyword by qembed's retired name, so :func:`sentence_transformers_progress` spells it for the
calls into that library (and a search for the old word finds this module only).
"""

from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: The release that renamed these names.
SINCE = "0.1"
#: The release that drops every alias below.
REMOVED_IN = "0.3"

_PROGRESS = "show_progress_bar"  # qembed's (and sentence-transformers') old name of ``progress``


class QembedDeprecationWarning(DeprecationWarning):
    """An old qembed name was used (it goes away in qembed :data:`REMOVED_IN`)."""


def removal_note() -> str:
    """``removed in qembed 0.3``: the words every alias message ends with."""
    return f"removed in qembed {REMOVED_IN}"


def warn(message: str, *, stacklevel: int = 2) -> None:
    """Warn that an old name was used; ``stacklevel`` counts from the caller of this function."""
    warnings.warn(f"{message} (deprecated since qembed {SINCE}, {removal_note()})", QembedDeprecationWarning,
                  stacklevel=stacklevel + 1)


# ----------------------------------------------------------------------------- Python keywords
_PROGRESS_ONLY = {_PROGRESS: "progress"}

#: ``module.qualname`` of a function -> ``{old keyword: new keyword}`` (``None``: accepted and ignored).
KEYWORDS: dict[str, dict[str, str | None]] = {
    # the Encoder protocol, in every implementation
    "qembed.models.local.LocalEncoder.encode": _PROGRESS_ONLY,  # CompiledEncoder inherits it
    "qembed.models.local.LocalEncoder.embed_token_ids": _PROGRESS_ONLY,
    "qembed.models.remote.RemoteEncoder.encode": _PROGRESS_ONLY,
    "qembed.server.encoder.BatchedEncoder.encode": _PROGRESS_ONLY,
    # tasks
    "qembed.pairs.scoring.unique_encode": _PROGRESS_ONLY,
    "qembed.pairs.scoring.score_pairs": _PROGRESS_ONLY,
    "qembed.pairs.classify.ZeroShotClassifier.predict": _PROGRESS_ONLY,
    "qembed.pairs.classify.TrainedClassifier.predict": _PROGRESS_ONLY,
    "qembed.pairs.classify.train_classifier": _PROGRESS_ONLY,
    "qembed.pairs.dedup.similar_pairs": _PROGRESS_ONLY,
    "qembed.pairs.dedup.find_duplicates": {"threshold": "min_similarity", _PROGRESS: "progress", "k": None},
    "qembed.pairs.cross_encoder.PairClassifier.predict_proba": _PROGRESS_ONLY,
    "qembed.clustering.pipeline.cluster": {"k": "clusters", _PROGRESS: "progress"},
    "qembed.eval.clustering.evaluate_clustering": {"k": "clusters", _PROGRESS: "progress"},
    "qembed.eval.retrieval.evaluate_retrieval": {"query_instruction": "instruction", _PROGRESS: "progress"},
    "qembed.search.knowledge_base.KnowledgeBase.add": _PROGRESS_ONLY,
    "qembed.train.pair_classifier.train_pair_classifier": _PROGRESS_ONLY,
    "qembed.train.contrastive.tune_embeddings": _PROGRESS_ONLY,
}

#: Why an ignored keyword is ignored (added to its warning).
IGNORED_BECAUSE = {
    ("qembed.pairs.dedup.find_duplicates", "k"): "the range search finds every pair at or above min_similarity",
}


def old_keywords(fn: F) -> F:
    """Accept the old keyword names :data:`KEYWORDS` lists for ``fn`` (each use warns).

    Raises ``TypeError`` when an old name and its new name are both given.
    """
    key = f"{fn.__module__}.{fn.__qualname__}"
    renames = KEYWORDS[key]
    old_names = frozenset(renames)
    name = fn.__qualname__

    @functools.wraps(fn)
    def accept_old_keywords(*args: Any, **kwargs: Any) -> Any:
        if old_names.isdisjoint(kwargs):
            return fn(*args, **kwargs)
        for old in sorted(old_names.intersection(kwargs)):
            value = kwargs.pop(old)
            new = renames[old]
            if new is None:
                why = IGNORED_BECAUSE.get((key, old))
                warn(f"{name}(): {old} is ignored" + (f": {why}" if why else ""))
                continue
            if new in kwargs:
                raise TypeError(f"{name}() got {old}= and its new name {new}=; give {new}= only")
            warn(f"{name}(): {old} is now called {new}")
            kwargs[new] = value
        return fn(*args, **kwargs)

    accept_old_keywords.__qembed_old_keywords__ = renames  # type: ignore[attr-defined]
    return accept_old_keywords  # type: ignore[return-value]


def sentence_transformers_progress(progress: bool) -> dict[str, bool]:
    """The keyword ``SentenceTransformer.encode`` takes for a progress bar: ``**`` it into the call."""
    return {_PROGRESS: bool(progress)}


# ----------------------------------------------------------------------------- argument order
def _texts(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(t, str) for t in value)


def _encoder(value: Any) -> bool:
    return value is None or callable(getattr(value, "encode", None))


#: ``module.qualname`` -> (the old positional order, the test that a call used it).
ARGUMENT_ORDERS: dict[str, tuple[tuple[str, ...], Callable[[tuple[Any, ...]], bool]]] = {
    # cluster(texts, encoder) -> cluster(encoder, texts)
    "qembed.clustering.pipeline.cluster": (
        ("texts", "encoder"), lambda a: len(a) >= 2 and _texts(a[0]) and _encoder(a[1])),
    # evaluate_clustering(texts, labels, encoder) -> evaluate_clustering(encoder, texts, labels)
    "qembed.eval.clustering.evaluate_clustering": (
        ("texts", "labels", "encoder"),
        lambda a: len(a) >= 3 and isinstance(a[0], (list, tuple)) and _encoder(a[2]) and not _encoder(a[0])),
}


def old_argument_order(fn: F) -> F:
    """Accept the older positional order :data:`ARGUMENT_ORDERS` lists for ``fn`` (each use warns)."""
    key = f"{fn.__module__}.{fn.__qualname__}"
    old, used = ARGUMENT_ORDERS[key]
    name = fn.__qualname__

    @functools.wraps(fn)
    def accept_old_order(*args: Any, **kwargs: Any) -> Any:
        if used(args):
            warn(f"{name}({', '.join(old)}) is now {name}(encoder, ...): the encoder comes first")
            kwargs.update(zip(old, args))
            args = args[len(old):]
        return fn(*args, **kwargs)

    accept_old_order.__qembed_old_order__ = old  # type: ignore[attr-defined]
    return accept_old_order  # type: ignore[return-value]


# ----------------------------------------------------------------------------- names and modules
#: ``module`` -> ``{old name: "new.module:new_name"}``: module-level names that moved or were renamed
#: (the module gets ``__getattr__ = module_getattr(__name__)``).
NAMES: dict[str, dict[str, str]] = {
    "qembed.pairs.dedup": {"DEFAULT_THRESHOLD": "qembed.pairs.dedup:DEFAULT_MIN_SIMILARITY"},
    "qembed.pairs.classify": {"classification_metrics": "qembed.eval.classification:classification_metrics"},
}

#: ``module.Class.old_attribute`` -> its new name on the same object (see :class:`OldAttribute`).
ATTRIBUTES: dict[str, str] = {
    "qembed.pairs.dedup.DedupResult.threshold": "min_similarity",
}

#: Old module path -> the module that holds its contents now.
MODULES: dict[str, str] = {
    "qembed.train.tokens": "qembed.pairs.pair_tokens",
}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def module_getattr(module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that serves the old names :data:`NAMES` lists for ``module``."""
    table = NAMES[module]

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = table[name]
        warn(f"{module}.{name} is now {target.replace(':', '.')}")
        return _resolve(target)

    return __getattr__


class OldAttribute:
    """A read-only attribute under its old name (:data:`ATTRIBUTES`): ``threshold = OldAttribute()``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.old = f"{owner.__qualname__}.{name}"
        self.new = ATTRIBUTES[f"{owner.__module__}.{owner.__qualname__}.{name}"]

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        warn(f"{self.old} is now {self.new}")
        return getattr(obj, self.new)


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path (:data:`MODULES`) as a stand-in that serves the names of the module
    that replaced it, with a warning."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return None  # an empty module

    def exec_module(self, module: Any) -> None:
        new = importlib.import_module(MODULES[module.__name__])
        module.__doc__ = f"Moved to :mod:`{new.__name__}`."
        module.__getattr__ = functools.partial(getattr, new)  # PEP 562: every name of the new module
        # the warning names the importing line (``warnings`` skips the import machinery's frames)
        warn(f"the module {module.__name__} is now {new.__name__}", stacklevel=2)


def install_module_aliases() -> None:
    """Make the old module paths of :data:`MODULES` importable (called by ``import qembed``)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())


# ----------------------------------------------------------------------------- command line
#: Marks an old option that took a value and is now ignored (the value is dropped too).
IGNORED = object()

_NO_INSTRUCTIONS = {"--no-instructions": "--no-instruction"}
_OLD_DTYPE = {"--precision": "--dtype"}

#: Command (as typed after ``qembed``) -> ``{old option: new option or IGNORED}``.
CLI_OPTIONS: dict[str, dict[str, Any]] = {
    "similarity": {"--pairs": "--input", "-p": "--input", "--threshold": "--min-similarity",
                   "-t": "--min-similarity", "--sentence1-column": "--text1-column",
                   "--sentence2-column": "--text2-column", **_NO_INSTRUCTIONS},
    "classify zero-shot": dict(_NO_INSTRUCTIONS),
    "classify train": {"--data": "--input", **_NO_INSTRUCTIONS},
    "dedup": {"--threshold": "--min-similarity", "-t": "--min-similarity", "--k": IGNORED, **_NO_INSTRUCTIONS},
    "cluster": {"--k": "--clusters", "--csv": "--output", **_NO_INSTRUCTIONS},
    "eval clustering": {"--k": "--clusters", "--data": "--input", **_NO_INSTRUCTIONS},
    "search": dict(_NO_INSTRUCTIONS),
    "eval retrieval": dict(_NO_INSTRUCTIONS),
    "finetune classifier": {"--train": "--input", **_OLD_DTYPE},
    "finetune embedding": {"--train": "--input", **_NO_INSTRUCTIONS, **_OLD_DTYPE},
    "classify-pairs": {"--threshold": "--min-probability", **_OLD_DTYPE},
}

#: ``(command, old option)`` -> a sentence added to its warning.
CLI_NOTES: dict[tuple[str, str], str] = {
    ("dedup", "--k"): "dedup finds every pair at or above --min-similarity exactly",
    ("finetune classifier", "--precision"): "bf16 and fp32 are still accepted",
    ("finetune embedding", "--precision"): "bf16 and fp32 are still accepted",
    ("classify-pairs", "--precision"): "bf16 and fp32 are still accepted",
}

#: Commands whose input file may still come as a positional argument (hidden): command -> option.
CLI_POSITIONAL_INPUT: dict[str, str] = {
    "cluster": "--input", "dedup": "--input", "index add": "--input", "data lengths": "--input",
    "classify-pairs": "--input",
}


def cli_options(command: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The old options of ``command`` and their notes (``KeyError`` for a command without any)."""
    options = dict(CLI_OPTIONS[command])
    notes = {old: note for (cmd, old), note in CLI_NOTES.items() if cmd == command}
    return options, notes


def cli_message(old: str, new: Any, note: str | None = None) -> str:
    """The ``warning:`` line of an old option (without the ``warning: `` prefix)."""
    tail = f"{note}; {removal_note()}" if note else removal_note()
    if new is IGNORED:
        return f"{old} is deprecated and ignored ({tail})"
    return f"{old} is deprecated; use {new} ({tail})"


def cli_positional_message(option: str) -> str:
    """The ``warning:`` line of an input file given as a positional argument."""
    return f"the input file as an argument is deprecated; use {option} FILE ({removal_note()})"


# ----------------------------------------------------------------------------- REST
#: Route -> ``{old body field: new field or None (accepted and ignored)}``.
REST_FIELDS: dict[str, dict[str, str | None]] = {
    "/v1/similarity": {"threshold": "min_similarity"},
    "/v1/dedup": {"threshold": "min_similarity", "k": None},
    "/v1/cluster": {"k": "clusters"},
}


def rest_field_description(route: str, field: str) -> str:
    """The OpenAPI description of an old body field."""
    new = REST_FIELDS[route][field]
    if new is None:
        return f"Ignored: every pair at or above `min_similarity` is found. Deprecated, {removal_note()}."
    return f"Older name of `{new}`. Deprecated, {removal_note()}."


def rest_both_given(route: str, field: str) -> str:
    """The 400 message when an old field and its new name are both in a body."""
    return f"give {REST_FIELDS[route][field]} or its older name {field}, not both"


def rest_old_value(route: str, body: Any, new: str) -> Any:
    """The value of ``new`` in ``body``, or of the old field that names it (400 when both are given)."""
    from qembed.errors import InputError

    value = getattr(body, new)
    for old, target in REST_FIELDS[route].items():
        if target != new:
            continue
        old_value = getattr(body, old, None)
        if old_value is None:
            continue
        if value is not None:
            raise InputError(rest_both_given(route, old), param=new)
        value = old_value
    return value


def all_aliases() -> Mapping[str, Sequence[str]]:
    """Every old name by kind (for the docs and the tests)."""
    return {
        "python keywords": [f"{fn}({old}=)" for fn, table in KEYWORDS.items() for old in table],
        "argument order": list(ARGUMENT_ORDERS),
        "names": [f"{m}.{n}" for m, table in NAMES.items() for n in table] + list(ATTRIBUTES),
        "modules": list(MODULES),
        "cli options": [f"qembed {c} {o}" for c, table in CLI_OPTIONS.items() for o in table],
        "rest fields": [f"{r} {f}" for r, table in REST_FIELDS.items() for f in table],
    }


def markdown() -> str:
    """The tables of every old name, for docs/vocabulary.md (written at build time by its hook)."""
    def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
        return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                *("| " + " | ".join(r) + " |" for r in rows), ""]

    ignored = "ignored"
    cli = [(f"`qembed {c}`", f"`{o}`", (ignored if n is IGNORED else f"`{n}`")
            + (f" ({CLI_NOTES[(c, o)]})" if (c, o) in CLI_NOTES else ""))
           for c, t in CLI_OPTIONS.items() for o, n in t.items()]
    cli += [(f"`qembed {c}`", "the input file as an argument", f"`{o} FILE`") for c, o in CLI_POSITIONAL_INPUT.items()]
    python = [(f"`{fn}`", f"`{o}=`", ignored if n is None else f"`{n}=`") for fn, t in KEYWORDS.items()
              for o, n in t.items()]
    python += [(f"`{fn}`", f"`{fn.rsplit('.', 1)[1]}({', '.join(order)})`", "the encoder first")
               for fn, (order, _) in ARGUMENT_ORDERS.items()]
    python += [(f"`{m}`", f"`{n}`", f"`{t.replace(':', '.')}`") for m, tt in NAMES.items() for n, t in tt.items()]
    python += [(f"`{a.rsplit('.', 1)[0]}`", f"`.{a.rsplit('.', 1)[1]}`", f"`.{n}`") for a, n in ATTRIBUTES.items()]
    python += [("module", f"`{o}`", f"`{n}`") for o, n in MODULES.items()]
    rest = [(f"`{r}`", f"`{f}`", ignored if n is None else f"`{n}`") for r, t in REST_FIELDS.items()
            for f, n in t.items()]
    lines = [f"Every name below goes away in **qembed {REMOVED_IN}** (deprecated since {SINCE}).", "",
             "Command line (hidden from `--help`; one `warning:` line on stderr per run):", "",
             *table(("command", "old", "new"), cli),
             "Python (a `QembedDeprecationWarning`, a subclass of `DeprecationWarning`):", "",
             *table(("where", "old", "new"), python),
             "REST body fields (marked `deprecated` in the OpenAPI schema; 400 when given beside the new name):",
             "", *table(("route", "old field", "new field"), rest)]
    return "\n".join(lines)
