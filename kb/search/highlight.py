"""Split a text into matched and unmatched pieces, for highlighting in any output.

One pass with one regular expression (longest terms first), so overlapping terms such as
看護 and 看護師 never nest. Callers escape each piece for their medium (HTML, terminal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache


@lru_cache(maxsize=1024)
def _pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, words)))


def pieces(text: str, terms: Iterable[str]) -> list[tuple[str, bool]]:
    """``text`` cut into (piece, matched) pairs; joined, the pieces give ``text`` back."""
    words = tuple(sorted({t for t in terms if t}, key=len, reverse=True))
    if not words:
        return [(text, False)] if text else []
    pattern = _pattern(words)
    out: list[tuple[str, bool]] = []
    last = 0
    for match in pattern.finditer(text):
        if match.start() > last:
            out.append((text[last : match.start()], False))
        if out and out[-1][1] and match.start() == last:
            out[-1] = (out[-1][0] + match.group(), True)  # 看護 + 人材 read as one mark
        else:
            out.append((match.group(), True))
        last = match.end()
    if last < len(text):
        out.append((text[last:], False))
    return out
