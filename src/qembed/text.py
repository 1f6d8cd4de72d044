"""Text helpers shared by lexical search and keyword extraction: stop words.

Two stop-word sets, for two jobs:

- :data:`SEARCH_STOP_WORDS`: English function words only (``the``, ``of``, ``is`` …; bm25s'
  list). BM25 (:func:`qembed.search.lexical.bm25_tokens`) drops them and keeps every content
  word, so a query for "system fire alarm" still matches those words.
- :data:`KEYWORD_STOP_WORDS`: the union of :data:`STOP_WORDS`, per-language lists (English from
  scikit-learn plus contractions, Chinese, Spanish, French, German, Portuguese, Arabic) that also
  hold generic words (``get``, ``find``, ``system``, 一个, 可以 …). Cluster keywords
  (:func:`qembed.clustering.keywords.keyword_tokens`) drop them: a label should name the topic.
"""

from __future__ import annotations

#: English function words dropped by BM25 (the list bm25s ships).
SEARCH_STOP_WORDS = frozenset("""
a an and are as at be but by for if in into is it no not of on or such that the their then there
these they this to was will with
""".split())

ZH_STOP_WORDS = frozenset("""
的 了 是 在 都 还 没 也 就 和 与 及 或 等 着 过 被 把 让 给 对 从 到 向 于 以 为 之 其 而 且 并 又 再 很 太 更 最 就是 还是
我 你 您 他 她 它 我们 你们 他们 她们 它们 咱们 大家 自己 别人 人家 这 那 哪 这个 那个 哪个 这些 那些 这样 那样 这么 那么
这里 那里 哪里 什么 怎么 怎样 怎么样 为什么 为何 如何 多少 几 谁 吗 呢 吧 啊 呀 哦 嗯 哈 啦 嘛 么 呐 哎 喔
有 没有 不 不是 不要 不会 不能 能 能够 可以 可能 会 要 想 应该 需要 得 地 个 一个 一些 一下 一直 一样 一次 一点
总是 每次 老是 经常 常常 已经 正在 曾经 刚 刚刚 马上 然后 接着 之后 以后 之前 以前 现在 今天 昨天 明天 时候 时间
但 但是 可是 不过 然而 而且 并且 因为 所以 因此 如果 要是 虽然 即使 还有 或者 以及 以及 比如 例如 比较 非常 特别 真的 真是
吗 啦 吧 上 下 里 中 内 外 前 后 左 右 来 去 说 做 看 用 请 谢谢 您好 你好 一 二 三 两 第 个 些 次 种 样
""".split())

ES_STOP_WORDS = frozenset("""
a al algo algunas algunos ante antes como con contra cual cuando de del desde donde durante e el él ella ellas
ellos en entre era es esa esas ese eso esos esta está están estas este esto estos fue fueron ha han hasta hay la
las le les lo los más me mi mis mucho muy nada ni no nos nosotros o os otra otras otro otros para pero poco por
porque que qué quien se sea ser si sí sin sobre son su sus también tan te tengo tiene todo todos tu tus un una
uno unos usted vez y ya yo
""".split())

FR_STOP_WORDS = frozenset("""
au aux avec ce ces dans de des du elle en et eux il ils je la le les leur lui ma mais me même mes moi mon ne nos
notre nous on ou où par pas pour qu que qui sa se ses son sur ta te tes toi ton tu un une vos votre vous est sont
été était être avoir ai as avons avez ont cette cet très plus encore aussi
""".split())

DE_STOP_WORDS = frozenset("""
aber als am an auch auf aus bei bin bis bist da dann das dass dem den der des die dies diese dieser dieses doch dort
du durch ein eine einem einen einer eines er es für hat hatte ich ihr im in ist ja jetzt kann kein keine mein mit
nach nicht noch nur ob oder schon sein sich sie sind so über um und uns unser von vor war was wenn wer wie wir wird
zu zum zur immer wieder sehr mal
""".split())

PT_STOP_WORDS = frozenset("""
ao aos as com como da das de do dos e ela elas ele eles em entre era essa esse esta este eu foi for há isso isto já
lhe mais mas me meu minha muito na não nas nem no nos nós num numa o os ou para pela pelo por quando que se sem
ser seu sua são também te tem um uma você vez
""".split())

AR_STOP_WORDS = frozenset("""
في من على إلى الى عن مع هذا هذه ذلك تلك هو هي هم هن أنا انا نحن أنت انت أنتم كان كانت يكون لا لم لن ما ماذا لماذا
كيف متى أين اين أو او ثم قد كل بعد قبل عند حتى إن ان أن الذي التي الذين بين لكن بل أي اي مرة أخرى اخرى جدا هناك
هنا لقد و ف ب ل
""".split())


def _english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    extra = {"don't", "can't", "won't", "isn't", "doesn't", "didn't", "i'm", "i've", "it's", "did", "does",
             "doing", "got", "get", "gets", "just", "really", "ll", "ve", "re", "don", "doesn", "didn"}
    return frozenset(ENGLISH_STOP_WORDS) | extra


EN_STOP_WORDS = _english_stop_words()

#: Stop words per language code; keyword extraction drops the union of all of them.
STOP_WORDS: dict[str, frozenset[str]] = {
    "en": EN_STOP_WORDS,
    "zh": ZH_STOP_WORDS,
    "es": ES_STOP_WORDS,
    "fr": FR_STOP_WORDS,
    "de": DE_STOP_WORDS,
    "pt": PT_STOP_WORDS,
    "ar": AR_STOP_WORDS,
}
#: Everything keyword extraction drops.
KEYWORD_STOP_WORDS: frozenset[str] = frozenset().union(*STOP_WORDS.values())
