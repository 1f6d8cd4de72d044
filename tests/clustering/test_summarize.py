"""Extractive summaries: the sentence splitter (Chinese and English), the choice over vectors, and
summaries with all-MiniLM-L6-v2 that pick the topical sentences among filler."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.summarize import lead, select, split_sentences, summarize
from qembed.summarize.extractive import join_sentences, rank

FILLER = ["The weather was mild on Tuesday.", "My neighbour bought a new bicycle last week.",
          "The train to the city was ten minutes late.", "She painted the kitchen walls yellow.",
          "We ordered pizza for dinner on Friday.", "The library closes early on Sundays.",
          "His cousin plays the violin in an orchestra.", "The shop sold out of umbrellas."]
#: Three documents, each three topical sentences spread among the filler.
TOPICAL = [
    ["Astronomers detected a new planet orbiting a distant star.",
     "The planet circles its star every twelve days, the telescope data show.",
     "Observations of the star's light revealed the planet's atmosphere."],
    ["The striker scored twice as the football club won the cup final.",
     "The goalkeeper saved a penalty late in the final to keep the lead.",
     "Fans of the club celebrated the cup victory after the final whistle."],
    ["The Python program crashed because a function raised an exception.",
     "Developers fixed the bug in the function and added unit tests to the code.",
     "After the fix the program passed every test and the code was released."],
]


def _document(topical: list[str], shift: int) -> str:
    filler = FILLER[shift:] + FILLER[:shift]
    return " ".join(filler[:3] + topical[:1] + filler[3:6] + topical[1:2] + filler[6:] + topical[2:])


@pytest.mark.parametrize("text, expected", [
    ("花呗还款总是失败。每次还花呗都提示系统错误！怎么办？我试了三次；还是不行……算了吧",
     ["花呗还款总是失败。", "每次还花呗都提示系统错误！", "怎么办？", "我试了三次；", "还是不行……", "算了吧"]),
    ("他说：“好的。”然后走了。", ["他说：“好的。”", "然后走了。"]),
    ("Mr. Smith paid $3.14 for coffee! Was it good? Yes... It was. See e.g. this one. J. Smith agreed.",
     ["Mr. Smith paid $3.14 for coffee!", "Was it good?", "Yes...", "It was.", "See e.g. this one.",
      "J. Smith agreed."]),
    ("The U.S. economy grew. Visit www.example.com today.\nA heading\n\n  - a list item", [
        "The U.S. economy grew.", "Visit www.example.com today.", "A heading", "- a list item"]),
    ("wait… what happened? 好的.下一句", ["wait… what happened?", "好的.", "下一句"]),
    ("...  !!! 。", []),
    ("1. First point\n2. Second point", ["1. First point", "2. Second point"]),
    ("1. 第一点\n2. 第二点", ["1. 第一点", "2. 第二点"]),
    ("# 还款指南\n- 选择金额\n1. 打开花呗。\n2.\n2) 点击还款\na) one\n(3)\n* 12\n• 确认",
     ["# 还款指南", "- 选择金额", "1. 打开花呗。", "2) 点击还款", "a) one", "• 确认"]),
])
def test_sentence_splitter(text, expected):
    found = split_sentences(text)
    assert [s.text for s in found] == expected
    assert all(text[s.start:s.end] == s.text for s in found)  # spans point into the input


def test_select_removes_redundancy_and_keeps_order():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 16))
    x = np.vstack([base[0], base[0] + 1e-4, base[1], base[2], base[0] * 1.0001])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    chosen, scores = select(x, 3, reference=base[0])
    assert chosen == sorted(chosen) and len(chosen) == 3
    assert sum(i in chosen for i in (0, 1, 4)) == 1  # near-copies of the best row count once
    order, _ = rank(x, 2, reference=base[0])
    assert order[0] in (0, 1, 4) and scores[order[0]] == pytest.approx(scores.max())
    distinct = np.vstack([x[0], x[2], x[3], -x[2]])
    assert select(distinct, 4, keys=["a", "b", "c", "b"])[0] == [0, 1, 2]  # the same key counts once


def test_summary_picks_the_topical_sentences(minilm_encoder):
    for shift, topical in enumerate(TOPICAL):
        doc = _document(topical, shift * 3)
        for method in ("centroid", "mmr") if shift == 0 else ("centroid",):
            summary = summarize(minilm_encoder, doc, 3, method=method)
            assert [s.text for s in summary.sentences] == topical, (method, shift)
            assert [s.index for s in summary.sentences] == sorted(s.index for s in summary.sentences)
            assert all(doc[s.start:s.end] == s.text for s in summary.sentences)
        assert lead(doc, 3) == (FILLER[shift * 3:] + FILLER[:shift * 3])[:3]  # the baseline gets none


def test_summary_of_a_set_of_texts_drops_repeats(minilm_encoder):
    texts = [TOPICAL[0][0], FILLER[0] + " " + TOPICAL[0][1], TOPICAL[0][0], FILLER[1], TOPICAL[0][2]]
    summary = summarize(minilm_encoder, texts, 3)
    assert [s.text for s in summary.sentences] == TOPICAL[0]
    assert [s.document for s in summary.sentences] == [0, 1, 4]
    assert summary.n_sentences == 6 and summary.to_dict()["summary"] == " ".join(TOPICAL[0])
    assert join_sentences(["花呗还款失败。", "怎么办？", "OK."]) == "花呗还款失败。怎么办？OK."


def test_summary_keeps_sentences_without_an_end_mark_apart(tiny_encoder):
    """Lines and texts without an end mark are not glued together; 。 needs no space after it."""
    summary = summarize(tiny_encoder, ["花呗还款失败", "借呗分期", "今天天气很好"], 3)
    assert summary.to_dict()["summary"] == "花呗还款失败 借呗分期 今天天气很好"
    mixed = summarize(tiny_encoder, "# 还款指南\n花呗还款失败\nThe card was declined", 3)
    assert mixed.text == "# 还款指南 花呗还款失败 The card was declined"
    assert join_sentences(["好的。", "OK"], [0, 1]) == "好的。 OK"  # between texts: always apart
    assert join_sentences(["好的。", "下一句"], [0, 0]) == "好的。下一句"


@pytest.mark.parametrize("args, kwargs, match", [
    (("   ",), {}, "the text is empty"),
    (([],), {}, "no text to summarize"),
    ((["fine.", ""],), {}, r"input\[1\] is empty"),
    (("!!! ...",), {}, "holds no sentence"),
    (("One. Two.", 0), {}, "sentences must be a positive integer"),
    (("One. Two.",), {"method": "textrank"}, "unknown summary method"),
    (("One. Two.",), {"diversity": 2}, "diversity must be"),
    (("One. Two.",), {"max_similarity": 0}, "max_similarity must be"),
])
def test_summary_bad_input(tiny_encoder, args, kwargs, match):
    with pytest.raises(InputError, match=match):
        summarize(tiny_encoder, *args, **kwargs)
