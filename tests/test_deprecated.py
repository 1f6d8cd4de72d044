"""Every old name qembed still accepts (``qembed.deprecated``), exercised: it still works, it warns
once, and its warning names the release that drops it.

The suite turns any other ``QembedDeprecationWarning`` into an error (pyproject.toml), so an old
name used anywhere else in qembed, its examples or its tests fails there.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from qembed import deprecated
from qembed.cli import app, main
from qembed.commands._common import rewrite_deprecated
from qembed.deprecated import IGNORED, REMOVED_IN, QembedDeprecationWarning

ROOT = Path(__file__).resolve().parents[1]
REMOVAL = f"removed in qembed {REMOVED_IN}"


def _object(path: str) -> Any:
    """``qembed.pairs.classify.ZeroShotClassifier.predict`` -> that attribute."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise LookupError(path)


def _one_warning(record: pytest.WarningsRecorder, *needles: str) -> str:
    messages = [str(w.message) for w in record if issubclass(w.category, QembedDeprecationWarning)]
    assert len(messages) == 1, messages  # warns once, not once per layer
    assert REMOVAL in messages[0] and all(n in messages[0] for n in needles), messages[0]
    return messages[0]


# --------------------------------------------------------------------------- the suite's filter
def test_qembed_deprecations_fail_the_suite_and_third_party_ones_do_not():
    with pytest.raises(QembedDeprecationWarning, match=re.escape(REMOVAL)):
        deprecated.warn("something old")  # the pyproject filter makes it an error
    warnings.warn("a library's own deprecation", DeprecationWarning)  # ignored, as before
    assert issubclass(QembedDeprecationWarning, DeprecationWarning)


def test_no_old_progress_keyword_outside_the_alias_module():
    old = "show_" + "progress_bar"
    found = [str(p.relative_to(ROOT)) for top in ("src", "examples", "docs") for p in (ROOT / top).rglob("*")
             if p.is_file() and p.suffix in {".py", ".md"} and old in p.read_text(encoding="utf-8")]
    assert found == ["src/qembed/deprecated.py"]


def test_sentence_transformers_keeps_its_own_keyword():
    from sentence_transformers import SentenceTransformer

    (key, value), = deprecated.sentence_transformers_progress(0).items()
    assert key in inspect.signature(SentenceTransformer.encode).parameters and value is False


# --------------------------------------------------------------------------- Python keywords
KEYWORD_CASES = [(fn, old, new) for fn, table in sorted(deprecated.KEYWORDS.items()) for old, new in table.items()]


@pytest.mark.parametrize("function, old, new", KEYWORD_CASES)
def test_every_old_keyword_maps_onto_its_new_name(function, old, new):
    real = _object(function)
    assert getattr(real, "__qembed_old_keywords__", None) is deprecated.KEYWORDS[function], \
        f"{function} is not decorated with qembed.deprecated.old_keywords"
    params = inspect.signature(real).parameters
    assert old not in params and (new is None or new in params), list(params)

    # the same table, through the same decorator, around a function that shows what it receives
    def receiver(*args, **kwargs):
        return kwargs
    receiver.__module__, receiver.__qualname__ = real.__module__, real.__qualname__
    wrapped = deprecated.old_keywords(receiver)
    with pytest.warns(QembedDeprecationWarning) as record:
        got = wrapped(**{old: 0.5})
    _one_warning(record, old)
    assert got == ({} if new is None else {new: 0.5})
    if new is not None:
        with pytest.raises(TypeError, match=f"give {new}= only"):
            wrapped(**{old: 1, new: 2})
    assert wrapped(other=3) == {"other": 3}  # new names pass straight through, without a warning


def test_encoders_take_the_old_progress_keyword(tiny_encoder):
    new = tiny_encoder.encode(["a cat", "a dog"], progress=False)
    with pytest.warns(QembedDeprecationWarning) as record:
        old = tiny_encoder.encode(["a cat", "a dog"], **{"show_" + "progress_bar": False})
    assert _one_warning(record, "LocalEncoder.encode()", "progress").startswith("LocalEncoder.encode()")
    assert record[0].filename == __file__  # the warning points at the caller's line
    np.testing.assert_array_equal(new, old)
    ids = tiny_encoder.tokenize(["a cat"], None)
    with pytest.warns(QembedDeprecationWarning):
        tokens = tiny_encoder.embed_token_ids(ids, **{"show_" + "progress_bar": False})
    np.testing.assert_allclose(tokens, new[:1], atol=1e-5)


