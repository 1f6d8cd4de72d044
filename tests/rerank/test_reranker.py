"""The in-process reranker against the model card's formula, and its Python API."""

from __future__ import annotations

import numpy as np
import pytest

from qembed.errors import InputError
from qembed.rerank import RerankResult, load_reranker

QUERY = "how do I reset my password?"
DOCS = [
    "Click 'Forgot password' on the sign-in page and follow the link we email you.",
    "Our shop opens at 9 and closes at 18 on weekdays.",
    "重置密码:在登录页点击“忘记密码”,按邮件里的链接操作。",
    "ok",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "借呗支持分几期还款? 最多可以分12期。",
]
LONG_DOC = "A document far longer than the model's input limit, which must be cut at its end. " * 40


def _pairs(query=QUERY, docs=DOCS):
    return [(query, d) for d in docs]


def test_scores_equal_the_model_card_formula_one_by_one(reranker, reference):
    for pair in _pairs():
        got = reranker.score([pair])
        assert got.shape == (1,) and got.dtype == np.float32
        assert abs(float(got[0]) - reference([pair])[0]) <= 1e-4


def test_batched_mixed_lengths_equal_the_reference_and_single_passes(reranker, reference):
    pairs = _pairs() + _pairs("花呗怎么还款", DOCS[::-1])
    batched = reranker.score(pairs)
    expected = np.array(reference(pairs))
    np.testing.assert_allclose(batched, expected, atol=1e-4)
    singles = np.array([reranker.score([p])[0] for p in pairs])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    # the scores differ from pair to pair: the comparison above is not one of constants
    assert np.ptp(expected) > 0.01


def test_padded_passes_equal_the_reference(reranker_path, reference):
    from qembed.rerank.local import Reranker

    padded = Reranker(str(reranker_path), device="cpu", dtype="float32", packed=False)
    assert not padded.packed
    np.testing.assert_allclose(padded.score(_pairs()), reference(_pairs()), atol=1e-4)


def test_instruction_changes_the_input_and_matches_the_reference(reranker, reference):
    instruction = "Given a customer question, find the help article that answers it"
    got = reranker.score(_pairs(), instruction=instruction)
    np.testing.assert_allclose(got, reference(_pairs(), instruction=instruction), atol=1e-4)
    assert not np.allclose(got, reranker.score(_pairs()), atol=1e-4)
    # "" means no instruction line at all
    none = reranker.score(_pairs(), instruction="")
    np.testing.assert_allclose(none, reference(_pairs(), instruction=None), atol=1e-4)


