"""Every shell and Python example of README.md and docs/*.md runs as written (see runner.py for how).

The models are the tiny random ones of the test fixtures, found under the names the docs use through
a Hugging Face cache (conftest.py), offline. A block that cannot run here carries a marker comment
right above its fence, ``<!-- doc-test: skip reason="…" -->`` (its ``qembed`` commands still have
their flags checked), or ``<!-- doc-test: xfail reason="…" -->`` for a known code defect.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .blocks import all_blocks, doc_files, parse
from .runner import DocFailure, PageRun, check_cli_flags
from .workspace import placeholders, prepare

BLOCKS = all_blocks()
SLOW_WORDS = ("qembed serve", "finetune", "train_pair_classifier", "tune_embeddings", ":30000", "make serve")


def _params():
    for block in BLOCKS:
        marks = [pytest.mark.slow] if any(w in block.code for w in SLOW_WORDS) else []
        yield pytest.param(block, id=block.id, marks=marks)


@pytest.fixture(scope="module")
def pages(doc_environment, tmp_path_factory: pytest.TempPathFactory, shared: Path, doc_model_path: Path):
    """One :class:`PageRun` per page, made when its first block runs; servers stopped at the end."""
    default = PageRun([], tmp_path_factory.mktemp("default-server"), {})
    made: dict[str, PageRun] = {}

    def get(file: str) -> PageRun:
        if file not in made:
            for earlier in made.values():  # blocks run page by page: an earlier page is done, so its
                if earlier.server is not None:  # server starts stopping now (awaited at the end)
                    earlier.server.terminate()
            blocks = [b for b in BLOCKS if b.file == file]
            workdir = prepare(tmp_path_factory.mktemp(Path(file).stem), shared, doc_model_path)
            made[file] = PageRun(blocks, workdir, {"__name__": "__main__", **placeholders()}, shared=default)
        return made[file]

    yield get
    for page in [*made.values(), default]:
        if page.server is not None:
            page.server.terminate()  # all at once, then wait for each
    for page in [*made.values(), default]:
        page.stop_server()


@pytest.mark.parametrize("block", _params())
def test_doc_example(block, pages) -> None:
    page = pages(block.file)
    if block.marker == "skip":
        if block.kind == "shell":
            page.check_shell(block)  # a skipped command still names real commands and flags
        pytest.skip(f"{block.id}: {block.reason}")
    try:
        page.run(block)
    except (Exception, DocFailure) as exc:
        if block.marker == "xfail":
            pytest.xfail(f"{block.id}: {block.reason} ({type(exc).__name__}: {str(exc)[:300]})")
        raise
    if block.marker == "xfail":
        pytest.fail(f"{block.id} passes: remove its doc-test xfail marker ({block.reason})")


def test_every_page_is_read() -> None:
    """The pages exist and hold examples (a renamed folder would silently test nothing)."""
    assert len(doc_files()) > 10
    assert len(BLOCKS) > 50
    assert {b.file for b in BLOCKS} >= {"README.md", "docs/search.md", "docs/serving.md"}


def test_markers_are_parsed(tmp_path: Path, monkeypatch) -> None:
    from . import blocks

    monkeypatch.setattr(blocks, "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text('text\n\n<!-- doc-test: skip reason="needs a GPU" -->\n```bash\nqembed serve\n```\n\n'
                    "```text\nnot run\n```\n\n```python\nx = 1\n```\n", encoding="utf-8")
    found = parse(page)
    assert [(b.kind, b.marker, b.reason, b.line) for b in found] == [("shell", "skip", "needs a GPU", 4),
                                                                   ("python", None, "", 12)]
    page.write_text("<!-- doc-test: skip -->\n```bash\nqembed serve\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="reason"):
        parse(page)


@pytest.mark.parametrize("argv", [["embed", "--no-such-flag"], ["no-such-command"], ["index", "--input", "x"]])
def test_flag_check_catches_renames(argv: list[str]) -> None:
    with pytest.raises(DocFailure):
        check_cli_flags(argv)


def test_shell_lines_are_split_like_a_shell() -> None:
    cmds = PageRun.commands("QEMBED_BACKEND=onnx qembed search 'a b' --index ./kb && qembed info  # note")
    assert cmds == [(["qembed", "search", "a b", "--index", "./kb"], {"QEMBED_BACKEND": "onnx"}, False),
                    (["qembed", "info"], {}, False)]
    assert PageRun.commands("qembed serve --port 1 &") == [(["qembed", "serve", "--port", "1"], {}, True)]
    from .runner import _without_address, logical_lines

    assert logical_lines("curl a \\\n  -d '{\"x\":\n 1}'\n# c\nqembed info\n") == [
        "curl a    -d '{\"x\":\n 1}'", "# c", "qembed info"]
    assert _without_address(["qembed", "serve", "--model", "m", "--port", "30000", "--host=0.0.0.0"]) == [
        "qembed", "serve", "--model", "m"]
