"""What is loaded, at a glance: the data behind ``kb corpus``."""

from __future__ import annotations

from itertools import groupby

from kb.core.fields import Field
from kb.core.model import Column, Table
from kb.corpus.tables import Corpus, fields_present


def _organisations(columns: list[Column]) -> list[dict]:
    """Organisations of a page in order, each with its item numbers."""
    return [
        {
            "organisation": org,
            "items": [n for c in cols for n in c.item_nos],
            "columns": len(cols),
        }
        for org, cols in ((o, list(cs)) for o, cs in groupby(columns, key=lambda c: c.organisation))
    ]


def table_summary(table: Table) -> dict:
    pages = groupby(table.columns, key=lambda c: c.page)
    return {
        "year": table.year,
        "council": table.council,
        "document": table.source.document,
        "title": table.source.title,
        "columns": len(table.columns),
        "organisations": len({c.organisation for c in table.columns}),
        "pages": [{"page": p, "organisations": _organisations(list(cols))} for p, cols in pages],
        "cells": {f.value: n for f, n in fields_present(table.columns).items()},
    }


def corpus_summary(corpus: Corpus) -> dict:
    tables = [table_summary(t) for t in corpus.tables]
    return {
        "years": sorted({t.year for t in corpus.tables}),
        "councils": sorted({t.council for t in corpus.tables}),
        "cells": len(corpus.chunks),
        "tables": tables,
    }


def render(summary: dict) -> str:
    """The summary as readable Japanese for a terminal."""
    lines = [
        f"年度: {', '.join(map(str, summary['years'])) or 'なし'}　"
        f"会議: {len(summary['councils'])}　セル: {summary['cells']}",
    ]
    for t in summary["tables"]:
        lines += ["", f"■ {t['year']}年度 {t['council']}　{t['document']} {t['title']}".rstrip()]
        lines.append(f"  {t['organisations']}団体・{t['columns']}列")
        for page in t["pages"]:
            lines.append(f"  {page['page']}ページ")
            for org in page["organisations"]:
                items = "、".join(map(str, org["items"])) if org["items"] else "番号なし"
                lines.append(f"    {org['organisation']}（項目 {items}）")
        counts = "　".join(f"{Field(k).ja} {n}" for k, n in t["cells"].items())
        lines.append(f"  欄ごとのセル数: {counts}")
    return "\n".join(lines)
