"""Build the search index from the corpus, and open it again safely.

Layout of the index folder::

    current -> builds/<build id>     symlink, swapped atomically after a build succeeds
    builds/<build id>/               manifest.json, chunks.sqlite, *.npy, dense.faiss, lexical/,
                                     grams/
    cache/embeddings.sqlite          passage vectors and terms by text, kept across builds

A build writes a new folder beside the live one and only then repoints ``current``, so a
failed or killed build leaves the previous index exactly as it was, and a running server
keeps answering from the folder it opened.

A build takes the vectors and terms of unchanged chunks straight from the live build
(found by a key of the texts the embedder and BM25 saw, ``row_keys.npy``); only new texts
are looked up in the cache or computed. Reading 100k rows back from the cache alone took
4 s of a one-cell rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import xxhash

from kb.core.cache import TextCache
from kb.core.errors import IndexMismatchError, IndexMissingError, KbError
from kb.core.memo import Memo
from kb.core.model import Chunk, ColumnView, column_views, column_views_of_chunks
from kb.core.settings import Settings
from kb.corpus.tables import Corpus, tables_hash
from kb.retrieval import dense, grams, lexical
from kb.retrieval.analysis import Analyzer, cached_tokens, terms_version
from kb.retrieval.embedding import Embedder, embed_passages
from kb.retrieval.lexical import Terms
from kb.retrieval.store import ChunkStore, write_store

SCHEMA_VERSION = 7  # 7: grams/, the character-pair ranking
MANIFEST = "manifest.json"
ROW_KEYS = "row_keys.npy"
CURRENT = "current"
BUILDS = "builds"
CACHE_FILE = "cache/embeddings.sqlite"
KEEP_BUILDS = 2  # the live build and the one before it (a server may still read it)


def passage_text(chunk: Chunk) -> str:
    """What the embedder sees for a chunk: the cell with the column's context."""
    title = f"「{chunk.item_title}」" if chunk.item_title else ""
    return f"{chunk.organisation}{title}の{chunk.field.ja}: {chunk.text}"