def test_truncation_cuts_the_document_and_keeps_prompt_and_suffix(reranker_path, reference):
    from qembed.rerank.local import Reranker

    short = Reranker(str(reranker_path), device="cpu", dtype="float32", max_input_tokens=96, compile=False)
    pairs = [(QUERY, LONG_DOC), (QUERY, DOCS[0]), (QUERY, LONG_DOC + " tail that is cut")]
    ids = short.tokenize_pairs(pairs)
    assert max(len(x) for x in ids) == 96
    assert ids[0] == reference.ids(QUERY, LONG_DOC, max_length=96)
    # the prompt's suffix stays: the last tokens are those of "<think>\n\n</think>\n\n"
    suffix = reference.tokenizer("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                                 add_special_tokens=False)["input_ids"]
    assert ids[0][-len(suffix):] == suffix
    np.testing.assert_allclose(short.score(pairs), reference(pairs, max_length=96), atol=1e-4)
    # the cut falls in the document: what differs after the cut point does not change the score
    assert abs(short.score(pairs)[0] - short.score(pairs)[2]) < 1e-6


def test_huge_documents_are_cut_before_tokenising_with_the_same_tokens(reranker):
    huge = "word " * 50_000
    ids = reranker.tokenize(QUERY, [huge])[0]
    assert len(ids) == reranker.max_input_tokens


def test_rerank_sorts_by_score_and_cuts_to_top_n(reranker):
    scores = reranker.score(_pairs())
    results = reranker.rerank(QUERY, DOCS)
    assert [r.index for r in results] == list(np.argsort(-scores, kind="stable"))
    assert all(isinstance(r, RerankResult) for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert all(r.document == DOCS[r.index] for r in results)
    top = reranker.rerank(QUERY, DOCS, top_n=2)
    assert [r.index for r in top] == [r.index for r in results[:2]]
    assert len(reranker.rerank(QUERY, DOCS, top_n=100)) == len(DOCS)
    item = top[0].to_dict()
    assert item == {"index": top[0].index, "relevance_score": top[0].score, "document": {"text": DOCS[top[0].index]}}


def test_seq_cls_checkpoint_scores_like_the_causal_model(seq_cls_path, reranker, reference):
    from qembed.rerank.local import Reranker

    seq = Reranker(str(seq_cls_path), device="cpu", dtype="float32", compile=False)
    assert seq.kind == "seq-cls" and seq.packed
    np.testing.assert_allclose(seq.score(_pairs()), reference(_pairs()), atol=1e-4)
    np.testing.assert_allclose(seq.score(_pairs()), reranker.score(_pairs()), atol=1e-5)


def test_cross_encoder_folder_matches_sentence_transformers(cross_encoder_path):
    from sentence_transformers import CrossEncoder

    rr = load_reranker(str(cross_encoder_path), device="cpu", dtype="float32")
    assert rr.kind == "cross-encoder" and not rr.supports_instructions
    pairs = _pairs()
    expected = CrossEncoder(str(cross_encoder_path), device="cpu", local_files_only=True).predict(pairs)
    np.testing.assert_allclose(rr.score(pairs), expected, atol=1e-5)
    assert np.ptp(expected) > 0.01
    results = rr.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in results] == list(np.argsort(-expected, kind="stable")[:3])
    # a long pair is cut to the model's limit like sentence-transformers does
    long_pairs = [(QUERY, LONG_DOC * 3)]
    expected_long = CrossEncoder(str(cross_encoder_path), device="cpu", local_files_only=True).predict(long_pairs)
    np.testing.assert_allclose(rr.score(long_pairs), expected_long, atol=1e-5)


def test_bf16_stays_close_to_fp32(reranker_path, reranker):
    from qembed.rerank.local import Reranker

    bf16 = Reranker(str(reranker_path), device="cpu", dtype="bfloat16", compile=False)
    assert bf16.info()["dtype"] == "bfloat16"
    np.testing.assert_allclose(bf16.score(_pairs()), reranker.score(_pairs()), atol=0.03)


def test_forward_batch_returns_one_score_column(reranker):
    ids = reranker.tokenize(QUERY, DOCS[:3])
    out = reranker.forward_batch(ids)
    assert out.shape == (3, 1) and out.dtype == np.float32
    assert ((out > 0) & (out < 1)).all()


@pytest.mark.parametrize("call, message", [
    (lambda r: r.rerank("", DOCS), "query is empty"),
    (lambda r: r.rerank(QUERY, []), "documents is empty"),
    (lambda r: r.rerank(QUERY, "one string"), "documents must be a list"),
    (lambda r: r.rerank(QUERY, ["fine", ""]), "documents[1]"),
    (lambda r: r.rerank(QUERY, ["fine", 3]), "documents[1]"),
    (lambda r: r.rerank(QUERY, DOCS, top_n=0), "top_n must be at least 1"),
    (lambda r: r.rerank(QUERY, DOCS, instruction=5), "instruction must be a string"),
    (lambda r: r.score([]), "pairs is empty"),
    (lambda r: r.score([("q",)]), "pairs[0]"),
    (lambda r: r.score([("q", "")]), "pairs[0][1]"),
])
def test_bad_input_raises_a_clear_error(reranker, call, message):
    with pytest.raises(InputError) as info:
        call(reranker)
    assert message in str(info.value)


def test_a_folder_that_is_no_model_fails_clearly(tmp_path):
    from qembed.errors import QembedError

    with pytest.raises(QembedError, match="does not exist"):
        load_reranker(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(QembedError, match="config.json"):
        load_reranker(str(tmp_path / "empty"))


def test_sentence_transformers_cross_encoder_with_the_template_agrees(reranker_path, reranker):
    from sentence_transformers import CrossEncoder

    from qembed.rerank.inputs import qwen3_chat_template

    ce = CrossEncoder(str(reranker_path), device="cpu", local_files_only=True,
                      processor_kwargs={"chat_template": qwen3_chat_template()})
    np.testing.assert_allclose(ce.predict(_pairs()), reranker.score(_pairs()), atol=1e-5)


def test_int8_products_score_close_to_float32(reranker, reranker_path, cross_encoder_path):
    from qembed.models.kernels import int8_usable
    from qembed.rerank.local import Reranker

    if not int8_usable():
        pytest.skip("this torch build has no oneDNN int8 linear")
    int8 = Reranker(str(reranker_path), device="cpu", dtype="int8", compile=False)
    assert int8.info()["dtype"] == "int8" and int8.packed
    got, want = int8.score(_pairs()), reranker.score(_pairs())
    assert np.abs(got - want).max() < 0.02, (got, want)
    with pytest.raises(InputError, match="int8 runs the packed passes of Qwen3 rerankers"):
        Reranker(str(cross_encoder_path), device="cpu", dtype="int8")
