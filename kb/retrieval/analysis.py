"""Japanese lexical analysis with SudachiPy, and query synonyms.

Documents and queries go through the same :meth:`Analyzer.tokens`: Sudachi's long (C)
units in their *normalised* form, so 障がい/障害 and 子ども/子供 meet, plus each compound's
short (A) parts, so 看護師 is found inside 看護師不足. Particles, auxiliaries, symbols and a
few light words are dropped. Queries are additionally expanded with the synonym file.

A Sudachi tokenizer cannot be shared between threads, and the web server answers from a
thread pool, so every thread gets its own.
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

from sudachipy import Dictionary, SplitMode

from kb.core.cache import TextCache
from kb.retrieval.vocabulary import Entry, Synonyms, replace_word

_DROP_POS = {"助詞", "助動詞", "補助記号", "記号", "空白", "接続詞", "感動詞"}
# Light words that carry no topic: する, ある, こと, ため, など …
STOP_WORDS = frozenset(
    [
        "為る",
        "ある",
        "有る",
        "居る",
        "いる",
        "成る",
        "なる",
        "出来る",
        "できる",
        "行う",
        "思う",
        "考える",
        "事",
        "こと",
        "物",
        "もの",
        "為",
        "ため",
        "様",
        "よう",
        "等",
        "など",
        "時",
        "とき",
        "所",
        "ところ",
        "中",
        "上",
        "方",
        "他",
        "又",
        "また",
        "及び",
        "並びに",
        "其の",
        "その",
        "此の",
        "この",
        "是",
        "これ",
        "其れ",
        "それ",
        "達",
        "的",
        "方々",
        "無い",
        "ない",
        "どう",
        "何",
        "なに",
    ]
)
# Words that name a thing or a quality: what highlighting marks (see matched_surfaces).
NOUN_POS = frozenset(["名詞", "形状詞"])
INFLECTING_POS = frozenset(["動詞", "形容詞"])
# Weight of a query compound's parts (看護 and 師 of 看護師) against whole words: a cell
# with the whole word then outranks one that only shares its parts (tune set: hybrid
# nDCG@10 +0.012 with the vocabulary expansions taken whole, see README).
PART_WEIGHT = 0.5
ANALYSES_KEPT = 8192
# Bump when the analysis changes, so cached terms of old builds are not reused.
ANALYSIS_VERSION = "1"
_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Token:
    """A word as it appears in the text (``surface``) and the terms it is indexed under."""

    surface: str
    terms: tuple[str, ...]
    pos: tuple[str, ...] = ()  # Sudachi's part of speech, three levels (名詞, 普通名詞, 一般)


class Analyzer:
    """Turns text into index terms. Safe to share between threads."""

    def __init__(self, synonyms: Synonyms | None = None) -> None:
        self.synonyms = synonyms or Synonyms()
        self._dictionary = Dictionary(dict="core")
        self._local = threading.local()
        # Search highlights the same cells again and again; their analysis is kept.
        self.analyse = lru_cache(maxsize=ANALYSES_KEPT)(self._analyse)
        self._term_positions = lru_cache(maxsize=ANALYSES_KEPT)(self._positions)
        self._typed_words = lru_cache(maxsize=ANALYSES_KEPT)(self._inflected_words)

    def _tokenizer(self):
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._local.tokenizer = self._dictionary.tokenizer(mode=SplitMode.C)
        return tokenizer

    def _analyse(self, text: str) -> tuple[Token, ...]:
        """Every word of ``text`` with its index terms; words with no terms are kept too,
        so surfaces line up with the text for highlighting. (Called as ``analyse``.)"""
        text = _clean(text)
        tokenizer = self._tokenizer()
        return tuple(_token(m) for part in _parts(text) for m in tokenizer.tokenize(part))

    def tokens(self, text: str) -> list[str]:
        """Index terms of ``text``, in order, with repeats (BM25 counts them)."""
        return [term for token in self.analyse(text) for term in token.terms]

    def query_tokens(self, query: str) -> list[str]:
        """Terms of a query plus the terms its vocabulary entries add, each once."""
        return list(self.query_weights(query))

    def query_weights(self, query: str) -> dict[str, float]:
        """The lexical query: each term with its weight. The query's own words weigh 1, the
        parts of its compounds :data:`PART_WEIGHT`; the words its vocabulary entries add
        (lexical leg) weigh 1 as whole words, without their parts, so an added ショートステイ
        does not also search for ショート and ステー."""
        weights: dict[str, float] = {}
        for token in self.analyse(query):
            for n, term in enumerate(token.terms):
                weights[term] = max(weights.get(term, 0.0), 1.0 if n == 0 else PART_WEIGHT)
        for entry in self.fired(query):
            if "lexical" in entry.legs:
                for phrase in entry.adds:
                    for token in self.analyse(phrase):
                        if token.terms:
                            weights.setdefault(token.terms[0], 1.0)
        return weights

    def dense_query(self, query: str) -> str:
        """The text the dense side embeds: the query with the words of the vocabulary entries
        it fires on the dense leg replaced by each entry's first word (the table's main term),
        that word put at the end when the query matched it only through its terms. The
        query itself when no such entry fires. Replacing rather than adding keeps the text,
        and so the embedding's cost, about as long as the query (README "Search quality")."""
        written = text = unicodedata.normalize("NFKC", query)
        added: list[str] = []
        for entry in self.fired(query):
            term = next((w for w in entry.adds if w not in text), None)
            if "dense" not in entry.legs or term is None:
                continue
            replaced = (
                replace_word(text, word, term, self.synonyms.folded) for word in entry.words
            )
            found = next((r for r in replaced if r is not None), None)
            if found is None:
                added.append(term)
            else:
                text = found
        if not added and text == written:
            return query
        return " ".join([text, *dict.fromkeys(added)])

    def fired(self, query: str) -> tuple[Entry, ...]:
        """The vocabulary entries ``query`` mentions, in file order."""
        return self.synonyms.fired(
            self.synonyms.folded(_clean(query)), frozenset(self.tokens(query))
        )

    def expansions(self, text: str) -> list[str]:
        """The words the vocabulary entries ``text`` mentions add on the lexical leg, each
        once (what a cell may write instead of ``text``)."""
        adds = (w for e in self.fired(text) if "lexical" in e.legs for w in e.adds)
        return list(dict.fromkeys(adds))

    def matched_surfaces(self, text: str, query_terms: Iterable[str], typed: str = "") -> list[str]:
        """The content words of ``text`` that share a term with ``query_terms``, each once, in
        order, as written: nouns (名詞, 形状詞) of two characters or a kanji, and verbs or
        adjectives only with their inflection (足りない, never the stem 足り) and only when
        ``typed``, the query as the user wrote it, has that very word."""
        where = self._term_positions(text)
        at = sorted({i for term in set(query_terms) for i in where.get(term, ())})
        tokens = self.analyse(text)
        as_typed = self._typed_words(typed) if typed else frozenset()
        hits = (_content_surface(tokens, i, as_typed) for i in at)
        return list(dict.fromkeys(h for h in hits if h))

    def _positions(self, text: str) -> dict[str, tuple[int, ...]]:
        """Each term of ``text`` with the positions of the words that have it (a search
        looks up the query's few terms in each hit instead of reading every word)."""
        where: dict[str, list[int]] = {}
        for i, token in enumerate(self.analyse(text)):
            for term in token.terms:
                where.setdefault(term, []).append(i)
        return {term: tuple(found) for term, found in where.items()}

    def _inflected_words(self, text: str) -> frozenset[str]:
        """Every verb and adjective of ``text`` as written, with its auxiliaries (called as
        ``_typed_words``, which keeps the answer)."""
        tokens = self.analyse(text)
        return frozenset(
            _inflected(tokens, i) for i, t in enumerate(tokens) if _kind(t) in INFLECTING_POS
        )


