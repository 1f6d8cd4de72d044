"""Fixtures shared by the clustering tests: hand-written topic sets."""

from __future__ import annotations

import pytest

#: Four clearly separate English topics, eight texts each.
TOPICS: dict[str, list[str]] = {
    "cooking": [
        "Bake the bread in a hot oven for forty minutes",
        "Whisk the eggs with sugar before adding the flour",
        "This soup recipe needs garlic, onions and fresh basil",
        "Simmer the tomato sauce slowly and stir the pasta",
        "Roast the chicken with rosemary and lemon in the oven",
        "Knead the dough until it is smooth, then let the bread rise",
        "A pinch of salt makes the chocolate cake recipe taste richer",
        "Fry the onions in butter before adding the rice",
    ],
    "football": [
        "The striker scored a goal in the final minute of the match",
        "The football team won the league after a penalty shootout",
        "The goalkeeper saved two penalties in the cup final",
        "Fans cheered as the team scored a second goal",
        "The coach changed the football team's formation at half time",
        "The referee showed a red card to the defender during the match",
        "The midfielder passed the ball and the striker scored",
        "Our club signed a new goalkeeper before the football season",
    ],
    "astronomy": [
        "The telescope captured a distant galaxy full of stars",
        "Astronomers discovered a new planet orbiting a nearby star",
        "The moon passes between the earth and the sun during an eclipse",
        "A comet with a bright tail crossed the night sky",
        "Black holes bend the light of stars around them",
        "The space telescope measured the planet's atmosphere",
        "Mars is a red planet with the tallest volcano in the solar system",
        "Astronomers watched the star explode into a supernova",
    ],
    "programming": [
        "The Python function raised an exception because of a missing variable",
        "Compile the code and fix the syntax errors in the program",
        "Write unit tests for every function in the software library",
        "The database query in the program returns the wrong rows",
        "Refactor the code to remove the duplicated Python functions",
        "A memory leak in the program crashed the server software",
        "Use a debugger to step through the code line by line",
        "The compiler reported a type error in the source code",
    ],
}

#: Texts of the same four topics that :data:`TOPICS` does not hold (placed by a saved topic model).
HELD_BACK: dict[str, list[str]] = {
    "cooking": [
        "Chop the carrots and add them to the stew with a little butter",
        "Preheat the oven before you bake the apple pie",
        "Season the steak with pepper and grill it for five minutes",
        "Mix the flour, yeast and water to make pizza dough",
    ],
    "football": [
        "The winger crossed the ball and the striker headed it into the goal",
        "Both teams scored twice and the match ended in a draw",
        "The goalkeeper was injured and left the football pitch",
        "The club sacked its coach after five defeats in the league",
    ],
    "astronomy": [
        "Saturn's rings can be seen through a small telescope",
        "The astronauts photographed the stars from the space station",
        "A meteor shower lit up the night sky over the observatory",
        "Jupiter is the largest planet in our solar system",
    ],
    "programming": [
        "The program crashed with a null pointer exception in the parser",
        "Install the library and import it at the top of your Python script",
        "The loop in this function never ends because of an off-by-one bug",
        "Push the code to the repository after the tests pass",
    ],
}

#: A fifth topic none of the others resembles: it should come out as outliers, then as a new topic.
NEW_TOPIC: list[str] = [
    "Water the tomato plants every morning during the summer",
    "Prune the rose bushes in early spring before new growth appears",
    "Add compost to the garden soil before planting vegetables",
    "Pull the weeds from the flower beds after it rains",
    "Plant the tulip bulbs in autumn so they bloom in spring",
    "Mulch around the shrubs keeps the soil moist in the garden",
    "The gardener planted lettuce seeds in rows in the vegetable patch",
    "Repot the houseplants when their roots fill the pot",
]

#: The issue's Chinese example (花呗 payment failures) plus two other topics.
CHINESE = {
    "huabei": ["花呗还款总是失败", "每次还花呗都提示系统错误", "借呗扣款没问题,花呗老是卡住",
               "建议优化花呗支付通道", "希望提升花呗稳定性"],
    "card": ["我想开通一张信用卡", "信用卡额度怎么提高", "信用卡年费是多少钱", "信用卡账单什么时候出"],
    "delivery": ["快递三天了还没送到", "快递员把包裹放错地方了", "怎么查询快递物流信息"],
}

#: The issue's multilingual example: one topic in English, Spanish and Arabic, and a second topic.
MULTILINGUAL = {
    "payment": ["My payment failed again", "Mi pago falló otra vez", "فشلت عملية الدفع مرة أخرى",
                "The card payment was declined", "El pago con tarjeta fue rechazado"],
    "delivery": ["Where is my package?", "¿Dónde está mi paquete?", "My package has not arrived yet",
                 "Mi paquete todavía no ha llegado", "أين الطرد الخاص بي؟"],
}


def flatten(groups: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """``(texts, gold topic of each text)`` in group order."""
    texts, gold = [], []
    for name, items in groups.items():
        texts += items
        gold += [name] * len(items)
    return texts, gold


@pytest.fixture(scope="session")
def topic_texts() -> tuple[list[str], list[str]]:
    return flatten(TOPICS)


@pytest.fixture(scope="session")
def topic_vectors(minilm_encoder, topic_texts):
    """all-MiniLM-L6-v2 embeddings of :data:`TOPICS`, computed once."""
    return minilm_encoder.encode(topic_texts[0])


def blobs(sizes: list[int], dim: int = 32, spread: float = 0.05, seed: int = 0):
    """Unit vectors in well separated groups of the given sizes, and each vector's group."""
    import numpy as np

    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), dim))
    x = centres[groups] + spread * np.linalg.norm(centres, axis=1).mean() * rng.normal(size=(len(groups), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32"), groups
