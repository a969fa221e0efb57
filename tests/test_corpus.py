"""The corpus: the 2017 table is faithful to its source, and loads into the right chunks."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import pytest
import yaml
from conftest import CORPUS, SEED

from kb.core.errors import InputError
from kb.core.fields import FIELDS, Field
from kb.core.model import Column, Table, column_views
from kb.corpus.provenance import check_against_files
from kb.corpus.tables import Corpus, load_aliases, load_table

TABLE = CORPUS / "tables" / "2017-atsugi.yaml"
SOURCE = SEED


@pytest.fixture(scope="module")
def table() -> Table:
    return load_table(TABLE)


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.load(CORPUS)


def column(table: Table, key: str) -> Column:
    return next(c for c in table.columns if c.key == key)


def raw_cells() -> dict[tuple[str, str], str]:
    """(column key, field) → text, read straight from the YAML, not through kb."""
    raw = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    return {(c["key"], f.value): c.get(f.value) or "" for c in raw["columns"] for f in FIELDS}


# --- provenance ------------------------------------------------------------------------


# sha256 of the seed as shared (taken from the shared copy), so the check holds on any
# checkout: the file in corpus/sources/ is byte for byte the seed.
SEED_SHA256 = "901d7f7710efbfe59e44e43d20e25fc54a4b24b75933cf2bb1d6156b855819b6"


def test_seed_file_has_the_shared_seeds_hash() -> None:
    assert hashlib.sha256(SOURCE.read_bytes()).hexdigest() == SEED_SHA256


def test_table_names_the_seed_as_its_source(table: Table) -> None:
    assert (CORPUS / table.source.file).resolve() == SOURCE.resolve()


def test_every_sentence_of_the_seed_is_in_exactly_one_cell(table: Table) -> None:
    assert check_against_files(table, CORPUS) == []


def _edited(table: Table, key: str, f: Field, text: str) -> Table:
    changed = copy.deepcopy(table)
    column(changed, key).cells[f] = text
    return changed


def _problems(table: Table) -> str:
    problems = check_against_files(table, CORPUS)
    assert problems, "the check accepted a table that differs from its source"
    return "\n".join(problems)


def test_check_reports_a_deleted_sentence(table: Table) -> None:
    sentence = "管理者同士は話をしていても、スタッフ同士での交流は乏しい。"
    cell = column(table, "c07").text(Field.challenge)
    assert sentence in cell
    report = _problems(_edited(table, "c07", Field.challenge, cell.replace(sentence, "")))
    assert "表にありません" in report
    assert sentence in report


def test_check_reports_a_sentence_copied_into_a_second_cell(table: Table) -> None:
    sentence = column(table, "c13").text(Field.challenge)
    doubled = column(table, "c14").text(Field.challenge) + "\n" + sentence
    report = _problems(_edited(table, "c14", Field.challenge, doubled))
    assert "2 回" in report and "1 回" in report
    assert "c13 課題" in report and "c14 課題" in report
    assert sentence in report


def test_check_reports_text_that_is_not_in_the_source(table: Table) -> None:
    added = column(table, "c13").text(Field.solution) + "\n訪問看護の研修を毎月開催した。"
    report = _problems(_edited(table, "c13", Field.solution, added))
    assert "元の文書にない文" in report
    assert "c13 解決策" in report
    assert "訪問看護の研修を毎月開催した。" in report


def test_check_reports_texts_swapped_between_neighbouring_columns(table: Table) -> None:
    swapped = copy.deepcopy(table)
    left, right = column(swapped, "c13"), column(swapped, "c14")
    left.cells[Field.challenge], right.cells[Field.challenge] = (
        right.text(Field.challenge),
        left.text(Field.challenge),
    )
    report = _problems(swapped)
    assert "並びが元の文書と違います" in report
    assert "3ページ c13 課題" in report


def test_check_reports_text_moved_after_the_neighbouring_columns_text(table: Table) -> None:
    moved = copy.deepcopy(table)
    text = column(moved, "c13").text(Field.challenge)
    column(moved, "c13").cells[Field.challenge] = ""
    column(moved, "c14").cells[Field.challenge] += "\n" + text
    report = _problems(moved)
    assert "並びが元の文書と違います" in report
    # The order breaks where c13's text should have been: after c12, at c14.
    assert "c14 課題" in report and "c12 課題" in report
    assert text[:20] in report


def test_check_reports_text_moved_to_another_row(table: Table) -> None:
    moved = copy.deepcopy(table)
    c13 = column(moved, "c13")
    text = c13.text(Field.challenge)
    c13.cells[Field.progress] += "\n" + text
    c13.cells[Field.challenge] = ""
    report = _problems(moved)
    assert "並びが元の文書と違います" in report
    assert "3ページ c13 進捗" in report
    assert text[:20] in report


def test_check_reports_a_missing_source_file(table: Table, tmp_path: Path) -> None:
    assert check_against_files(table, tmp_path) == [
        f"{table.source.file}: 元の文書のファイルがありません"
    ]


def test_corpus_check_command_fails_on_a_broken_table(run_kb, corpus_copy: Path) -> None:
    path = corpus_copy / "tables" / "2017-atsugi.yaml"
    text = path.read_text(encoding="utf-8")
    sentence = "看護人材の不足により、利用できる事業所が限られてしまい、新規受け入れ先がなかなか見つからない。"
    path.write_text(text.replace(sentence, sentence + "追加の文。"), encoding="utf-8")
    result = run_kb("corpus", "--check", corpus=corpus_copy)
    assert result.returncode == 1
    assert "c13 課題" in result.stderr and "追加の文。" in result.stderr
    assert "元の文書と一致しません" in result.stderr


def test_corpus_check_says_a_missing_source_is_unchecked_not_different(
    run_kb, corpus_copy: Path
) -> None:
    """With the source text gone, the last line said 「元の文書と一致しません」, as if the
    table had been found unfaithful."""
    for source in (corpus_copy / "sources").glob("*.txt"):
        source.unlink()
    result = run_kb("corpus", "--check", corpus=corpus_copy)
    assert result.returncode == 1
    assert "元の文書のファイルがありません" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("元の文書のファイルが見つからないため、確かめられませんでした"), last
    assert "一致しません" not in result.stderr


# --- chunks ----------------------------------------------------------------------------


def test_chunk_ids_are_stable_and_shaped_year_council_column_field() -> None:
    first = [c.id for c in Corpus.load(CORPUS).chunks]
    second = [c.id for c in Corpus.load(CORPUS).chunks]
    assert first == second
    assert len(set(first)) == len(first)
    shape = re.compile(r"^2017-atsugi-c\d{2}-(item|progress|challenge|solution|next_year)$")
    assert all(shape.match(i) for i in first), [i for i in first if not shape.match(i)]
    assert "2017-atsugi-c03-challenge" in first


def test_one_chunk_per_non_empty_cell_and_none_for_blank_or_dash(corpus: Corpus) -> None:
    cells = raw_cells()
    expected = {
        f"2017-atsugi-{key}-{f}"
        for (key, f), text in cells.items()
        if text.strip() not in ("", "－")
    }
    ids = {c.id for c in corpus.chunks}
    assert ids == expected
    assert len(ids) == 82
    assert cells[("c03", "next_year")] == "" and "2017-atsugi-c03-next_year" not in ids
    assert cells[("c03", "solution")] == "－" and "2017-atsugi-c03-solution" not in ids
    assert all(c.text.strip() not in ("", "－") for c in corpus.chunks)


def test_every_chunk_reaches_its_column_in_field_order(corpus: Corpus) -> None:
    views = {v.id: v for table in corpus.tables for v in column_views(table)}
    for chunk in corpus.chunks:
        view = views[chunk.column_id]
        assert [c.field for c in view.cells] == list(FIELDS)
        (cell,) = [c for c in view.cells if c.id == chunk.id]
        assert (cell.field, cell.text) == (chunk.field, chunk.text)
        assert view.organisation == chunk.organisation and view.item_nos == chunk.item_nos
    assert {c.id for v in views.values() for c in v.filled} == {c.id for c in corpus.chunks}
    c03 = views[corpus.chunk("2017-atsugi-c03-item").column_id]
    assert [c.field for c in c03.filled] == [Field.item, Field.progress, Field.challenge]
    assert [c.text for c in c03.cells][3:] == ["－", ""]  # shown in the grid, not indexed


def test_chunk_metadata_for_a_few_known_cells(corpus: Corpus) -> None:
    challenge = next(
        c
        for c in corpus.chunks
        if c.organisation == "厚木市障がい福祉課①" and c.field is Field.challenge
    )
    assert "看護人材の不足により" in challenge.text
    assert (challenge.id, challenge.year, challenge.page) == ("2017-atsugi-c13-challenge", 2017, 3)
    assert challenge.council == "厚木地域小児等在宅医療連絡会議"
    assert challenge.document == "資料２－２"
    assert (challenge.item_no, challenge.category) == (6, "体制構築")
    assert (challenge.field.ja, challenge.field.value) == ("課題", "challenge")
    assert challenge.agency == "厚木市障がい福祉課"

    next_year = next(
        c
        for c in corpus.chunks
        if c.organisation == "訪問看護ステーションもみじ" and "事業所看護師配置が困難" in c.text
    )
    assert (next_year.field, next_year.field.ja) == (Field.next_year, "来年度")
    assert (next_year.page, next_year.item_no, next_year.category) == (1, 6, "体制構築")

    data = corpus.chunk("2017-atsugi-c08-progress").as_dict()
    assert data["organisation"] == "厚木保健福祉事務所"
    assert (data["item_no"], data["item_nos"], data["page"]) == (1, [1, 8, 9], 2)
    assert data["category"] == "体制構築、コーディネート"
    assert (data["field"], data["field_ja"]) == ("progress", "進捗")


def test_hospital_items_8_and_17_are_two_columns_under_one_heading(table: Table) -> None:
    columns = [c for c in table.columns if c.organisation == "厚木市立病院"]
    assert [c.item_nos for c in columns] == [[8], [17]]
    assert [c.shares_heading for c in columns] == [False, True]
    assert [c.page for c in columns] == [1, 1]
    assert columns[0].category == "体制構築" and columns[1].category == "情報集約"


def test_organisation_names_are_normalised(corpus: Corpus) -> None:
    names = corpus.organisations()
    assert "訪問看護ステーションふたばらいふ" in names
    assert "神奈川県リハビリテーション事業団" in names
    assert not any("\u3000" in n or " " in n or re.search(r"[\uff61-\uff9f]", n) for n in names)
    assert len(names) == 17


def test_loading_normalises_headings_as_printed(tmp_path: Path) -> None:
    text = TABLE.read_text(encoding="utf-8")
    text = text.replace(
        "訪問看護ステーションふたばらいふ", "訪問看護ステーション\u3000ふたばらいふ"
    )
    text = text.replace("神奈川県リハビリテーション事業団", "神奈川県ﾘﾊﾋﾞﾘﾃｰｼｮﾝ事業団")
    assert "ﾘﾊﾋﾞﾘ" in text and "\u3000ふたばらいふ" in text
    printed = tmp_path / "printed.yaml"
    printed.write_text(text, encoding="utf-8")
    assert load_table(printed) == load_table(TABLE)


# --- organisation aliases --------------------------------------------------------------


def test_aliases_resolve_to_organisations_of_the_table(corpus: Corpus) -> None:
    expected = {
        "ゆいはあと": "厚木市障がい者基幹相談支援センター（ゆいはあと）",
        "基幹相談支援センター": "厚木市障がい者基幹相談支援センター（ゆいはあと）",
        "まめの木": "厚木市療育相談センター「まめの木」（厚木市福祉総務課）",
        "厚木市療育相談センター": "厚木市療育相談センター「まめの木」（厚木市福祉総務課）",
        "福祉総務課": "厚木市療育相談センター「まめの木」（厚木市福祉総務課）",
        "北里大学東病院": "北里大学東病院小児在宅支援センター",
        "北里": "北里大学東病院小児在宅支援センター",
        "リハ事業団": "神奈川県リハビリテーション事業団",
        "座間養護学校": "神奈川県立座間養護学校①",
        "座間養護": "神奈川県立座間養護学校①",
        "医師会": "厚木医師会",
        "市立病院": "厚木市立病院",
        "保健福祉事務所": "厚木保健福祉事務所",
        "児相": "厚木児童相談所",
    }
    assert {alias: corpus.aliases.get(alias) for alias in expected} == expected
    organisations = set(corpus.organisations())
    assert set(corpus.aliases.values()) <= organisations
    # Every canonical name resolves to itself.
    assert all(corpus.aliases[name] == name for name in corpus.aliases.values())


def test_alias_file_has_no_alias_twice() -> None:
    raw = yaml.safe_load((CORPUS / "organisations.yaml").read_text(encoding="utf-8"))
    names = [e["name"] for e in raw["organisations"]]
    spellings = names + [a for e in raw["organisations"] for a in e.get("aliases") or []]
    assert len(spellings) == len(set(spellings))


def test_alias_file_tells_users_they_may_add_aliases() -> None:
    head = (CORPUS / "organisations.yaml").read_text(encoding="utf-8").splitlines()[:5]
    assert head[0].startswith("# ")
    assert any("別名" in line and "追加" in line for line in head)


def test_aliases_tolerate_an_entry_without_aliases_and_fold_spelling(tmp_path: Path) -> None:
    path = tmp_path / "organisations.yaml"
    path.write_text(
        "organisations:\n"
        "- name: 訪問看護ステーション　ふたばらいふ\n"
        "  aliases:\n"
        "- name: 神奈川県ﾘﾊﾋﾞﾘﾃｰｼｮﾝ事業団\n"
        "  aliases: [ﾘﾊ事業団]\n"
        "- name: 厚木医師会\n"
        "  aliases: 医師会\n",
        encoding="utf-8",
    )
    assert load_aliases(path) == {
        "訪問看護ステーションふたばらいふ": "訪問看護ステーションふたばらいふ",
        "神奈川県リハビリテーション事業団": "神奈川県リハビリテーション事業団",
        "リハ事業団": "神奈川県リハビリテーション事業団",
        "厚木医師会": "厚木医師会",
        "医師会": "厚木医師会",
    }
    assert load_aliases(tmp_path / "missing.yaml") == {}


def test_a_broken_alias_file_is_a_clear_input_error(tmp_path: Path) -> None:
    path = tmp_path / "organisations.yaml"
    path.write_text("organisations:\n- name: [閉じていない\n", encoding="utf-8")
    with pytest.raises(InputError) as error:
        load_aliases(path)
    assert str(path) in str(error.value) and "YAML" in str(error.value)
    path.write_text("organisations:\n- aliases: [医師会]\n", encoding="utf-8")
    with pytest.raises(InputError, match="1番目の団体に name"):
        load_aliases(path)
    path.write_text("- name: 厚木医師会\n", encoding="utf-8")
    with pytest.raises(InputError, match="organisations"):
        load_aliases(path)


@pytest.mark.parametrize("name", ["organisations.yaml", "tables/2017-atsugi.yaml"])
def test_a_broken_yaml_file_stops_the_cli_with_one_clear_line(
    run_kb, corpus_copy: Path, name: str
) -> None:
    broken = corpus_copy / name
    broken.write_text("organisations:\n- name: [閉じていない\n", encoding="utf-8")
    result = run_kb("corpus", corpus=corpus_copy)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"エラー: {broken}（3行目）: YAML として読めません")
    assert len(result.stderr.splitlines()) == 1