def _inflected(tokens: Sequence[Token], at: int) -> str:
    """The verb or adjective ``tokens[at]`` with the auxiliaries after it (限ら+れ)."""
    word = tokens[at].surface
    for after in tokens[at + 1 :]:
        if after.pos[:1] != ("助動詞",):
            break
        word += after.surface
    return word


def _content_surface(tokens: Sequence[Token], at: int, as_typed: AbstractSet[str]) -> str | None:
    """What to mark for the matched ``tokens[at]``: its surface if it is a content word, a
    verb or adjective with its auxiliaries if the user typed exactly that word (one of
    ``as_typed``), or None (a kana fragment, a bare stem, a suffix)."""
    token = tokens[at]
    kind = _kind(token)
    if kind in NOUN_POS:
        return token.surface if is_meaningful(token.surface) else None
    if kind in INFLECTING_POS:
        word = _inflected(tokens, at)
        return word if word in as_typed and len(word) > 1 else None
    return None


def _kind(token: Token) -> str:
    """The first level of ``token``'s part of speech (名詞, 動詞 …)."""
    return token.pos[0] if token.pos else ""


def is_meaningful(word: str) -> bool:
    """True for a word worth marking on its own: two characters or more, or one kanji."""
    if len(word) != 1:
        return len(word) > 1
    return unicodedata.name(word, "").startswith("CJK UNIFIED")


