"""kb themes at scale: 1,000 cells across 10 years of one council.

    python benchmarks/themes.py            # prints the figures; --json adds one JSON line
    python benchmarks/themes.py --work DIR # keeps the corpus and index in DIR

The corpus is synthetic (real sentences of ``corpus/`` recombined, as in ``run.py``): one
council, ten yearly tables (2017–2026) of 20 columns × 5 fields = 1,000 cells. After
``kb build``, the real ``kb themes --year 2026`` runs as a user would start it, each in a
fresh process:

* challenges (the default): 20 cells of 2026 themed, 180 earlier challenges for ``since``;
* ``--field all``: 100 cells of 2026 themed, 900 earlier cells for ``since``.

Each runs twice: cold (the first run after the build: the cells' vectors are the build's
own, read back from its cache; only the label phrases, a few per theme, are embedded) and
warm (the phrases cached too, as every later run). The target is under 10 s cold. The
floor, measured in the same run, is one search in a fresh process (``kb search … --json``:
start, load the index, embed the query).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from common import log
from run import real_material, synthetic_tables, write_corpus

from kb.core.fields import FIELDS

YEARS = 10
FIRST_YEAR = 2017
CELLS = 1_000
COUNCIL = "架空地域小児等在宅医療連絡会議"


def corpus(folder: Path) -> Path:
    """Ten yearly tables of one invented council, 1,000 cells in all."""
    sentences, templates = real_material()
    columns = CELLS // YEARS // len(FIELDS)
    tables = synthetic_tables(CELLS, sentences, templates[:columns] * YEARS)
    cells = [c for t in tables for c in t.columns]
    yearly = [
        replace(
            tables[0],
            year=FIRST_YEAR + n,
            council=COUNCIL,
            council_id="bench",
            source=replace(tables[0].source, title=f"{FIRST_YEAR + n}年度取組み進捗状況一覧"),
            columns=[
                replace(c, key=f"c{i + 1:02d}")
                for i, c in enumerate(cells[n * columns : (n + 1) * columns])
            ],
        )
        for n in range(YEARS)
    ]
    return write_corpus(folder, yearly)


def timed(env: dict, *args: str) -> float:
    """Wall time of ``kb ARGS`` in a fresh process; fails loudly if kb fails."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kb", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--work", type=Path, help="keep the corpus and index in this folder")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kb-themes-bench-") as tmp:
        root = args.work or Path(tmp)
        env = {
            **os.environ,
            "KB_HOME": str(root),
            "KB_CORPUS": str(corpus(root / "corpus")),
            "KB_INDEX": str(root / "index"),
            "OMP_WAIT_POLICY": "PASSIVE",
        }
        log(f"kb build: {CELLS} cells, {YEARS} years…")
        build_s = timed(env, "build")
        floor = timed(env, "search", "看護師の不足", "--json")
        figures = {"cells": CELLS, "years": YEARS, "build_s": build_s, "floor_s": floor}
        last = str(FIRST_YEAR + YEARS - 1)
        for name, extra in (("challenge", ()), ("all", ("--field", "all"))):
            for run in ("cold", "warm"):
                log(f"kb themes --year {last} {' '.join(extra)} ({run})…")
                figures[f"{name}_{run}_s"] = timed(
                    env, "themes", "--year", last, "--format", "json", *extra
                )
    print(f"{CELLS} cells, {YEARS} years; kb build {figures['build_s']:.1f} s")
    print(f"floor (one kb search in a fresh process) {floor:.2f} s")
    for name in ("challenge", "all"):
        cold, warm = figures[f"{name}_cold_s"], figures[f"{name}_warm_s"]
        print(
            f"kb themes --year {last} ({name}): cold {cold:.2f} s ({cold / floor:.1f}× the"
            f" floor), warm {warm:.2f} s ({warm / floor:.1f}×)"
        )
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
