"""Japanese lexical analysis with SudachiPy, and query synonyms.

Documents and queries go through the same :meth:`Analyzer.tokens`: Sudachi's long (C)
units in their *normalised* form, so 障がい/障害 and 子ども/子供 meet, plus each compound's
short (A) parts, so 看護師 is found inside 看護師不足. Particles, auxiliaries, symbols and a
few light words are dropped. Queries are additionally expanded with the synonym file.

A Sudachi tokenizer cannot be shared between threads, and the web server answers from a
thread pool, so every thread gets its own.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sudachipy import Dictionary, SplitMode

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
_ASCII_WORD = re.compile(r"^[a-z0-9][a-z0-9 .'-]*$")


@dataclass(frozen=True)
class Token:
    """A word as it appears in the text (``surface``) and the terms it is indexed under."""

    surface: str
    terms: tuple[str, ...]


class Analyzer:
    """Turns text into index terms. Safe to share between threads."""

    def __init__(self, synonyms: Synonyms | None = None) -> None:
        self.synonyms = synonyms or Synonyms()
        self._dictionary = Dictionary(dict="core")
        self._local = threading.local()

    def _tokenizer(self):
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._local.tokenizer = self._dictionary.create(SplitMode.C)
        return tokenizer

    def analyse(self, text: str) -> list[Token]:
        """Every word of ``text`` with its index terms; words with no terms are kept too,
        so surfaces line up with the text for highlighting."""
        text = _clean(text)
        tokenizer = self._tokenizer()
        return [_token(m) for part in _parts(text) for m in tokenizer.tokenize(part)]

    def tokens(self, text: str) -> list[str]:
        """Index terms of ``text``, in order, with repeats (BM25 counts them)."""
        return [term for token in self.analyse(text) for term in token.terms]

    def query_tokens(self, query: str) -> list[str]:
        """Terms of a query plus the terms of its synonyms, each once."""
        terms = self.tokens(query)
        for phrase in self.synonyms.expansions(query, terms):
            terms += self.tokens(phrase)
        return list(dict.fromkeys(terms))

    def matched_surfaces(self, text: str, query_terms: Iterable[str]) -> list[str]:
        """The words of ``text`` that share a term with the query, each once, in order."""
        wanted = set(query_terms)
        hits = [t.surface for t in self.analyse(text) if wanted.intersection(t.terms)]
        return list(dict.fromkeys(hits))


def _clean(text: str) -> str:
    # Surrogates and control characters (pasted from anywhere) would make Sudachi fail, so
    # they go, one character for one. Width (ｶﾅ, ＡＢＣ, ２８) is not folded here: Sudachi
    # folds it itself and keeps surfaces as written, so highlighting finds them in the text.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def _fold(text: str) -> str:
    """Cleaned, NFKC-folded and lower-cased, for comparing with synonym entries."""
    return unicodedata.normalize("NFKC", _clean(text)).lower()


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
    if morpheme.part_of_speech()[0] in _DROP_POS:
        return Token(surface, ())
    terms = [_term(morpheme.normalized_form(), surface)]
    parts = morpheme.split(SplitMode.A)
    if len(parts) > 1:
        terms += [_term(p.normalized_form(), p.surface()) for p in parts]
    kept = tuple(dict.fromkeys(t for t in terms if _keep(t)))
    return Token(surface, kept)


def _term(normalised: str, surface: str) -> str:
    # Sudachi "normalises" some English words into katakana (nurse → ナース); an English
    # query should match English text, so ASCII words keep their own spelling.
    folded = unicodedata.normalize("NFKC", surface)
    return folded.lower() if folded.isascii() else normalised


def _keep(term: str) -> bool:
    if term in STOP_WORDS or not term.strip():
        return False
    if len(term) == 1:
        # A lone kanji (児, 子) carries meaning; a lone kana or letter does not.
        return unicodedata.name(term, "").startswith("CJK UNIFIED")
    return True


@dataclass
class Synonyms:
    """Query synonyms from ``corpus/synonyms.yaml``.

    ``groups`` are sets of interchangeable words (看護師 / 看護職員 / 看護人材): a query with
    any of them also searches for the others. ``expand`` maps a word, often English, to
    words to search for as well (nurse → 看護師), one way only.
    """

    groups: list[list[str]] = field(default_factory=list)
    expand: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Synonyms:
        if not path.exists():
            return cls()
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(
            groups=[[str(w) for w in group] for group in raw.get("groups", [])],
            expand={str(k): [str(w) for w in v] for k, v in (raw.get("expand") or {}).items()},
        )

    def expansions(self, query: str, query_terms: list[str]) -> list[str]:
        """Words to add to ``query``: synonyms of every entry the query mentions."""
        folded = _fold(query)
        terms = set(query_terms)
        found: list[str] = []
        for group in self.groups:
            if any(_mentions(folded, terms, word) for word in group):
                found += group
        for word, targets in self.expand.items():
            if _mentions(folded, terms, word):
                found += targets
        return list(dict.fromkeys(found))


def _mentions(folded_query: str, terms: set[str], word: str) -> bool:
    """Does the query mention ``word``? English words must match whole words (so "st" is
    not found in "stay"); Japanese words match as text or as an index term."""
    word = _fold(word)
    if _ASCII_WORD.match(word):
        return re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", folded_query) is not None
    return word in folded_query or word in terms