def test_task_functions_take_their_old_keywords(tiny_encoder):
    from qembed.pairs.classify import ZeroShotClassifier, train_classifier
    from qembed.pairs.dedup import find_duplicates
    from qembed.pairs.scoring import score_pairs

    old_progress = {"show_" + "progress_bar": False}
    with pytest.warns(QembedDeprecationWarning) as record:
        old = find_duplicates(tiny_encoder, ["a", "a", "b"], threshold=0.999, k=3, **old_progress)
    assert len(record) == 3 and all(REMOVAL in str(w.message) for w in record)
    assert any("k is ignored: the range search" in str(w.message) for w in record)
    assert old.min_similarity == 0.999 and [g.members for g in old.groups] == [[0, 1]]
    with pytest.warns(QembedDeprecationWarning) as record:
        scores = score_pairs(tiny_encoder, ["a cat"], ["a dog"], **old_progress)
    _one_warning(record, "score_pairs()")
    np.testing.assert_allclose(scores, score_pairs(tiny_encoder, ["a cat"], ["a dog"]))
    clf = ZeroShotClassifier(tiny_encoder, ["animals", "money"])
    with pytest.warns(QembedDeprecationWarning) as record:
        assert clf.predict(["a cat"], **old_progress) == clf.predict(["a cat"])
    _one_warning(record, "ZeroShotClassifier.predict()")
    texts, labels = ["a cat", "a dog", "a bank", "a loan"] * 2, ["pet", "pet", "money", "money"] * 2
    with pytest.warns(QembedDeprecationWarning) as record:
        head = train_classifier(tiny_encoder, texts, labels, test_size=0, **old_progress)
    _one_warning(record, "train_classifier()")
    with pytest.warns(QembedDeprecationWarning) as record:
        assert head.predict(tiny_encoder, ["a cat"], **old_progress) == head.predict(tiny_encoder, ["a cat"])
    _one_warning(record, "TrainedClassifier.predict()")


def test_knowledge_base_add_takes_the_old_keyword(tiny_encoder):
    from qembed.search.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(None, tiny_encoder)
    with pytest.warns(QembedDeprecationWarning) as record:
        added = kb.add(["a cat sat", "a dog ran"], save=False, **{"show_" + "progress_bar": False})
    _one_warning(record, "KnowledgeBase.add()")
    assert added["documents"] == 2


def test_evaluate_retrieval_takes_its_old_keywords(tiny_encoder):
    from qembed.eval.retrieval import CUTOFFS, BeirData, evaluate_retrieval

    data = BeirData(corpus=[{"_id": "d1", "text": "a cat"}, {"_id": "d2", "text": "a dog"}],
                    queries={"q1": "cat"}, qrels={"q1": {"d1": 1}})
    with pytest.warns(QembedDeprecationWarning) as record:
        old = evaluate_retrieval(tiny_encoder, data, query_instruction="", **{"show_" + "progress_bar": False})
    assert len(record) == 2 and "query_instruction is now called instruction" in str(record[0].message)
    new = evaluate_retrieval(tiny_encoder, data, instruction="")
    assert {k: old["results"]["dense"][k] for k in CUTOFFS} == {k: new["results"]["dense"][k] for k in CUTOFFS}


# --------------------------------------------------------------------------- argument order
TEXTS = ["cats purr", "dogs bark", "cats sleep", "dogs run", "stocks fell", "bonds rose"]


def test_cluster_takes_the_old_argument_order(tiny_encoder):
    from qembed.clustering import cluster

    with pytest.warns(QembedDeprecationWarning) as record:
        old = cluster(TEXTS, tiny_encoder, k=2, top_keywords=1)
    assert len(record) == 2 and any("the encoder comes first" in str(w.message) for w in record)
    new = cluster(tiny_encoder, TEXTS, clusters=2, top_keywords=1)
    assert [t.cluster for t in old.texts] == [t.cluster for t in new.texts]


def test_evaluate_clustering_takes_the_old_argument_order(tiny_encoder):
    from qembed.eval.clustering import evaluate_clustering

    gold = ["pets"] * 4 + ["money"] * 2
    with pytest.warns(QembedDeprecationWarning) as record:
        old = evaluate_clustering(TEXTS, gold, tiny_encoder, baseline=False)
    _one_warning(record, "evaluate_clustering(texts, labels, encoder)")
    assert old["scores"] == evaluate_clustering(tiny_encoder, TEXTS, gold, baseline=False)["scores"]


