"""Prove that a structured table says exactly what its source document says.

A table reconstructed from PDF text is only trustworthy if every sentence of the source
ended up in one cell, in the right row and column, and nothing was added. The check reads
both in the source's own order (page by page: headings, categories, then each field row
left to right, which is how the PDF extraction serialised the grid) and compares them
after :func:`kb.core.text.fold`. Page furniture (titles, row labels), listed in a YAML file
beside the source text (``sources/<name>.yaml``, key ``furniture``), is ignored.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import yaml

from kb.core.fields import FIELDS
from kb.core.model import Table
from kb.core.text import fold

_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=。)")


@dataclass(frozen=True)
class Segment:
    """A piece of the table's reading order: which cell it is and its folded text."""

    where: str
    text: str


def source_stream(source_text: str, furniture: list[str]) -> str:
    """The source body in reading order, folded, without page furniture."""
    labels = {fold(label) for label in furniture}
    kept: list[str] = []
    for paragraph in _PARAGRAPHS.split(source_text):
        if fold(paragraph) in labels:
            continue
        for line in paragraph.splitlines():
            if fold(line) in labels:
                continue
            first, _, rest = line.strip().partition(" ")
            kept.append(rest if fold(first) in labels else line)
    return fold("".join(kept))


def table_segments(table: Table) -> list[Segment]:
    """The table's cells in the order the source printed them."""
    segments: list[Segment] = []
    by_page = groupby(table.columns, key=lambda c: c.page)
    for page, columns in by_page:
        columns = list(columns)
        segments += [
            Segment(f"{page}ページ {c.key} 団体名", fold(c.organisation))
            for c in columns
            if not c.shares_heading
        ]
        segments += [Segment(f"{page}ページ {c.key} 課題区分", fold(c.category)) for c in columns]
        segments += [
            Segment(f"{page}ページ {c.key} {f.ja}", fold(c.text(f)))
            for f in FIELDS
            for c in columns
        ]
    return segments


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s]


def check(table: Table, source_text: str, furniture: list[str]) -> list[str]:
    """Problems found comparing ``table`` with ``source_text``; an empty list means faithful.

    The verdict is the comparison of the two reading orders; the messages then say which
    sentence is missing, doubled or foreign, and in which cell, so a reviewer can fix it.
    """
    expected = source_stream(source_text, furniture)
    segments = table_segments(table)
    if "".join(s.text for s in segments) == expected:
        return []
    units = [(seg.where, unit) for seg in segments for unit in _sentences(seg.text)]
    counts = Counter(unit for _, unit in units)
    problems: list[str] = []
    for unit, n in counts.items():
        cells = "、".join(where for where, u in units if u == unit)
        in_source = expected.count(unit)
        if in_source == 0:
            problems.append(f"{cells}: 元の文書にない文があります「{unit}」")
        elif n > in_source:
            problems.append(f"{cells}: 表で {n} 回、元の文書では {in_source} 回現れます「{unit}」")
    leftover = expected
    for unit in sorted(counts, key=len, reverse=True):
        leftover = leftover.replace(unit, "\0", counts[unit])
    problems += [f"元の文書の文が表にありません「{run}」" for run in leftover.split("\0") if run]
    return problems or [_first_divergence(expected, segments)]


def _first_divergence(expected: str, segments: list[Segment]) -> str:
    """Name the cell where the table's reading order first departs from the source."""
    offset, previous = 0, "表の先頭"
    for segment in segments:
        end = offset + len(segment.text)
        if expected[offset:end] != segment.text:
            mismatch = next(
                i
                for i, ch in enumerate(segment.text)
                if expected[offset + i : offset + i + 1] != ch
            )
            at = offset + mismatch
            return (
                f"{segment.where}（直前は {previous}）: 並びが元の文書と違います。"
                f"表「{segment.text[mismatch : mismatch + 20]}」／"
                f"元「{expected[at : at + 20]}」"
            )
        offset = end
        previous = segment.where if segment.text else previous
    return f"表が元の文書より短く終わります: 元の残り「{expected[offset : offset + 20]}」"


def check_against_files(table: Table, corpus_root: Path) -> list[str] | None:
    """Check a table against the source file it names; None if it names none (e.g. ingested
    from a spreadsheet, which is its own source)."""
    if not table.source.file:
        return None
    text_path = corpus_root / table.source.file
    if source_missing(table, corpus_root):
        return [f"{table.source.file}: 元の文書のファイルがありません"]
    sidecar = text_path.with_suffix(".yaml")
    meta = yaml.safe_load(sidecar.read_text(encoding="utf-8")) if sidecar.exists() else {}
    return check(table, text_path.read_text(encoding="utf-8"), list(meta.get("furniture", [])))


def source_missing(table: Table, corpus_root: Path) -> bool:
    """Whether ``table`` names a source file that is not in the corpus folder."""
    return bool(table.source.file) and not (corpus_root / table.source.file).exists()
