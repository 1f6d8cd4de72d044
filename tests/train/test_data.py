"""Pair files, the classifier's pair layout, and the token-length report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qembed.errors import InputError
from qembed.train.data import load_pairs
from qembed.train.lengths import histogram, length_report, summarize
from qembed.pairs.pair_tokens import PairTokenizer


@pytest.fixture(scope="module")
def qwen_tokenizer(qwen_reference):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen_reference))


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_afqmc_and_stsb(shared):
    data = load_pairs(shared / "data" / "afqmc" / "dev.json", limit=100)
    assert len(data) == 100 and data.binary and set(data.int_labels()) == {0, 1}
    assert data.first[0] == "双十一花呗提额在哪" and data.labels[0] == 0.0
    sts = load_pairs(shared / "data" / "stsb_zh" / "STS-B.valid.data", labels="score")
    assert len(sts) == 1458 and not sts.binary and max(sts.labels) == 5.0
    assert sts.first[0] == "一个戴着安全帽的男人在跳舞。"
    with pytest.raises(InputError, match="label must be 0 or 1"):
        load_pairs(shared / "data" / "stsb_zh" / "STS-B.valid.data", labels="binary")


def test_missing_label_column(tmp_path):
    f = _jsonl(tmp_path / "x.jsonl", [{"sentence1": "a", "sentence2": "b"}])
    with pytest.raises(InputError, match="no label column"):
        load_pairs(f)
    assert load_pairs(f, labels="optional").labels is None


@pytest.mark.parametrize("bad", ["2", "-1", "yes", 0.5])
def test_labels_outside_0_1(tmp_path, bad):
    f = _jsonl(tmp_path / "x.jsonl", [{"sentence1": "a", "sentence2": "b", "label": "1"},
                                      {"sentence1": "c", "sentence2": "d", "label": bad}])
    with pytest.raises(InputError, match=r"record 2: label must be 0 or 1"):
        load_pairs(f)


def test_empty_and_malformed_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        load_pairs(empty)
    with pytest.raises(InputError, match="not found"):
        load_pairs(tmp_path / "missing.jsonl")
    f = _jsonl(tmp_path / "cols.jsonl", [{"text": "a", "label": 1}])
    with pytest.raises(InputError, match="sentence1 and sentence2"):
        load_pairs(f)
    f = _jsonl(tmp_path / "blank.jsonl", [{"sentence1": "a", "sentence2": " ", "label": 1}])
    with pytest.raises(InputError, match="'sentence2' is empty"):
        load_pairs(f)


def test_pair_layout_qwen(qwen_tokenizer):
    pt = PairTokenizer(qwen_tokenizer)
    eot = qwen_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # Qwen's own pair template has no separator; qembed puts the end token between the sentences.
    assert pt.template == "end-token separator" and pt.separator == [eot] and pt.end == [eot]
    assert pt.pad_id != eot  # padding must not look like the pooled end token
    a = qwen_tokenizer("花呗怎么还", add_special_tokens=False)["input_ids"]
    b = qwen_tokenizer("借呗", add_special_tokens=False)["input_ids"]
    assert pt.encode_pairs(["花呗怎么还"], ["借呗"], 64) == [a + [eot] + b + [eot]]
    long_a, long_b = "花呗" * 40, "借呗能不能分期还款"
    ids = pt.encode_pairs([long_a], [long_b], 16)[0]
    assert len(ids) == 16 and ids[-1] == eot and ids.count(eot) == 2
    full_b = qwen_tokenizer(long_b, add_special_tokens=False)["input_ids"]
    # Longest-first: the long first sentence is cut, the short second one survives whole.
    assert ids[-1 - len(full_b):-1] == full_b
    with pytest.raises(InputError, match="at least 8"):
        pt.encode_pairs(["a"], ["b"], 7)
    batch = pt.collate([[1, 2, 3], [4]])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, pt.pad_id, pt.pad_id]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_pair_layout_bert(minilm_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path))
    pt = PairTokenizer(tok)
    assert pt.template == "tokenizer" and pt.pad_id == tok.pad_token_id
    assert pt.encode_pairs(["hello world"], ["good bye"], 32)[0] == tok("hello world", "good bye")["input_ids"]


def test_length_report_matches_tokenizer(tmp_path, qwen_tokenizer):
    rows = [{"sentence1": "花呗" * k, "sentence2": "借呗怎么还", "label": "1"} for k in range(1, 21)]
    f = _jsonl(tmp_path / "pairs.jsonl", rows)
    report = length_report(f, qwen_tokenizer, max_lengths=[8, 16, 64])
    single = [len(qwen_tokenizer(t)["input_ids"]) for r in rows for t in (r["sentence1"], r["sentence2"])]
    assert report["texts"]["count"] == 40 and report["texts"]["max"] == max(single)
    assert report["texts"]["fits"]["16"] == pytest.approx(sum(x <= 16 for x in single) / 40)
    pairs = [len(qwen_tokenizer(r["sentence1"])["input_ids"]) + len(qwen_tokenizer(r["sentence2"])["input_ids"])
             for r in rows]
    assert report["pairs"]["p50"] == pytest.approx(float(__import__("numpy").percentile(pairs, 50)))
    assert report["pairs"]["max"] == max(pairs) and report["pairs"]["layout"].count("<|endoftext|>") == 2
    assert sum(b["count"] for b in report["pairs"]["histogram"]) == 20
    txt = tmp_path / "t.txt"
    txt.write_text("一\n二三\n", encoding="utf-8")
    only = length_report(txt, qwen_tokenizer)
    assert "pairs" not in only and only["texts"]["count"] == 2


def test_summaries():
    s = summarize([1, 2, 3, 4, 100], [4, 50])
    assert s["p50"] == 3 and s["max"] == 100 and s["fits"] == {"4": 0.8, "50": 0.8}
    bins = histogram(list(range(1, 101)) + [1000], bins=10)
    assert sum(b["count"] for b in bins) == 101 and bins[-1]["high"] == 1000


def test_data_lengths_cli(shared, capsys):
    from qembed.cli import main

    ref = str(shared / "models" / "Qwen3-Embedding-0.6B")
    assert main(["data", "lengths", str(shared / "data" / "afqmc" / "dev.json"), "--model", ref, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"]["count"] == 4316 and out["texts"]["count"] == 8632
    assert out["pairs"]["fits"]["64"] > 0.99 and 15 <= out["pairs"]["p50"] <= 20
    assert main(["data", "lengths", str(shared / "data" / "afqmc" / "dev.json"), "--model", ref]) == 0
    text = capsys.readouterr().out
    assert "p99" in text and "≤64" in text and "█" in text
    assert main(["data", "lengths", "nope.jsonl", "--model", ref]) == 2
    assert "error: file not found" in capsys.readouterr().err