def terms_version() -> str:
    """What the terms of a text depend on besides the text: kb's rules and the dictionary.
    Terms computed under another version are never reused."""
    return f"terms:{ANALYSIS_VERSION}:sudachidict-core-{version('sudachidict-core')}"


def cached_tokens(analyzer: Analyzer, texts: Sequence[str], cache: TextCache) -> list[list[str]]:
    """:meth:`Analyzer.tokens` of every text, reusing terms cached by earlier builds."""
    namespace = terms_version()
    known = {
        t: v.decode("utf-8").split(_SEPARATOR) if v else []
        for t, v in cache.get(namespace, texts).items()
    }
    fresh = {t: analyzer.tokens(t) for t in dict.fromkeys(texts) if t not in known}
    cache.put(
        namespace, ((t, _SEPARATOR.join(terms).encode("utf-8")) for t, terms in fresh.items())
    )
    known.update(fresh)
    return [known[t] for t in texts]


def _clean(text: str) -> str:
    # Surrogates and control characters (pasted from anywhere) would make Sudachi fail, so
    # they go, one character for one. Width (ｶﾅ, ＡＢＣ, ２８) is not folded here: Sudachi
    # folds it itself and keeps surfaces as written, so highlighting finds them in the text.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


# Sudachi refuses input longer than 49,149 UTF-8 bytes; longer texts go in parts.
_MAX_PART_BYTES = 40_000


def _parts(text: str) -> list[str]:
    """``text`` cut into parts Sudachi accepts, after a line break or 。 where possible."""
    parts: list[str] = []
    while len(text.encode("utf-8")) > _MAX_PART_BYTES:
        head = text.encode("utf-8")[:_MAX_PART_BYTES].decode("utf-8", "ignore")
        cut = max(head.rfind("\n"), head.rfind("。")) + 1 or len(head)
        parts.append(text[:cut])
        text = text[cut:]
    return [*parts, text] if text else parts


def _token(morpheme) -> Token:
    surface = morpheme.surface()
    pos = tuple(morpheme.part_of_speech()[:3])
    if pos[0] in _DROP_POS:
        return Token(surface, (), pos)
    terms = [_term(morpheme.normalized_form(), surface)]
    parts = morpheme.split(SplitMode.A)
    if len(parts) > 1:
        terms += [_term(p.normalized_form(), p.surface()) for p in parts]
    kept = tuple(dict.fromkeys(t for t in terms if _keep(t)))
    return Token(surface, kept, pos)


def _term(normalised: str, surface: str) -> str:
    # Sudachi "normalises" some English words into katakana (nurse → ナース); an English
    # query should match English text, so ASCII words keep their own spelling.
    folded = unicodedata.normalize("NFKC", surface)
    return folded.lower() if folded.isascii() else normalised


def _keep(term: str) -> bool:
    if term in STOP_WORDS or not term.strip():
        return False
    # A lone kanji (児, 子) carries meaning; a lone kana or letter does not.
    return is_meaningful(term)
