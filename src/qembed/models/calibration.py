"""Sentences the int8 products are smoothed on at load (``dtype="int8"`` on torch).

:class:`~qembed.models.kernels.Int8Linear` quantizes each token's activations with one scale, so
a channel that is always large (BERT's and Qwen3's norm outputs have a few) sets the scale and the
other channels lose precision. SmoothQuant's remedy moves that range into the weights: each input
channel ``c`` of a product is divided by ``s_c = max|X_c|**alpha / max|W_c|**(1 - alpha)`` and the
weight's column multiplied by it, which leaves the product unchanged in exact arithmetic and
evens out the channels the per-token scale sees. ``max|X_c|`` is measured by running the model,
in its float type, over these sentences once at load: short and long, questions and statements,
Chinese and English, as qembed's users embed them (with and without a query instruction).
"""

from __future__ import annotations

#: Calibration sentences (documents; the first half is also run as queries).
CALIBRATION_TEXTS: tuple[str, ...] = (
    "怎么还花呗",
    "如何归还蚂蚁花呗",
    "借呗能分期吗",
    "借呗支持分几期还款",
    "花呗逾期一天会影响信用吗？",
    "我的快递三天了还没有到，物流信息也不更新，请帮忙查一下。",
    "这款手机的电池续航怎么样，玩游戏会不会发烫？",
    "会议改到下周三下午两点，地点在三楼的大会议室。",
    "北京今天有小雨，气温在十二到十八度之间。",
    "退款申请提交后一般几个工作日可以到账？",
    "How do I reset my password if I no longer have access to my email?",
    "The meeting has been moved to Wednesday at 2 pm in the main conference room.",
    "A man is playing a guitar on the street while people walk by.",
    "What are the side effects of taking ibuprofen every day?",
    "Refunds are usually processed within five business days after the request is approved.",
    "The new model reduces memory use by storing the vectors as 8-bit integers.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "def add(a, b):\n    return a + b",
    "Error 502: the upstream server did not respond in time.",
    "Order #48213 shipped on 2026-03-14 via express delivery, tracking number SF1234567890.",
    "The court ruled that the contract was void because one party had been misled about the price, "
    "and ordered the seller to return the deposit with interest.",
    "In the second quarter revenue grew 12% year over year, driven by subscriptions in Europe and "
    "Asia, while hardware sales declined slightly.",
    "用户反馈：应用在安卓系统上经常闪退，尤其是在打开相机扫码的时候，希望尽快修复这个问题，"
    "否则我们只能换用其他产品了。",
    "Qwen3-Embedding maps queries and documents into one vector space, so that a question finds the "
    "passages that answer it even when they share few words.",
)

#: The instruction the query half is run with (Qwen3-Embedding's web-search one).
CALIBRATION_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

#: SmoothQuant's migration strength: the share of each channel's range moved into the weights.
SMOOTH_ALPHA = 0.5
