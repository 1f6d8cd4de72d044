"""`qembed cluster --user-dict`: domain words jieba does not know become whole keywords."""

from __future__ import annotations

import json

from qembed.cli import main

CARD = ["我的青龙卡被冻结了", "青龙卡额度怎么提高", "申请青龙卡需要什么材料", "青龙卡年费多少钱"]
PARCEL = ["快递三天了还没送到", "快递员把包裹放错地方了", "怎么查询快递物流信息", "快递丢了怎么办"]


def _keywords(capsys, args: list[str]) -> list[list[str]]:
    assert main(args) == 0
    body = json.loads(capsys.readouterr().out)
    return [c["keywords"] for c in body["clusters"]]


def test_user_dict_words_become_keywords(tmp_path, minilm_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(CARD + PARCEL) + "\n", encoding="utf-8")
    words = tmp_path / "words.txt"
    words.write_text("青龙卡 10 n\n\n", encoding="utf-8")  # jieba's format: word [freq [tag]]
    base = ["cluster", "--input", str(texts), "--clusters", "2", "--model", str(minilm_path), "--json"]

    plain = _keywords(capsys, base)
    card_plain = next(k for k in plain if "青龙" in k)
    assert "青龙卡" not in card_plain  # jieba alone splits the card's name

    with_dict = _keywords(capsys, [*base, "--user-dict", str(words)])
    card = next(k for k in with_dict if "青龙卡" in k)
    assert card[0] == "青龙卡" and "青龙" not in card
    assert any("快递" in k for k in with_dict)


def test_missing_user_dict_is_a_usage_error(tmp_path, capsys):
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(CARD + PARCEL) + "\n", encoding="utf-8")
    code = main(["cluster", "--input", str(texts), "--clusters", "2", "--user-dict", str(tmp_path / "nope.txt")])
    err = capsys.readouterr().err
    assert code == 2 and "error: --user-dict file not found" in err
