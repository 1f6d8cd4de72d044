"""Keywords: tokenization per script, stop words, jieba with discovered words, multilingual slots."""

from __future__ import annotations

import jieba
import numpy as np

from .conftest import CHINESE, MULTILINGUAL, flatten
from qembed.clustering.keywords import (
    OUTLIER_LABEL, Tokenizer, class_tfidf, cluster_keywords, detect_language, discover_chinese_words,
    make_label, keyword_tokens,
)


def test_english_tokens_drop_stop_words_numbers_and_case():
    assert keyword_tokens("The Payment FAILED again, and again: 42 times!") == ["payment", "failed", "times"]


def test_arabic_tokens_lose_diacritics_and_stop_words():
    toks = keyword_tokens("فَشِلَتْ عملية الدفع مرة أخرى")
    assert toks == ["فشلت", "عملية", "الدفع"]


def test_chinese_uses_jieba_and_drops_stop_words():
    toks = keyword_tokens("我想开通一张信用卡")
    assert "信用卡" in toks and "开通" in toks
    assert "我" not in toks and "想" not in toks


def test_mixed_script_text_is_split_by_script():
    toks = keyword_tokens("iPhone手机的电池 battery drains")
    assert toks[:1] == ["iphone"] and "手机" in toks and "电池" in toks and "battery" in toks


def test_discovers_huabei_without_touching_global_jieba():
    texts, _ = flatten(CHINESE)
    assert "花呗" in discover_chinese_words(texts)
    tok = Tokenizer.for_corpus(texts)
    assert tok("每次还花呗都提示系统错误") == ["花呗", "提示", "系统", "错误"]
    # the process-wide jieba dictionary is unchanged
    assert "花呗" not in jieba.lcut("花呗还款总是失败")


def test_chinese_example_keywords_name_huabei():
    texts, gold = flatten(CHINESE)
    labels = np.array([list(CHINESE).index(g) for g in gold])
    kw = cluster_keywords(texts, labels, top_n=5)
    assert kw[0][0][0] == "花呗"                      # the messages: 花呗 first
    assert "信用卡" in [w for w, _ in kw[1]]
    assert "快递" in [w for w, _ in kw[2]]
    assert make_label([w for w, _ in kw[0]]).startswith("花呗_")
    # scores are sorted within a single-language cluster
    scores = [s for _, s in kw[1]]
    assert scores == sorted(scores, reverse=True)


def test_user_words_reach_jieba():
    assert "借呗" in Tokenizer(words=["借呗"])("借呗扣款没问题")
    assert "借呗" not in Tokenizer()("借呗扣款没问题")


def test_language_tags():
    assert [detect_language(t) for t in MULTILINGUAL["payment"][:3]] == ["en", "es", "ar"]
    assert detect_language("花呗还款总是失败") == "zh"
    assert detect_language("クレジットカードの支払い") == "ja"
    assert detect_language("Платёж не прошёл") == "ru"
    assert detect_language("12345 !!!") == "other"


def test_keywords_come_from_every_language_in_a_cluster():
    texts, gold = flatten(MULTILINGUAL)
    labels = np.array([0 if g == "payment" else 1 for g in gold])
    kw = cluster_keywords(texts, labels, top_n=6)
    for c in (0, 1):
        words = [w for w, _ in kw[c]]
        assert any(detect_language(w) == "ar" for w in words), words
        assert any(w in {"payment", "card", "package", "arrived"} for w in words), words
        assert any(w in {"pago", "tarjeta", "paquete", "llegado"} for w in words), words
    pay = [w for w, _ in kw[0]]
    assert "payment" in pay and "pago" in pay and "الدفع" in pay
    # the label names the cluster in each main language
    assert make_label(pay) == "payment_pago_الدفع"


def test_minor_language_still_gets_one_slot():
    texts = ["The payment failed"] * 9 + ["El pago falló"]
    texts = [f"{t} {i}" for i, t in enumerate(texts)]
    kw = cluster_keywords(texts, [0] * 10, top_n=3)
    words = [w for w, _ in kw[0]]
    assert len(words) == 3 and words[0] in ("payment", "failed")
    assert any(w in ("pago", "falló") for w in words)


def test_ctfidf_prefers_distinctive_terms():
    texts = ["apple banana", "apple cherry", "apple durian", "apple banana"]
    classes, vocab, scores, counts, _ = class_tfidf(texts, [0, 0, 1, 1], tokenizer=Tokenizer())
    v = list(vocab)
    assert list(classes) == [0, 1]
    # "apple" is everywhere, so a distinctive fruit outranks it in each class
    assert scores[0, v.index("cherry")] > scores[0, v.index("apple")]
    assert counts[0, v.index("apple")] == 2


def test_outliers_label_and_empty_keywords():
    assert make_label(["a", "b"], cluster_id=-1) == OUTLIER_LABEL
    assert make_label([], cluster_id=4) == "cluster_4"
    kw = cluster_keywords(["!!!", "???"], [0, 1])
    assert kw == {0: [], 1: []}
