"""Tokenisation without the model: long inputs are cut before tokenising, with the same result."""

from __future__ import annotations

import pytest

from qembed.errors import InputTooLongError
from qembed.models.inputs import CHARS_PER_TOKEN_BOUND, InputPreparer


@pytest.fixture(scope="module")
def inputs(tiny_encoder) -> InputPreparer:
    return InputPreparer.from_spec(tiny_encoder.tokenizer, {**tiny_encoder.inputs.spec(), "max_input_tokens": 64})


def test_a_huge_text_keeps_the_tokens_of_the_whole_text(inputs):
    huge = "借呗支持分几期还款, and the fox jumps. " * 20000  # ~700k characters
    assert len(huge) > 64 * CHARS_PER_TOKEN_BOUND
    whole = inputs.tokenizer(huge, truncation=True, max_length=64)["input_ids"]
    got = inputs.tokenize([huge])[0]
    assert got == whole and len(got) == 64 and got[-1] == 151643


def test_a_text_of_long_tokens_is_tokenised_whole(inputs):
    # runs of spaces are few tokens per many characters: the character cut would keep too few
    text = ("word" + " " * 200) * 40
    whole = inputs.tokenizer(text, truncation=True, max_length=64)["input_ids"]
    assert inputs.tokenize([text])[0] == whole


def test_too_long_without_truncation_names_the_input(tiny_encoder):
    strict = InputPreparer.from_spec(tiny_encoder.tokenizer, {**tiny_encoder.inputs.spec(),
                                                              "max_input_tokens": 32, "truncate": False})
    with pytest.raises(InputTooLongError, match="input 1 has at least") as err:
        strict.tokenize(["short", "long text " * 10000])
    assert err.value.limit == 32
    results = strict.tokenize_many([(["fine"], None), (["long text " * 100], None), (["also fine"], "task")])
    assert isinstance(results[1], InputTooLongError) and results[1].index == 0
    assert results[0] == strict.tokenize(["fine"]) and results[2] == strict.tokenize(["also fine"], "task")


def test_spec_round_trip(tiny_encoder):
    again = InputPreparer.from_spec(tiny_encoder.tokenizer, tiny_encoder.inputs.spec())
    texts = ["花呗怎么还款", "x"]
    assert again.tokenize(texts, "Retrieve semantically similar text") == tiny_encoder.tokenize(
        texts, "Retrieve semantically similar text")
