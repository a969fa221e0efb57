"""Judgement: which ranked cells kb presents as answers.

Dense retrieval ranks every cell, so a ranking alone never says "nothing here". The judge
looks at evidence that can be explained to a user and decides, per hit, ``confident``:

* **Does the table speak about this at all?** The query's content nouns are looked up in
  what kb knows: the table's own words (the lexical index), the vocabulary
  (``corpus/synonyms.yaml``) and the organisation names and aliases. A query whose
  content nouns are mostly *unknown* (認知症, 虐待, 透析 …) asks about something no
  organisation wrote about, however close its embedding lands.
* **How far above background does the best cell score?** The query's best cell similarity
  minus its best similarity to a fixed set of everyday sentences about other things
  (weather, sport, cooking …). Multilingual-e5 gives every pair a high cosine; the margin
  over background is what separates a real match from the general level.
* **Which hits share the answer's evidence?** Once a query is judged answerable, a hit is
  confident when its own dense similarity is close to the best one, or it contains the
  query's own content words.

The weights are fitted by logistic regression on the graded and the unanswerable queries
of ``eval/`` (``kb calibrate``) and stored in ``calibration.json`` next to this module, per
embedder; cross-validation measures them on queries left out of the fit
(:func:`kb.apps.calibrate.cross_validated`).
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from itertools import accumulate
from pathlib import Path

import numpy as np

from kb.retrieval.analysis import Analyzer, Token
from kb.retrieval.vocabulary import normalised, word_pattern

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
ANSWER_DEPTH = 10  # the hits a user reads first: where an answer must show its words

# Everyday sentences about things no care-coordination table talks about: the level of
# similarity any text reaches with a query, whatever it says.
BACKGROUND = (
    "明日の天気は晴れのち曇りで、午後から風が強くなる見込みです。",
    "プロ野球の開幕戦は満員の観客で盛り上がった。",
    "カレーを作るときは玉ねぎをじっくり炒めると甘みが出る。",
    "株式市場では半導体関連の銘柄が値上がりした。",
    "新しいスマートフォンはカメラの性能が大きく向上した。",
    "京都の紅葉は十一月下旬が見頃です。",
    "住宅ローンの金利が上がり、返済額が増えている。",
    "電車の遅延により、通勤時間帯の駅は混雑した。",
    "図書館で歴史小説を三冊借りた。",
    "ゴミの収集日は燃えるゴミが火曜日と金曜日です。",
    "選挙の投票率は前回を下回った。",
    "温泉旅館で地元の料理を楽しんだ。",
    "マラソン大会の参加者は一万人を超えた。",
    "新しいソフトウェアの更新で不具合が修正された。",
    "農家は今年の米の収穫量が増えたと話している。",
    "美術館で印象派の絵画展が開かれている。",
    "自動車の販売台数が前年より増加した。",
    "猫は一日の大半を寝て過ごす。",
    "海外旅行に行く前にパスポートの期限を確認する。",
    "ピアノの発表会に向けて毎日練習している。",
    "The weather tomorrow will be sunny with a chance of rain in the evening.",
    "The football team won the championship after extra time.",
    "Stock prices rose sharply after the central bank announcement.",
    "This recipe uses flour, butter and sugar to bake a simple cake.",
    "The new laptop has a faster processor and a longer battery life.",
    "Tourists visited the old castle and the famous temple.",
    "The train was delayed because of heavy snow.",
    "She borrowed three novels from the public library.",
    "The museum opened a new exhibition of modern art.",
    "Farmers expect a good harvest this year.",
    "スーパーの特売で野菜が安くなっていた。",
    "高校の文化祭では演劇や模擬店が行われた。",
    "引っ越しの荷造りに三日かかった。",
    "庭の桜が満開になった。",
    "会社の会議室で新製品の販売計画を話し合った。",
    "宇宙望遠鏡が遠い銀河の写真を撮影した。",
    "週末は家族で動物園に出かけた。",
    "新しいラーメン店の前に行列ができている。",
    "The orchestra played a symphony by Beethoven.",
    "The airline added new routes to Asia.",
)

# English function words carry no topic (Sudachi tags every ASCII word as a noun).
_ENGLISH_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "for",
        "to",
        "in",
        "on",
        "at",
        "by",
        "with",
        "and",
        "or",
        "but",
        "not",
        "no",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "am",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "their",
        "they",
        "them",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "i",
        "me",
        "my",
        "who",
        "what",
        "why",
        "how",
        "when",
        "where",
        "which",
        "will",
        "would",
        "can",
        "could",
        "should",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "many",
        "much",
        "more",
        "most",
        "some",
        "any",
        "all",
        "about",
        "from",
        "as",
        "into",
        "than",
        "then",
        "so",
        "if",
        "is",
        "it",
    ]
)


@dataclass(frozen=True)
class QueryEvidence:
    """What speaks for the table having an answer to a query."""

    content: tuple[str, ...]  # the query's content nouns
    uncovered: tuple[str, ...]  # those neither the table, the vocabulary nor a name knows
    uncovered_weight: float  # their share of the content, each noun weighed by specificity
    best_share: float  # most of that weighed content one of the top hits holds
    margin: float  # best cell similarity minus best background similarity
    similarity: float  # best cell similarity itself

    def features(self) -> list[float]:
        """In the order of :data:`FEATURES`."""
        return [self.uncovered_weight, self.best_share, self.margin, self.similarity]

    @property
    def topical(self) -> bool:
        """Whether the query has a word that says what it is about. One made only of
        particles, greetings and light words (です, どう, 何をしている, "a") asks about
        nothing, so nothing can answer it, however close its embedding lands."""
        return bool(self.content)


FEATURES = ("uncovered_weight", "best_share", "margin", "similarity")


@dataclass(frozen=True)
class Calibration:
    """Logistic weights over :meth:`QueryEvidence.features`, the probability above which a
    query counts as answerable, and the per-hit cuts (see :func:`confident_hits`)."""

    weights: tuple[float, ...]
    bias: float
    threshold: float
    similarity_gap: float  # a hit holding some of the query's words this close to the best
    word_share: float  # … or one holding this share of the query's content words
    meaning_gap: float = 0.0  # … or any hit this close to the best dense similarity
    some_share: float = 0.0  # "some of the query's words": more than this share, or any

    def answerable(self, evidence: QueryEvidence) -> float:
        """Probability that the table answers the query (none for a query without a
        topic, see :attr:`QueryEvidence.topical`)."""
        if not evidence.topical:
            return 0.0
        z = self.bias + float(np.dot(self.weights, evidence.features()))
        return 1.0 / (1.0 + math.exp(-z))

    def to_dict(self) -> dict:
        return asdict(self)


def load_calibration(embedder_name: str, path: Path = CALIBRATION_FILE) -> Calibration | None:
    """The calibration fitted for ``embedder_name``, or None when there is none."""
    entry = dict(_calibrations(path).get(embedder_name) or {})
    if entry.pop("features", None) != list(FEATURES):
        return None  # none, or fitted on other evidence: calibrate again
    return Calibration(**{**entry, "weights": tuple(entry["weights"])})


@cache
def _calibrations(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}


def save_calibration(embedder_name: str, calibration: Calibration, path: Path = CALIBRATION_FILE):
    """Store ``calibration`` for ``embedder_name``, keeping the other embedders' entries."""
    table = dict(_calibrations(path))
    table[embedder_name] = {"features": list(FEATURES), **calibration.to_dict()}
    path.write_text(json.dumps(table, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    _calibrations.cache_clear()


def content_nouns(tokens: Sequence[Token]) -> list[int]:
    """Positions of the words that say what a query is about: nouns (and English words) of
    two or more characters, without adverb-like nouns (毎回, 結局) and numbers; a query
    without such a noun (猫の飼い方, 一時預かり) is about its verbs and other words."""
    nouns = _content(tokens, nouns_only=True)
    return nouns or _content(tokens, nouns_only=False)


# Numbers, and the stems of auxiliaries (間に合いそう's そう, …みたい): no topic in them.
_FUNCTION_LIKE = (("数詞",), ("助動詞語幹",))
# 何日, 何人, 何歳, 何回: "how many …", a question's word, not its topic.
_HOW_MANY = "何"
# How a request is put, not what it is about: 教えてください, お願いします, について (に・つい・て
# to Sudachi), よろしく. Counted only in a query without nouns, where verbs speak.
_ASKING = frozenset(["教える", "下さる", "願う", "つく", "宜しく"])
_AFFIXES = (("接頭辞",), ("接尾辞",))  # the お of お願い: no topic of its own
# A word inside a longer one after these says the opposite: 不登校 is not 登校, 未就学 not 就学.
_NEGATIONS = frozenset("不未非無")


def _content(tokens: Sequence[Token], nouns_only: bool) -> list[int]:
    kept = []
    for i, token in enumerate(tokens):
        if not token.terms or (nouns_only and token.pos[:1] != ("名詞",)):
            continue
        if token.pos[1:2] in _FUNCTION_LIKE or token.pos[2:3] == ("副詞可能",):
            continue
        if token.surface.startswith(_HOW_MANY) and token.pos[:1] == ("名詞",):
            continue
        if not nouns_only and (
            token.terms[0] in _ASKING
            or token.pos[1:2] == ("非自立可能",)
            or token.pos[:1] in _AFFIXES
        ):
            continue
        folded = normalised(token.surface).strip()
        if (nouns_only and len(folded) < 2) or all(w in _ENGLISH_STOP for w in folded.split()):
            continue
        kept.append(i)
    return kept


def judge_query(
    analyzer: Analyzer,
    query: str,
    table: TableFacts,
    positions: Sequence[int],
    similarities: Sequence[float | None],
    best_similarity: float,
    background: np.ndarray,
    query_vector: np.ndarray | None,
) -> Judgement:
    """The evidence for ``query`` and for each of its ranked ``positions`` (with their dense
    ``similarities``, None outside the dense leg), against ``table``'s words and names;
    ``best_similarity`` is the best of any cell the query may find."""
    tokens = analyzer.analyse(query)
    content = content_nouns(tokens)
    found = {i: table.specificity(tokens[i].terms[0]) for i in content}
    uncovered = [i for i in content if found[i] is None]
    spelling = _Spelling(tokens, analyzer.synonyms.folded)
    if uncovered:  # words the table lacks, unless the vocabulary or a name spells them
        # Only the entries the query fires can spell a part of it (the analyser keeps them).
        mentioned = [w for entry in analyzer.fired(query) for w in entry.words]
        covered = spelling.covered([*mentioned, *table.names])
        uncovered = [i for i in uncovered if i not in covered]
    # A noun the table has weighs what it tells apart (子ども little, 短期入所 much); one
    # the table lacks, or the vocabulary or a name stands for, weighs as the rarest word.
    weight = {i: table.rarest if found[i] is None else found[i] for i in content}
    total = sum(weight.values()) or 1.0
    rows = np.asarray(positions, dtype=np.int64)
    held = np.zeros(len(rows))
    equivalents = _equivalents(analyzer, query, spelling)
    for i in content:
        if i not in uncovered:
            terms = {tokens[i].terms[0], *equivalents.get(i, ())}
            held += weight[i] * np.logical_or.reduce([table.holds(t, rows) for t in terms])
    shares = held / total
    background_best = float(np.max(background @ query_vector)) if query_vector is not None else 1.0
    evidence = QueryEvidence(
        content=tuple(tokens[i].surface for i in content),
        uncovered=tuple(tokens[i].surface for i in uncovered),
        uncovered_weight=sum(weight[i] for i in uncovered) / total,
        best_share=float(shares[:ANSWER_DEPTH].max(initial=0.0)),
        margin=best_similarity - background_best,
        similarity=best_similarity,
    )
    return Judgement(evidence, tuple(similarities), tuple(map(float, shares)))


def _equivalents(analyzer: Analyzer, query: str, spelling: _Spelling) -> dict[int, set[str]]:
    """For each token position of ``spelling`` (``query``'s), the terms of what the
    vocabulary adds on the lexical leg for an entry whose word spells that token: a cell
    holding one of them holds the word. Read off the whole query, so a phrase entry
    ("short stay" → 短期入所) stands for each of its tokens, which no token fires alone."""
    found: dict[int, set[str]] = {}
    for entry in analyzer.fired(query):
        positions = spelling.covered(entry.words) if "lexical" in entry.legs else ()
        if positions:
            terms = {t[0] for t in map(analyzer.tokens, entry.adds) if t}
            for i in positions:
                found.setdefault(i, set()).update(terms)
    return found


@dataclass(frozen=True)
class TableFacts:
    """What the judge asks of the table: ``specificity(term)`` — inverse document frequency,
    None for a term no cell has; ``rarest`` — that of a term one cell has; ``holds(term, rows)`` —
    whether each of the rows has the term; ``names`` — organisation names and aliases."""

    specificity: Callable[[str], float | None]
    rarest: float
    holds: Callable[[str, np.ndarray], np.ndarray]
    names: tuple[str, ...]


class _Spelling:
    """A query's tokens as written, folded as the vocabulary folds a query (NFKC, lower case,
    an English word it does not list in its dictionary form), to find which of them a word
    spells."""

    def __init__(self, tokens: Sequence[Token], fold: Callable[[str], str]) -> None:
        self.fold = fold
        self.folded = [fold(t.surface) for t in tokens]
        self.text = "".join(self.folded)
        self.ends = list(accumulate(len(f) for f in self.folded))

    def covered(self, words: Iterable[str]) -> set[int]:
        """Positions of the tokens that one of ``words`` (vocabulary entries and names)
        spells, wholly or for most of the token: 預け vouches for 預け先, but 児童 does not
        vouch for 児童扶養手当."""
        covered: set[int] = set()
        for word in {self.fold(w) for w in words if w}:
            if word not in self.text:  # most names and entries: no pattern to compile and run
                continue
            for match in re.finditer(word_pattern(word), self.text):
                first = bisect_right(self.ends, match.start())
                last = bisect_right(self.ends, match.end() - 1)
                for i in range(first, last + 1):
                    start = self.ends[i] - len(self.folded[i])
                    inside = min(self.ends[i], match.end()) - max(start, match.start())
                    negated = match.start() > start and self.text[match.start() - 1] in _NEGATIONS
                    if inside * 2 > len(self.folded[i]) and not negated:
                        covered.add(i)
        return covered


# Without a calibration for the embedder (a sentence-transformers model nobody calibrated),
# only the words speak: a query whose content nouns the table mostly does not know has no
# answer, and a hit must hold half of the query's content nouns.
FALLBACK = Calibration(
    weights=(-10.0, 0.0, 0.0, 0.0), bias=5.0, threshold=0.5, similarity_gap=0.0, word_share=0.5
)


@dataclass(frozen=True)
class Judgement:
    """The evidence for a query and for each judged hit, best first."""

    evidence: QueryEvidence
    similarities: tuple[float | None, ...]  # dense similarity, None outside the dense leg
    word_shares: tuple[float, ...]

    def flags(self, calibration: Calibration) -> list[bool]:
        """One flag per hit (see :func:`confident_hits`); none when the query is judged
        unanswerable."""
        if calibration.answerable(self.evidence) < calibration.threshold:
            return [False] * len(self.similarities)
        similarities = np.array([np.nan if s is None else s for s in self.similarities])
        shares = np.array(self.word_shares, dtype=float)
        return confident_hits(similarities, shares, self.evidence.best_share, calibration).tolist()


def confident_hits(
    similarities: np.ndarray, shares: np.ndarray, best_share: float | np.ndarray, cuts: Calibration
) -> np.ndarray:
    """Which hits of an answerable query are confident, from their dense ``similarities``
    (NaN outside the dense leg) and the ``shares`` of the query's weighed content words they
    hold, best first; the last axis runs over hits (calibration stacks many queries, with
    ``best_share`` one per query).

    A hit is confident when it holds ``word_share`` of the words; or more than
    ``some_share`` of them and a similarity within ``similarity_gap`` of the best; or —
    only when no hit holds all the words — a similarity within the narrower ``meaning_gap``
    (an everyday query shares no word with the cells that answer it; further down,
    closeness in meaning alone pairs any two texts about children's care, and when some
    cell does hold the words, a cell without them is one the words tell apart). The first
    hit is always confident: it is what the evidence was measured on."""
    known = np.where(np.isnan(similarities), -np.inf, similarities)
    best = np.max(known, axis=-1, keepdims=True, initial=-np.inf)
    alone = np.where(np.asarray(best_share)[..., None] < 1, cuts.meaning_gap, -1.0)
    gap = np.where(shares > cuts.some_share, cuts.similarity_gap, alone)
    with np.errstate(invalid="ignore"):
        close = best - similarities <= gap  # NaN (no similarity) is never close
    confident = (shares >= cuts.word_share) | close
    confident[..., :1] = True
    return confident


# A cell vouches for another (similar cells, "who else tackled this") when it holds this
# share of the other's PAIR_NOUNS most specific nouns *and* its meaning stands out from
# the other organisations' cells by PAIR_STANDOUT standard deviations. Words alone pair
# cells that share a population (医療機器を装着している子) but not a problem; meaning
# alone pairs any two cells about care for children. Set on the FY2017 table: the
# nurse-shortage challenge finds もみじ's staffing plan, the disaster-support challenge
# (which no other organisation writes about) finds nothing.
PAIR_SHARE = 0.2
PAIR_NOUNS = 5
PAIR_STANDOUT = 1.0


def pair_shares(
    analyzer: Analyzer,
    source: str,
    candidates: Sequence[str],
    specificity: Callable[[str], float | None],
) -> list[float]:
    """For each candidate text, the share of ``source``'s content nouns (each weighed by
    its specificity in the table) that it contains, as written or as a vocabulary
    equivalent (看護人材 → 看護職員)."""
    tokens = analyzer.analyse(source)
    nouns = {}
    for i in content_nouns(tokens):
        term = tokens[i].terms[0]
        words = analyzer.expansions(tokens[i].surface)
        nouns[term] = {normalised(w) for w in words}
    # What makes a cell specific is its rarest nouns; a long cell is not harder to match.
    weight = dict(
        sorted(((t, specificity(t) or 0.0) for t in nouns), key=lambda tw: -tw[1])[:PAIR_NOUNS]
    )
    nouns = {t: nouns[t] for t in weight if weight[t]}
    total = sum(weight.values())
    if not total:
        return [0.0] * len(candidates)
    shares = []
    for text in candidates:
        terms, folded = set(analyzer.tokens(text)), normalised(text)
        held = [t for t, words in nouns.items() if t in terms or any(w in folded for w in words)]
        shares.append(sum(weight[t] for t in held) / total)
    return shares


def standouts(similarities: np.ndarray, population: np.ndarray) -> np.ndarray:
    """How many standard deviations each of ``similarities`` lies above the similarities of
    ``population`` (the same source against cells it could have been paired with)."""
    spread = float(population.std()) or 1.0
    return (similarities - float(population.mean())) / spread