@pytest.mark.parametrize("function", sorted(deprecated.ARGUMENT_ORDERS))
def test_every_old_argument_order_is_installed(function):
    real = _object(function)
    assert getattr(real, "__qembed_old_order__", None) == deprecated.ARGUMENT_ORDERS[function][0]
    assert list(inspect.signature(real).parameters)[0] == "encoder"


# --------------------------------------------------------------------------- names and modules
@pytest.mark.parametrize("module, name, target", [(m, n, t) for m, table in sorted(deprecated.NAMES.items())
                                                  for n, t in table.items()])
def test_every_old_module_name(module, name, target):
    mod = importlib.import_module(module)
    with pytest.warns(QembedDeprecationWarning) as record:
        value = getattr(mod, name)
    _one_warning(record, f"{module}.{name}", target.replace(":", "."))
    new_module, _, new_name = target.partition(":")
    assert value is getattr(importlib.import_module(new_module), new_name)
    with pytest.raises(AttributeError):
        mod.no_such_name  # noqa: B018
    with pytest.warns(QembedDeprecationWarning):
        exec(f"from {module} import {name}", {})


def test_every_old_attribute(tiny_encoder):
    from qembed.pairs.dedup import find_duplicates

    assert deprecated.ATTRIBUTES == {"qembed.pairs.dedup.DedupResult.threshold": "min_similarity"}
    result = find_duplicates(tiny_encoder, ["a", "a", "b"], min_similarity=0.95)
    with pytest.warns(QembedDeprecationWarning) as record:
        assert result.threshold == result.min_similarity == 0.95
    _one_warning(record, "DedupResult.threshold is now min_similarity")


@pytest.mark.parametrize("old, new", sorted(deprecated.MODULES.items()))
def test_every_moved_module(old, new, monkeypatch):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(QembedDeprecationWarning) as record:
        module = importlib.import_module(old)
    _one_warning(record, f"the module {old} is now {new}")
    target = importlib.import_module(new)
    public = [n for n in vars(target) if not n.startswith("_") and getattr(vars(target)[n], "__module__", "") == new]
    assert public and all(getattr(module, n) is getattr(target, n) for n in public)
    monkeypatch.delitem(sys.modules, old)
    with pytest.warns(QembedDeprecationWarning) as record:
        exec(f"from {old} import {public[0]}", {"__name__": "someone"})
    assert len(record) == 1


# --------------------------------------------------------------------------- command line
def _commands() -> dict[str, Any]:
    def walk(cmd: Any, path: tuple[str, ...] = ()):
        for name, child in sorted((getattr(cmd, "commands", None) or {}).items()):
            yield from walk(child, (*path, name)) if getattr(child, "commands", None) else [(" ".join((*path, name)), child)]
    return dict(walk(typer.main.get_command(app)))


CLI_CASES = [(c, o, n) for c, table in sorted(deprecated.CLI_OPTIONS.items()) for o, n in sorted(table.items(),
                                                                                                   key=str)]


def test_each_command_carries_exactly_its_table():
    commands = _commands()
    carried = {name: cmd.old_options for name, cmd in commands.items() if getattr(cmd, "old_options", None)}
    assert carried == deprecated.CLI_OPTIONS


@pytest.mark.parametrize("command, old, new", CLI_CASES)
def test_every_old_option(command, old, new, capsys):
    from qembed.commands._common import reset_warnings

    reset_warnings()
    cmd = _commands()[command]
    assert old not in {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts}  # not in --help
    args = [old, "x", "y"] if not old.startswith("--no-") else [old, "y"]
    out = rewrite_deprecated(args, cmd.old_options, cmd.old_option_notes)
    if new is IGNORED:
        assert out == ["y"]
    elif old.startswith("--no-"):
        assert out == [new, "y"]
    else:
        assert out == [new, "x", "y"]
    rewrite_deprecated(args, cmd.old_options, cmd.old_option_notes)  # a second use in the same run
    err = capsys.readouterr().err
    assert err.count("warning: ") == 1 and f"warning: {old} is deprecated" in err and REMOVAL in err
    if new is not IGNORED:
        assert f"use {new}" in err
        assert new in {o for p in cmd.params for o in p.opts}  # the new name is a real option


@pytest.mark.parametrize("command, option", sorted(deprecated.CLI_POSITIONAL_INPUT.items()))
def test_every_old_positional_input_is_a_hidden_argument(command, option):
    cmd = _commands()[command]
    hidden = [p for p in cmd.params if p.param_type_name == "argument" and getattr(p, "hidden", False)]
    assert len(hidden) == 1 and option in {o for p in cmd.params for o in p.opts}


