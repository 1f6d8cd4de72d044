"""Split text into sentences, for Chinese and English alike.

:func:`split_sentences` returns :class:`Sentence` items (the text and its character span in the
input). The rules:

* A line break ends a sentence (headings, list items and chat lines are sentences of their own).
* Chinese (full-width) terminators end a sentence wherever they stand: ``。！？；`` and the
  ellipsis ``…`` / ``……`` (an ellipsis followed by a lower-case Latin letter does not: "wait… what").
  Runs of terminators stay together (``？！``, ``！！``), and closing quotes and brackets after them
  (``”’」』）》】"')``) belong to the sentence they close.
* ``!`` and ``?`` end a sentence when what follows is a space, the end, or a closing mark.
* ``.`` ends a sentence when a space and then an upper-case letter, a digit, an opening quote or a
  Han character follow (or the text ends) — so ``3.14``, ``e.g. this`` and ``www.example.com`` do
  not split — unless the word before it is a known abbreviation (``Mr.``, ``Dr.``, ``U.S.`` …) or a
  single capital letter (an initial, as in ``J. Smith``). ``...`` works the same way.
* A list number at the start of a line (``1.``, ``2.3.``, ``a.``, ``iv.``) does not end a sentence:
  the marker stays with its item (``1. First point``), as ``2)``, ``a)``, ``-``, ``*``, ``•`` and
  ``#`` headings do.
* Pieces with no letter or digit (stray punctuation) and pieces that are only a list number or
  marker (``2.``, ``a)``, ``(3)``) are dropped; text is never changed, only cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Terminators that end a sentence wherever they stand (Chinese/Japanese full-width punctuation).
CJK_TERMINATORS = frozenset("。！？；｡…")
#: Terminators of Latin-script text.
LATIN_TERMINATORS = frozenset("!?.")
#: Closing quotes and brackets that stay with the sentence they follow.
CLOSERS = frozenset("”’」』）》】〕〉)]}\"'")
#: Opening marks that may start a sentence after a full stop.
OPENERS = frozenset("“‘「『（《【(\"'[")
#: Words that end in a full stop without ending a sentence (compared lower-case, without the dot).
ABBREVIATIONS = frozenset({
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "eg", "ie", "no",
    "fig", "al", "inc", "ltd", "co", "corp", "dept", "approx", "u.s", "u.k", "e.u", "a.m", "p.m",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mt", "ave",
})

#: A list number or letter (what may stand before the dot of ``1.``, ``2.3.``, ``a.``, ``iv.``).
_LIST_NUMBER = re.compile(r"(?:\d{1,3}(?:\.\d{1,3})*|[A-Za-z]|[ivx]{1,4}|[IVX]{1,4})")
#: A piece that is only a list number or marker: ``2.``, ``2)``, ``(3)``, ``a)``, ``- 1.``, ``12``.
_MARKER_ONLY = re.compile(r"[-*•+#>\s]*[(（]?(?:\d{1,3}(?:\.\d{1,3})*|[A-Za-z]|[ivx]{1,4}|[IVX]{1,4})"
                          r"(?:[.)）、:：]|(?<=\d))[.)）]?")


@dataclass(frozen=True)
class Sentence:
    """One sentence: its ``text`` (stripped) and where it stands in the input (``start``, ``end``)."""

    text: str
    start: int
    end: int


def _is_han(ch: str) -> bool:
    cp = ord(ch)
    return 0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x2A6DF


def _word_before(text: str, i: int) -> str:
    """The word (letters and inner dots) that ends at position ``i`` (exclusive)."""
    j = i
    while j > 0 and (text[j - 1].isalnum() or text[j - 1] == "."):
        j -= 1
    return text[j:i]


def _full_stop_ends(text: str, i: int, end: int) -> bool:
    """Whether the ``.`` (or the last dot of ``...``) ending at ``i`` ends a sentence."""
    k = end
    while k < len(text) and text[k] in CLOSERS:
        k += 1
    if k >= len(text):
        return True
    if not text[k].isspace():
        return _is_han(text[k])  # "好的.下一句" ends; "3.14" and "a.b" do not
    while k < len(text) and text[k].isspace() and text[k] != "\n":
        k += 1
    if k >= len(text) or text[k] == "\n":
        return True
    nxt = text[k]
    if not (nxt.isupper() or nxt.isdigit() or nxt in OPENERS or _is_han(nxt)):
        return False
    if text[i] == "." and (end - i) == 1:  # a single dot: abbreviations and initials do not end
        word = _word_before(text, i)
        if word.lower().rstrip(".") in ABBREVIATIONS:
            return False
        if len(word) == 1 and word.isupper():
            return False
    return True


def _has_content(piece: str) -> bool:
    return any(ch.isalnum() for ch in piece) and not _MARKER_ONLY.fullmatch(piece)


def _is_list_number(text: str, i: int) -> bool:
    """Whether the ``.`` at ``i`` closes a list number at the start of its line (``1.``, ``- a.``)."""
    line_start = text.rfind("\n", 0, i) + 1
    prefix = text[line_start:i].lstrip().lstrip("-*•+#> \t")
    return bool(_LIST_NUMBER.fullmatch(prefix))


def split_sentences(text: str) -> list[Sentence]:
    """The sentences of ``text`` in order (see the module docstring for the rules)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    out: list[Sentence] = []
    start = 0
    n = len(text)

    def cut(a: int, b: int) -> None:
        piece = text[a:b]
        stripped = piece.strip()
        if stripped and _has_content(stripped):
            lead = len(piece) - len(piece.lstrip())
            out.append(Sentence(stripped, a + lead, a + lead + len(stripped)))

    i = 0
    while i < n:
        ch = text[i]
        if ch == "\n":
            cut(start, i)
            start = i + 1
            i += 1
            continue
        if ch in CJK_TERMINATORS or ch in LATIN_TERMINATORS:
            j = i
            while j < n and (text[j] in CJK_TERMINATORS or text[j] in LATIN_TERMINATORS):
                j += 1  # a run: "？！", "……", "...", "?!"
            run = text[i:j]
            k = j
            while k < n and text[k] in CLOSERS:
                k += 1
            if any(c in CJK_TERMINATORS for c in run):
                ends = True
                if set(run) <= {"…"}:  # "wait… what": an ellipsis inside an English sentence
                    m = k
                    while m < n and text[m] == " ":
                        m += 1
                    ends = not (m < n and text[m].isascii() and text[m].islower())
            elif run == "." and _is_list_number(text, i):
                ends = False  # "1. First point": the number stays with its item
            elif "." in run and not any(c in "!?" for c in run):
                ends = _full_stop_ends(text, j - 1, j) if len(run) == 1 else _full_stop_ends(text, i, j)
            else:  # ! or ?
                ends = k >= n or text[k].isspace() or _is_han(text[k])
            if ends:
                cut(start, k)
                start = k
                i = k
                continue
            i = j
            continue
        i += 1
    cut(start, n)
    return out


__all__ = ["ABBREVIATIONS", "CJK_TERMINATORS", "Sentence", "split_sentences"]
