"""The fenced examples of README.md and docs/*.md, with the ``doc-test`` markers written above them.

A marker is an HTML comment on the line right before the fence (invisible on the rendered page)::

    <!-- doc-test: skip reason="needs a GPU" -->
    <!-- doc-test: xfail reason="QEMBED_MODEL ignored by load_encoder (lead fixes)" -->

``skip``: the block is not run (its ``qembed`` command lines still have their flags checked against
the CLI); ``xfail``: the block runs and is expected to fail because of a known code defect; remove
the marker once the defect is fixed (the test then passes strictly: an xfail that passes fails).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: the fence languages that run; ``text``, ``json`` and others are output or illustration
RUN_LANGUAGES = {"bash": "shell", "sh": "shell", "console": "shell", "shell": "shell", "python": "python"}

_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
_MARKER = re.compile(r"<!--\s*doc-test:\s*(\w+)(.*?)-->")
_ATTR = re.compile(r'(\w+)="([^"]*)"')


@dataclass
class Block:
    """One fenced example: where it is, its language kind, its code and its marker."""

    file: str          # relative to the repository root, e.g. "docs/search.md"
    line: int          # the line of the opening fence (1-based)
    kind: str          # "shell" or "python"
    code: str
    index: int         # its position among the runnable blocks of its page
    marker: str | None = None          # "skip" or "xfail"
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def reason(self) -> str:
        return self.attrs.get("reason", "")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def parse(path: Path) -> list[Block]:
    """The runnable fenced blocks of one Markdown file, in page order."""
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        body = [line[len(indent):] if line.startswith(indent) else line for line in lines[i + 1:j]]
        kind = RUN_LANGUAGES.get(lang)
        if kind:
            marker, attrs = None, {}
            prev = lines[i - 1].strip() if i > 0 else ""
            found = _MARKER.search(prev)
            if found:
                marker = found.group(1)
                attrs = dict(_ATTR.findall(found.group(2)))
                if marker not in {"skip", "xfail"}:
                    raise ValueError(f"{rel}:{i}: unknown doc-test marker {marker!r} (skip or xfail)")
                if not attrs.get("reason"):
                    raise ValueError(f"{rel}:{i}: a doc-test marker needs reason=\"…\"")
            blocks.append(Block(rel, i + 1, kind, "\n".join(body) + "\n", len(blocks), marker, attrs))
        i = j + 1
    return blocks


def all_blocks() -> list[Block]:
    return [block for path in doc_files() for block in parse(path)]