def test_old_options_work_end_to_end_and_warn_once(capsys, tiny_model_path, tmp_path: Path):
    src = tmp_path / "t.txt"
    src.write_text("a cat\na cat\na dog\n", encoding="utf-8")
    args = [str(src), "--threshold", "0.5", "--k", "5", "-m", str(tiny_model_path), "--dtype", "float32",
            "--json", "--threshold", "0.99"]  # the last value wins, as with any option given twice
    assert main(["dedup", *args]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["min_similarity"] == 0.99 and doc["n_groups"] == 1 and doc["keep"] == [0, 2]
    assert captured.err.count("warning: --threshold is deprecated; use --min-similarity "
                              f"({REMOVAL})") == 1  # once a run
    assert f"warning: --k is deprecated and ignored (dedup finds every pair at or above --min-similarity " \
           f"exactly; {REMOVAL})" in captured.err
    assert f"use --input FILE ({REMOVAL})" in captured.err
    # hidden: not in the help, not even the FILE argument in the usage line
    assert main(["dedup", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--threshold" not in out and "--k " not in out and "[file]" not in out.lower()


def test_rewrite_of_attached_and_separated_values(capsys):
    mapping = {"--pairs": "--input", "-t": "--min-similarity", "--threshold": "--min-similarity", "--k": IGNORED}
    args = ["--pairs", "p.jsonl", "-t0.9", "--threshold=0.8", "--k", "5", "--k=7", "text", "--", "--k"]
    assert rewrite_deprecated(args, mapping) == [
        "--input", "p.jsonl", "--min-similarity", "0.9", "--min-similarity=0.8", "text", "--", "--k"]
    err = capsys.readouterr().err
    assert "warning: --pairs is deprecated; use --input" in err and "warning: --k is deprecated and ignored" in err
    assert rewrite_deprecated(["--input", "x", "-m", "model"], mapping) == ["--input", "x", "-m", "model"]


# --------------------------------------------------------------------------- REST
@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    from qembed.config import Settings
    from qembed.server.app import create_app

    return create_app(Settings(model="unused-model")).openapi()


def _route_schema(openapi: dict[str, Any], route: str) -> dict[str, Any]:
    ref = openapi["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return openapi["components"]["schemas"][ref.rsplit("/", 1)[1]]


@pytest.mark.parametrize("route, field, new", [(r, f, n) for r, table in sorted(deprecated.REST_FIELDS.items())
                                               for f, n in table.items()])
def test_every_old_rest_field(openapi, route, field, new):
    schema = _route_schema(openapi, route)
    spec = schema["properties"][field]
    assert spec.get("deprecated") is True and REMOVAL in spec["description"]
    if new is None:
        return
    assert new in schema["properties"] and not schema["properties"][new].get("deprecated")

    class Body:  # the two attributes the route reads from its request model
        pass

    body = Body()
    setattr(body, new, None)
    setattr(body, field, 3)
    assert deprecated.rest_old_value(route, body, new) == 3
    setattr(body, new, 4)
    from qembed.errors import InputError

    with pytest.raises(InputError, match=f"give {new} or its older name {field}, not both"):
        deprecated.rest_old_value(route, body, new)


def test_the_alias_list_covers_every_kind():
    kinds = deprecated.all_aliases()
    assert set(kinds) == {"python keywords", "argument order", "names", "modules", "cli options", "rest fields"}
    assert all(kinds.values())


def test_the_docs_page_renders_the_tables_from_this_module():
    page = (ROOT / "docs" / "vocabulary.md").read_text(encoding="utf-8")
    assert "<!-- qembed:deprecated -->" in page and f"removed in qembed {REMOVED_IN}" in page
    rows = deprecated.markdown().splitlines()
    for command, table in deprecated.CLI_OPTIONS.items():
        for old in table:
            assert any(r.startswith(f"| `qembed {command}` | `{old}` |") for r in rows), (command, old)
    for function, table in deprecated.KEYWORDS.items():
        for old in table:
            assert f"| `{function}` | `{old}=` |" in "\n".join(rows), (function, old)
    for route, table in deprecated.REST_FIELDS.items():
        for old in table:
            assert any(r.startswith(f"| `{route}` | `{old}` |") for r in rows), (route, old)
    for old in [*deprecated.MODULES, *(n for t in deprecated.NAMES.values() for n in t)]:
        assert f"`{old}`" in "\n".join(rows), old