def cached_passage_vectors(index_dir: Path, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Passage vectors of ``texts`` (one row each), reusing and filling the cache that builds
    keep in ``index_dir``, so texts already indexed are not embedded again."""
    with TextCache(index_dir / CACHE_FILE) as cache:
        return embed_passages(embedder, texts, cache)[0]


def lexical_text(chunk: Chunk) -> str:
    """What BM25 indexes for a chunk: the cell plus who wrote it, so names find it. (Adding
    the item title raised nDCG@10 on the dev queries but let cells that only share their
    column's title outrank cells containing an exact term, which must come first.)"""
    return f"{chunk.text}\n{chunk.organisation}"


@dataclass
class BuildReport:
    build_id: str
    chunks: int
    embedded: int
    seconds: float


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _files_of(folder: Path) -> dict[str, dict]:
    """Size and checksum of every file of a build, to detect damage when it is opened."""
    return {
        p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "xxh3": file_digest(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def row_keys(chunks: list[Chunk]) -> np.ndarray:
    """A 64-bit key per chunk of what the embedder and BM25 see of it: equal keys, equal
    vectors and terms. (At a million chunks the chance of two texts sharing a key is
    about 1 in 30 million.)"""
    return np.fromiter(
        (
            xxhash.xxh3_64_intdigest(
                f"{passage_text(c)}\x1f{lexical_text(c)}".encode("utf-8", "surrogatepass")
            )
            for c in chunks
        ),
        dtype=np.uint64,
        count=len(chunks),
    )


@dataclass
class BuildParts:
    """Everything a build folder is written from, in chunk row order."""

    chunks: list[Chunk]
    keys: np.ndarray  # row_keys(chunks)
    vectors: np.ndarray
    terms: Terms
    grams: Terms  # character pairs of the same texts as terms
    embedder: str
    analysis: str  # analysis_version() the terms and pairs were computed under
    corpus_hash: str
    # The chunks' columns in table order; None derives them from the chunks alone (a
    # synthetic build has no tables to read them from).
    columns: list[ColumnView] | None = None
    aliases: dict[str, str] = field(default_factory=dict)


@dataclass
class Carried:
    """What a new build takes over from the live one."""

    rows: np.ndarray  # for each new row, its row in the live build, or -1
    vectors: np.ndarray  # the live vectors of the rows found, in new row order
    terms: Terms  # all of the live build's terms
    grams: Terms  # and its character pairs

    @classmethod
    def nothing(cls, rows: int, dim: int) -> Carried:
        empty = Terms([], np.empty(0, np.int64), np.zeros(1, np.int64))
        return cls(np.full(rows, -1, np.int64), np.empty((0, dim), np.float32), empty, empty)

    def vectors_with(self, fresh: np.ndarray) -> np.ndarray:
        """All rows' vectors: the carried ones, and ``fresh`` for the rest, in order."""
        found = self.rows >= 0
        vectors = np.empty((len(self.rows), fresh.shape[1]), np.float32)
        vectors[found] = self.vectors
        vectors[~found] = fresh
        return vectors


def analysis_version() -> str:
    """What a build's terms and character pairs depend on besides the texts (the row keys
    cover those): terms and pairs made under another version are not carried over."""
    return f"{terms_version()};pairs:{grams.VERSION}"


def carry_over(index_dir: Path, embedder: Embedder, keys: np.ndarray) -> Carried:
    """The vectors and terms of the live build's rows whose keys are in ``keys``.

    Only a build this kb would search is used (same schema, embedder and analysis, every
    checksum right); anything else, such as a damaged build, means starting afresh.
    """
    nothing = Carried.nothing(len(keys), embedder.dim)
    try:
        live = open_index(index_dir, embedder.name)
        live_keys = np.load(live.folder / ROW_KEYS)
        terms = Terms.load(live.folder, live.lexical)
        pairs = live.grams.terms()
    except IndexMissingError:
        return nothing
    except (KbError, OSError, ValueError):
        _log("いまの索引からは引き継がず、キャッシュと計算で作ります")
        return nothing
    if live.manifest.get("analysis") != analysis_version():
        return nothing
    order = np.argsort(live_keys, kind="stable")
    at = np.minimum(np.searchsorted(live_keys[order], keys), max(len(order) - 1, 0))
    found = live_keys[order][at] == keys if len(order) else np.zeros(len(keys), bool)
    rows = np.where(found, order[at], -1)
    return Carried(rows, dense.vectors(live.dense, rows[found]), terms, pairs)


def build(
    settings: Settings,
    embedder: Embedder,
    analyzer: Analyzer,
    corpus: Corpus | None = None,
    before_swap: Callable[[Path], None] | None = None,
) -> BuildReport:
    """Build an index of ``corpus`` (default: the settings' corpus) and make it current.

    Unchanged chunks keep the live build's vectors and terms; the rest come from the cache
    where the text was seen before, so a rebuild after editing one cell computes one cell.
    ``before_swap`` is called with the finished build folder just before it goes live.
    """
    started = time.perf_counter()
    with TextCache(settings.index_dir / CACHE_FILE) as cache:
        corpus = corpus or Corpus.load(settings.corpus_dir, cache)
        chunks = corpus.chunks
        if not chunks:
            raise KbError(
                f"{settings.corpus_dir} に検索できるセルがありません。先に kb ingest で表を取り込んでください"
            )
        _log(f"{len(chunks)}セルを索引にします（埋め込み: {embedder.name}）")
        keys = row_keys(chunks)
        carried = carry_over(settings.index_dir, embedder, keys)
        fresh = [chunks[i] for i in np.flatnonzero(carried.rows < 0)]
        vectors, embedded = embed_passages(embedder, [passage_text(c) for c in fresh], cache)
        terms = cached_tokens(analyzer, [lexical_text(c) for c in fresh], cache)
    pairs = [grams.pairs(lexical_text(c)) for c in fresh]
    parts = BuildParts(
        chunks=chunks,
        keys=keys,
        vectors=carried.vectors_with(vectors),
        terms=Terms.assemble(carried.terms, carried.rows, Terms.from_lists(terms)),
        grams=Terms.assemble(carried.grams, carried.rows, Terms.from_lists(pairs)),
        embedder=embedder.name,
        analysis=analysis_version(),
        corpus_hash=corpus.content_hash(),
        columns=[view for table in corpus.tables for view in column_views(table)],
        aliases=corpus.aliases,
    )
    build_id = publish(settings.index_dir, parts, before_swap)
    return BuildReport(build_id, len(chunks), embedded, time.perf_counter() - started)


def publish(
    root: Path, parts: BuildParts, before_swap: Callable[[Path], None] | None = None
) -> str:
    """Write ``parts`` as a new build folder under ``root`` and make it current atomically.

    Returns the build id. If anything fails, the folder is removed and ``current`` still
    points at the previous build.
    """
    build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    staging = root / BUILDS / f".{build_id}.{os.getpid()}.partial"
    staging.mkdir(parents=True)
    written = staging  # the folder to remove if the build fails before going live
    try:
        try:
            _write_parts(staging, parts, build_id)
        except (OSError, RuntimeError) as exc:  # FAISS reports write errors as RuntimeError
            raise KbError(
                f"索引を書き込めませんでした（{exc}）。ディスクの空きを確かめてください。"
                "前の索引はそのまま使えます"
            ) from exc
        final = root / BUILDS / build_id
        staging.rename(final)
        written = final
        if before_swap:
            before_swap(final)
        _point_current(root, final)
    except BaseException:
        if (root / CURRENT).resolve() != written.resolve():  # never the build gone live
            shutil.rmtree(written, ignore_errors=True)
        raise
    _prune(root)
    return build_id


def _write_parts(folder: Path, parts: BuildParts, build_id: str) -> None:
    dense.save(dense.build_index(parts.vectors), folder)
    lexical.save(lexical.build_index(parts.terms), parts.terms, folder)
    grams.save(parts.grams, folder)
    np.save(folder / ROW_KEYS, parts.keys)
    columns = parts.columns if parts.columns is not None else column_views_of_chunks(parts.chunks)
    write_store(folder, parts.chunks, columns, parts.aliases)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "build_id": build_id,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "embedder": {"name": parts.embedder, "dim": int(parts.vectors.shape[1])},
        "analysis": parts.analysis,
        "corpus_hash": parts.corpus_hash,
        "chunks": len(parts.chunks),
        "dense_index": "ivf" if len(parts.chunks) >= dense.APPROXIMATE_FROM else "flat",
        "files": _files_of(folder),
    }
    (folder / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    _fsync_tree(folder)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def _point_current(root: Path, target: Path) -> None:
    link = root / f".{CURRENT}.{os.getpid()}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(target.relative_to(root))
    os.replace(link, root / CURRENT)  # rename(2) is atomic: readers see old or new


def _prune(root: Path) -> None:
    """Remove builds older than the last KEEP_BUILDS, and the staging folders of builds that
    were killed (their process is gone); a concurrent build's staging folder stays."""
    builds = root / BUILDS
    live = (root / CURRENT).resolve()
    finished = sorted(p for p in builds.iterdir() if not p.name.startswith("."))
    for old in finished[:-KEEP_BUILDS]:
        if old.resolve() != live:
            shutil.rmtree(old, ignore_errors=True)
    for partial in builds.glob(".*.partial"):
        if not _alive(int(partial.name.split(".")[-2])):  # left by a killed build
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- opening ---------------------------------------------------------------------------


@dataclass
class LoadedIndex:
    """An opened build: its manifest, its searchable parts, and the memo of answers
    computed from it (a new build starts with an empty one)."""

    folder: Path
    manifest: dict
    store: ChunkStore
    dense: faiss.Index
    lexical: object
    grams: lexical.RowIndex  # every row's character pairs (kb.retrieval.grams)
    memo: Memo = field(default_factory=Memo)

    @property
    def aliases(self) -> dict[str, str]:
        """Organisation aliases as they were when this build was made."""
        return self.store.aliases


def current_build(index_dir: Path) -> Path:
    link = index_dir / CURRENT
    try:
        target = os.readlink(link)  # one system call; the server asks often
    except OSError:
        raise IndexMissingError(
            f"索引がありません（{index_dir}）。先に kb build を実行してください"
        ) from None
    return (index_dir / target).resolve()


def built_by_older_kb(index_dir: Path) -> bool:
    """True when the live build was written by an older kb (an older schema), so that
    ``kb serve`` rebuilds it after an upgrade instead of refusing every search. False when
    there is no build or its manifest cannot be read (opening it then says what is wrong)."""
    try:
        manifest = read_manifest(current_build(index_dir))
    except KbError:
        return False
    return int(manifest.get("schema_version", 0)) < SCHEMA_VERSION


def built_from_another_corpus(index_dir: Path, corpus_dir: Path) -> bool:
    """True when the live build was made from other tables than ``corpus_dir`` holds now (a
    build after an admin change cut short by a restart, or ``kb ingest`` without ``kb
    build``), so that ``kb serve`` rebuilds it rather than serve the old tables. False when
    there is no build or its manifest cannot be read."""
    try:
        manifest = read_manifest(current_build(index_dir))
    except KbError:
        return False
    return _other_tables(manifest, corpus_dir)


def _other_tables(manifest: dict, corpus_dir: Path) -> bool:
    return tables_hash(corpus_dir) != manifest.get("corpus_hash")


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexMismatchError(
            f"索引の manifest.json を読めません（{folder}: {exc}）。kb build で作り直してください"
        ) from exc


def check_manifest(manifest: dict, folder: Path, embedder_name: str) -> None:
    """Refuse an index this kb cannot search: other schema, other embedder, damaged files."""
    rebuild = "kb build で索引を作り直してください"
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise IndexMismatchError(
            f"索引の形式が古いか新しすぎます（schema {manifest.get('schema_version')}、"
            f"この kb は {SCHEMA_VERSION}）。{rebuild}"
        )
    built_with = manifest.get("embedder", {}).get("name")
    if built_with != embedder_name:
        raise IndexMismatchError(
            f"索引は埋め込みモデル「{built_with}」で作られていますが、設定は「{embedder_name}」です。"
            f"{rebuild}（または KB_EMBEDDER={built_with} を指定してください）"
        )
    for name, recorded in manifest.get("files", {}).items():
        path = folder / name
        if not path.exists():
            raise IndexMismatchError(f"索引のファイル {name} がありません（{folder}）。{rebuild}")
        if path.stat().st_size != recorded["size"]:
            raise IndexMismatchError(
                f"索引のファイル {name} の大きさが記録と違います（途中までしか書かれていません）。{rebuild}"
            )
        if file_digest(path) != recorded["xxh3"]:
            raise IndexMismatchError(f"索引のファイル {name} の中身が壊れています。{rebuild}")


def open_index(index_dir: Path, embedder_name: str) -> LoadedIndex:
    """Open the current build after checking it; raises a KbError telling what to do."""
    folder = current_build(index_dir)
    manifest = read_manifest(folder)
    check_manifest(manifest, folder, embedder_name)
    try:
        return LoadedIndex(
            folder=folder,
            manifest=manifest,
            store=ChunkStore(folder),
            dense=dense.load(folder),
            lexical=lexical.load(folder),
            grams=grams.load(folder),
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise IndexMismatchError(
            f"索引を読み込めません（{folder.name}: {exc.__class__.__name__}: {exc}）。kb build で作り直してください"
        ) from exc


def corpus_changed_since(loaded: LoadedIndex, corpus_dir: Path) -> bool:
    """True when the corpus has been edited after this index was built."""
    return _other_tables(loaded.manifest, corpus_dir)


def file_digest(path: Path) -> str:
    """xxh3 of a file: fast enough (several GB/s) to check a million-cell index at start-up,
    where sha256 would take seconds."""
    digest = xxhash.xxh3_64()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()
