"""The domain vocabulary (``corpus/synonyms.yaml``): how staff ask versus how tables are written.

The file is edited by coordinators, not programmers. It is a list of concepts; each holds
``groups`` (interchangeable words: a query with any of them also searches for the others),
``expand`` (a word people type → the table's words for it, one way) and optionally ``legs``,
the searches the concept's entries serve (``lexical``, ``dense``). Left out, groups serve the
lexical search only (the embedding model already puts 看護師 and 看護職員 together) and
expand entries serve both. On the dense side the query's word is replaced by the entry's
first word (the table's main term), so the embedded text stays as short as the query::

    concepts:
      - concept: 預かり・短期入所
        groups:
          - [ショートステイ, 短期入所]
        expand:
          預け: [短期入所, レスパイト]

A file with ``groups``/``expand`` at the top (the first format) reads as one concept. Every
entry remembers its line, so ``kb eval`` can say which entries fired for a query and a
mistake is reported with file and line. No file means no vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import ahocorasick
import simplemma
import yaml

from kb.core.yamlio import NodeReader, compose_yaml

LEGS = ("lexical", "dense")
# Left out, ``legs`` is lexical for groups (on eval/tune.yaml, adding a group's words to the
# dense text gained nothing) and both for expand entries.
GROUP_LEGS = frozenset({"lexical"})
EXPAND_LEGS = frozenset(LEGS)
FIRED_KEPT = 4096
_CONCEPT_KEYS = ("concept", "groups", "expand", "legs")
_ASCII_WORD = re.compile(r"^[a-z0-9][a-z0-9 .'-]*$")
_LATIN = re.compile(r"[a-z0-9]")
_ENGLISH_WORD = re.compile(r"([a-z]+)", re.IGNORECASE)  # grouped: split keeps the words
# Shorter words are mostly abbreviations (Ns, ST, us) that a dictionary would misread.
_LEMMA_MIN = 4
_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class Entry:
    """One line of the vocabulary: any of ``words`` in a query fires it, and ``adds`` are
    searched for as well, on the searches named in ``legs``."""

    concept: str
    words: tuple[str, ...]
    adds: tuple[str, ...]
    legs: frozenset[str]
    line: int

    def describe(self) -> str:
        """One line for people: 「預かり・短期入所: 預け → 短期入所・レスパイト（40行目）」."""
        trigger = "・".join(self.words)
        added = "・".join(w for w in self.adds if w not in self.words)
        body = trigger if self.words == self.adds else f"{trigger} → {added}"
        return f"{self.concept + ': ' if self.concept else ''}{body}（{self.line}行目）"

    def as_dict(self) -> dict:
        return {
            "concept": self.concept,
            "words": list(self.words),
            "adds": list(self.adds),
            "legs": [leg for leg in LEGS if leg in self.legs],
            "line": self.line,
        }


@dataclass
class Synonyms:
    """The entries of a vocabulary file, in file order."""

    entries: list[Entry] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every entry's words, folded, in one Aho-Corasick automaton: a query is read once
        # whatever the vocabulary's size (testing each word in turn took 0.4 ms a query at
        # 800 entries). A query's entries are remembered, since the terms and the dense
        # text both ask.
        self._entries_of: dict[str, set[int]] = {}
        for number, entry in enumerate(self.entries):
            for word in entry.words:
                self._entries_of.setdefault(normalised(word), set()).add(number)
        self._automaton = ahocorasick.Automaton()
        for word in self._entries_of:
            self._automaton.add_word(word, word)
        if self._entries_of:
            self._automaton.make_automaton()
        self._english = frozenset(
            w for word in self._entries_of for w in _ENGLISH_WORD.findall(word)
        )
        # A query is folded several times a search (its entries, dense text, the judge).
        self.folded = lru_cache(maxsize=FIRED_KEPT)(self._folded)
        self.fired = lru_cache(maxsize=FIRED_KEPT)(self._fired)

    def _folded(self, text: str) -> str:
        """``text`` as it is compared with the entries' words (called as ``folded``):
        :func:`normalised`, with each English word no entry writes in its
        :func:`dictionary_form` (helpers → helper), so an entry fires whichever form a query
        writes, while one the file lists as written (staffing, beside staff) stays its own
        entry."""
        return _ENGLISH_WORD.sub(self._english_form, normalised(text))

    def _english_form(self, match: re.Match) -> str:
        word = match.group()
        return word if word in self._english else dictionary_form(word)

    @classmethod
    def load(cls, path: Path) -> Synonyms:
        """The vocabulary of ``path`` (empty if the file does not exist). A mistake raises
        InputError naming the file and the line of the bad entry."""
        if not path.exists():
            return cls()
        root = compose_yaml(path)
        return cls(_Reader(path).document(root) if root is not None else [])

    def _fired(self, folded_query: str, query_terms: frozenset[str]) -> tuple[Entry, ...]:
        """The entries a query mentions (called as ``fired``), in file order: a word is
        written in ``folded_query`` (folded by ``folded``; an English word as a
        whole word, so "st" is not found in "stay") or is one of ``query_terms``, its index
        terms (so 受け入れる also fires 受け入れ)."""
        words = {w for w in query_terms if w in self._entries_of}
        if self._entries_of:
            words.update(
                word
                for end, word in self._automaton.iter(folded_query)
                if _whole(folded_query, end - len(word) + 1, end + 1, word)
            )
        numbers = set().union(*(self._entries_of[w] for w in words))
        return tuple(self.entries[n] for n in sorted(numbers))


def replace_word(text: str, word: str, by: str, fold: Callable[[str], str]) -> str | None:
    """``text`` with its first ``word`` (both compared after ``fold``, such as
    ``Synonyms.folded``; English as a whole word) replaced by ``by``; None when ``word``
    is not written in ``text``."""
    # Found in the folded text, replaced in ``text``: each piece, English word or not,
    # remembers where it starts in both.
    pieces = _ENGLISH_WORD.split(text)
    folded, starts, offset = [fold(p) for p in pieces], [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece)
    match = re.search(word_pattern(fold(word)), "".join(folded))
    if match is None:
        return None
    start, end = (_unfolded(pieces, folded, starts, at) for at in match.span())
    if start is None or end is None:
        return None
    return text[:start] + by + text[end:]


def _unfolded(pieces: list[str], folded: list[str], starts: list[int], at: int) -> int | None:
    """Where position ``at`` of the folded pieces lies in the pieces as written: the edge
    of an English word, or inside a piece folding kept as long; None otherwise."""
    for piece, folded_piece, start in zip(pieces, folded, starts, strict=True):
        if at <= len(folded_piece):
            if at in (0, len(folded_piece)):
                return start + (len(piece) if at else 0)
            return start + at if len(folded_piece) == len(piece) else None
        at -= len(folded_piece)
    return None


def word_pattern(word: str) -> str:
    """A regular expression finding ``word`` (NFKC-folded, lower-cased) in folded text: an
    English word only as a whole word, so "st" is not found in "stay"."""
    pattern = re.escape(word)
    if _ASCII_WORD.match(word):
        return rf"(?<!{_LATIN.pattern}){pattern}(?!{_LATIN.pattern})"
    return pattern


def normalised(word: str) -> str:
    """``word`` as queries and vocabulary words are compared: NFKC-folded, lower-cased."""
    return unicodedata.normalize("NFKC", word).lower()


@lru_cache(maxsize=65536)
def dictionary_form(word: str) -> str:
    """The dictionary form of a lower-case English ``word`` when it only drops an
    inflection (helpers → helper, using → use), else ``word`` (better stays better, not
    good; Ns stays ns)."""
    if len(word) < _LEMMA_MIN:
        return word
    lemma = simplemma.lemmatize(word, lang="en")
    return lemma if lemma[:2] == word[:2] else word


def _whole(text: str, start: int, stop: int, word: str) -> bool:
    """False for an English ``word`` found at ``text[start:stop]`` inside a longer word."""
    if not _ASCII_WORD.match(word):
        return True
    return not (
        (start > 0 and _LATIN.match(text[start - 1]))
        or (stop < len(text) and _LATIN.match(text[stop]))
    )


class _Reader(NodeReader):
    """Turns the node tree of one vocabulary file into entries, or one clear error."""

    def document(self, root: yaml.Node) -> list[Entry]:
        if _is_null(root):
            return []
        if not isinstance(root, yaml.MappingNode):
            raise self.fail(root, "一番上には「concepts:」を書き、その下に概念を並べてください")
        top = self.mapping(root, ("concepts", "groups", "expand", "legs"))
        entries = self.concept(top, "") if top.keys() & {"groups", "expand"} else []
        listed = self.contents(
            top.get("concepts"),
            yaml.SequenceNode,
            "concepts: の下には「- concept: 名前」で始まるまとまりを並べてください",
        )
        for node in listed:
            if not isinstance(node, yaml.MappingNode):
                raise self.fail(
                    node,
                    "概念は「- concept: 名前」で始め、その下に groups: や expand: を書いてください",
                )
            parts = self.mapping(node, _CONCEPT_KEYS)
            name = parts.get("concept")
            if name is None or not isinstance(name, yaml.ScalarNode) or not name.value.strip():
                raise self.fail(node, "概念には「concept: 名前」で名前を付けてください")
            entries += self.concept(parts, name.value.strip())
        return entries

    def concept(self, parts: dict[str, yaml.Node], name: str) -> list[Entry]:
        """The entries of one concept, from its ``mapping`` parts."""
        legs = self.legs(parts.get("legs"))  # None: each kind's default
        entries = []
        groups = self.contents(
            parts.get("groups"),
            yaml.SequenceNode,
            "groups: の下には「- [言葉, 言葉]」の形で言葉のグループを並べてください",
        )
        for group in groups:
            message = "groups: のグループは「- [言葉, 言葉]」の形で書いてください"
            if not isinstance(group, yaml.SequenceNode):
                raise self.fail(group, message)
            words = self.words(group, message)
            if len(words) < 2:
                raise self.fail(group, "グループには同じ意味の言葉を2つ以上書いてください")
            line = group.start_mark.line + 1
            entries.append(Entry(name, words, words, legs or GROUP_LEGS, line))
        expand = self.contents(
            parts.get("expand"),
            yaml.MappingNode,
            "expand: の下には「言葉: [探す言葉, 探す言葉]」の形で書いてください",
        )
        for key, value in expand:
            if not isinstance(key, yaml.ScalarNode) or not key.value.strip():
                raise self.fail(key, "expand: の左側には検索語に含まれる言葉を1つ書いてください")
            adds = (
                ()
                if _is_null(value)
                else self.words(
                    value, f"「{key.value}」の右側は「[探す言葉, 探す言葉]」の形で書いてください"
                )
            )
            line = key.start_mark.line + 1
            entries.append(Entry(name, (key.value.strip(),), adds, legs or EXPAND_LEGS, line))
        return entries

    def contents(self, node: yaml.Node | None, kind: type[yaml.Node], message: str) -> list:
        """What ``node`` holds when it is a ``kind`` (a list's items, leaving out empty ones, or
        a mapping's key-value pairs); nothing when it is absent or empty; a failure naming
        its line with ``message`` when it is something else."""
        if node is None or _is_null(node):
            return []
        if not isinstance(node, kind):
            raise self.fail(node, message)
        return [item for item in node.value if not (isinstance(item, yaml.Node) and _is_null(item))]

    def words(self, node: yaml.Node, message: str) -> tuple[str, ...]:
        """A list of words, or one word written without brackets."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        words = []
        for item in items:
            if not isinstance(item, yaml.ScalarNode) or _is_null(item) or not item.value.strip():
                raise self.fail(item, message)
            words.append(item.value.strip())
        return tuple(dict.fromkeys(words))

    def legs(self, node: yaml.Node | None) -> frozenset[str] | None:
        """The legs a concept names, or None when it leaves them to each kind's default."""
        if node is None or _is_null(node):
            return None
        message = "legs: には lexical（語の一致）か dense（意味の近さ）、または両方を [lexical, dense] の形で書いてください"
        legs = self.words(node, message)
        if not set(legs) <= set(LEGS):
            raise self.fail(node, message)
        return frozenset(legs)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _text(node: yaml.Node) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else "（リストや表）"
