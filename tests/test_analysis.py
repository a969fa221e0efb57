"""Japanese analysis with the real Sudachi dictionary and the project's synonym file, and
the highlighting pieces built from its matches."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from conftest import CORPUS
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.core.errors import InputError
from kb.corpus.tables import Corpus
from kb.retrieval import lexical
from kb.retrieval.analysis import PART_WEIGHT, Analyzer, Synonyms, is_meaningful
from kb.search.highlight import COMMON_SHARE, pieces

SYNONYMS = CORPUS / "synonyms.yaml"


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(Synonyms.load(SYNONYMS))


@pytest.fixture(scope="module")
def plain() -> Analyzer:
    """No synonyms: only what Sudachi and kb's own rules do."""
    return Analyzer()


# --- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("障がい", "障害"),
        ("子ども", "子供"),
        ("ｼｮｰﾄｽﾃｲ", "ショートステイ"),
        ("ＮＵＲＳＥ", "nurse"),
    ],
)
def test_spelling_variants_give_the_same_terms(plain: Analyzer, one: str, other: str) -> None:
    assert plain.tokens(one) == plain.tokens(other)
    assert plain.tokens(one)  # not both empty


def test_variants_meet_inside_sentences(plain: Analyzer) -> None:
    assert "障害" in plain.tokens("障がいのある子どもの支援")
    assert "子供" in plain.tokens("障がいのある子どもの支援")


def test_compound_is_indexed_with_its_parts(plain: Analyzer) -> None:
    terms = plain.tokens("看護師不足")
    assert {"看護師", "看護", "不足"} <= set(terms)


def test_okurigana_variants_meet_through_synonym_groups(analyzer: Analyzer) -> None:
    # Sudachi alone keeps them apart; the group 受け入れ/受入れ brings them together.
    plain = Analyzer()
    assert not set(plain.tokens("受入れ")) & set(plain.tokens("受け入れ"))
    assert set(analyzer.query_tokens("受入れ")) & set(analyzer.tokens("受け入れ"))
    assert set(analyzer.query_tokens("受け入れ")) & set(analyzer.tokens("受入れ"))


def test_particles_symbols_and_stop_words_are_dropped(plain: Analyzer) -> None:
    terms = plain.tokens("看護師が不足していることなどを、会議で話し合う。「研修」")
    for dropped in ("が", "て", "いる", "こと", "など", "を", "、", "で", "。", "「", "」", "為る"):
        assert dropped not in terms
    assert {"看護師", "不足", "会議", "研修"} <= set(terms)


def test_lone_kanji_is_kept_lone_kana_and_letters_are_not(plain: Analyzer) -> None:
    assert "児" in plain.tokens("児")
    assert plain.tokens("a") == []
    assert plain.tokens("ね") == []


def test_english_words_keep_their_spelling(plain: Analyzer) -> None:
    # Sudachi would normalise "nurse" to ナース; English queries must match English text.
    assert plain.tokens("Nurse") == ["nurse"]


# --- synonyms --------------------------------------------------------------------------


def test_project_synonyms_expand_short_stay_to_short_term_admission(analyzer: Analyzer) -> None:
    assert {"短期", "入所"} & set(analyzer.query_tokens("ショートステイ"))
    assert set(analyzer.tokens("短期入所")) <= set(analyzer.query_tokens("ショートステイ"))


def test_english_query_reaches_japanese_terms(analyzer: Analyzer) -> None:
    terms = analyzer.query_tokens("nurse shortage")
    assert {"看護師", "不足"} <= set(terms)
    assert {"nurse", "shortage"} <= set(terms)


def test_english_entries_match_whole_words_only(analyzer: Analyzer) -> None:
    # The group [ステーション, ST]: "st" must not be found inside "short stay".
    assert "ステーション" not in analyzer.query_tokens("short stay")
    assert set(analyzer.tokens("短期入所")) <= set(analyzer.query_tokens("short stay"))
    assert "ステーション" in analyzer.query_tokens("訪問看護 ST")
    # English inside Japanese, written full-width, still fires (queries without a Latin
    # letter skip the English entries' patterns, which must see the folded query).
    assert "ステーション" in analyzer.query_tokens("訪問看護ＳＴの研修")


def test_the_dense_text_replaces_english_words_whole(tmp_path: Path) -> None:
    """The first *whole* "stay" becomes the table's term, in any case; a "stay" inside
    "stayover" is left as written."""
    path = tmp_path / "synonyms.yaml"
    path.write_text("concepts:\n  - concept: a\n    expand:\n      stay: [短期入所]\n", "utf-8")
    analyzer = Analyzer(Synonyms.load(path))
    assert analyzer.dense_query("stayover or short STAY") == "stayover or short 短期入所"
    assert analyzer.dense_query("stayover") == "stayover"


def test_english_words_fire_entries_in_any_inflection_the_file_does_not_list(
    tmp_path: Path,
) -> None:
    """A word the file lists in one form fires in another (helpers, Children, using), on
    both legs; a form the file lists as an entry of its own keeps it (staffing is not
    staff), and short words are not read as inflections (Ns is not n)."""
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "concepts:\n  - concept: a\n    expand:\n"
        "      home helper: [ヘルパー]\n      child: [小児]\n      use: [利用]\n"
        "      staff: [職員]\n      staffing: [配置]\n      n: [窒素]\n",
        "utf-8",
    )
    analyzer = Analyzer(Synonyms.load(path))
    terms = set(analyzer.query_tokens("Home Helpers for Children, using ns"))
    assert {"ヘルパー", "小児", "利用"} <= terms
    assert "窒素" not in terms
    assert analyzer.dense_query("home helpers for children") == "ヘルパー for 小児"
    assert "配置" not in analyzer.query_tokens("staff")
    assert "職員" not in analyzer.query_tokens("staffing")
    assert "配置" in analyzer.query_tokens("staffing")


def test_synonyms_apply_to_queries_not_documents(analyzer: Analyzer) -> None:
    assert "短期" not in analyzer.tokens("ショートステイ")


def test_user_edited_synonyms_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "groups:\n  - [もみじ便, 送迎車]\nexpand:\n  penguin: [看護師]\n", encoding="utf-8"
    )
    edited = Analyzer(Synonyms.load(path))
    assert "送迎" in edited.query_tokens("もみじ便")
    assert "看護師" in edited.query_tokens("penguin")
    # … and the project's entries are gone with the project's file.
    assert "看護師" not in edited.query_tokens("nurse")


def test_missing_synonyms_file_means_no_synonyms(tmp_path: Path) -> None:
    empty = Analyzer(Synonyms.load(tmp_path / "absent.yaml"))
    assert empty.synonyms.entries == []
    assert empty.query_tokens("ショートステイ") == Analyzer().tokens("ショートステイ")
    assert empty.dense_query("ショートステイ") == "ショートステイ"


def test_hand_edited_synonyms_may_leave_sections_empty(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    # The first format (groups/expand at the top) still reads, as one nameless concept.
    path.write_text(
        "groups:\n  -\n  - [送迎, 登下校]\nexpand:\n  nurse: 看護師\n", encoding="utf-8"
    )
    loaded = Synonyms.load(path)
    assert [(e.words, e.adds, e.line) for e in loaded.entries] == [
        (("送迎", "登下校"), ("送迎", "登下校"), 3),
        (("nurse",), ("看護師",), 5),  # one word without brackets
    ]
    path.write_text("# 全部消した\ngroups:\nexpand:\n", encoding="utf-8")
    assert Synonyms.load(path) == Synonyms()
    path.write_text("concepts:\n  - concept: 空\n    groups:\n", encoding="utf-8")
    assert Synonyms.load(path) == Synonyms()


def test_project_vocabulary_is_grouped_by_concept_with_lines() -> None:
    entries = Synonyms.load(SYNONYMS).entries
    lines = SYNONYMS.read_text(encoding="utf-8").splitlines()
    assert len({e.concept for e in entries}) >= 10
    for entry in entries:
        assert entry.concept and entry.adds
        # The line named is the line the entry is written on.
        assert entry.words[0] in lines[entry.line - 1]


CONCEPT = """concepts:
  - concept: 預かり
    groups:
      - [ショートステイ, 短期入所]
    expand:
      預け: [短期入所, レスパイト]
  - concept: 名前だけ
    legs: [lexical]
    expand:
      はこぶ: 送迎
"""


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ("concepts:\n  - [看護師, 看護職\n", 3, "YAML"),  # unclosed bracket
        ("- 看護師\n", 1, "concepts:"),
        ("concepts: 看護師\n", 1, "concepts:"),
        ("concepts:\n  - groups:\n      - [看護師, 看護職]\n", 2, "concept: 名前"),
        (CONCEPT.replace("    groups:\n      - [ショ", "    groups: [ショ"), 3, "groups:"),
        (CONCEPT.replace("[ショートステイ, 短期入所]", "[ショートステイ]"), 4, "2つ以上"),
        (
            CONCEPT.replace("[ショートステイ, 短期入所]", "[ショートステイ, [短期入所]]"),
            4,
            "groups:",
        ),
        (CONCEPT.replace("預け: [短期入所, レスパイト]", "- 預け"), 6, "expand:"),
        (
            CONCEPT.replace("預け: [短期入所, レスパイト]", "預け: [短期入所, [レスパイト]]"),
            6,
            "預け",
        ),
        (CONCEPT.replace("legs: [lexical]", "legs: [lexical, 意味]"), 8, "legs:"),
        (CONCEPT.replace("    expand:\n      はこぶ", "    expnad:\n      はこぶ"), 9, "expnad"),
    ],
)
def test_broken_synonyms_file_names_file_and_line(
    tmp_path: Path, text: str, line: int, says: str
) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=says) as raised:
        Synonyms.load(path)
    assert str(raised.value).startswith(f"{path}（{line}行目）: ")


def test_entry_fires_on_the_legs_it_is_written_for(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.yaml"
    path.write_text(CONCEPT, encoding="utf-8")
    both = CONCEPT.replace(
        "  - concept: 預かり\n", "  - concept: 預かり\n    legs: [lexical, dense]\n"
    )
    (tmp_path / "both.yaml").write_text(both, encoding="utf-8")
    assert Analyzer(Synonyms.load(tmp_path / "both.yaml")).dense_query("ショートステイ") == (
        "短期入所"
    )
    analyzer = Analyzer(Synonyms.load(path))
    query = "子どもを預けたい"
    (fired,) = analyzer.fired(query)
    assert (fired.concept, fired.words, fired.line) == ("預かり", ("預け",), 6)
    assert "預け → 短期入所・レスパイト（6行目）" in fired.describe()
    # Both legs: the lexical terms and the dense query text gain the table's words.
    assert {"短期", "入所", "レスパイト"} <= set(analyzer.query_tokens(query))
    # In the dense text the word typed gives way to the entry's first word, the table's term.
    assert analyzer.dense_query(query) == "子どもを短期入所たい"
    # A group serves the lexical side unless its concept says otherwise …
    assert "短期" in analyzer.query_tokens("ショートステイ")
    assert analyzer.dense_query("ショートステイ") == "ショートステイ"
    # … and legs: [lexical] keeps an expand entry off the dense side.
    assert "送迎" in analyzer.query_tokens("荷物をはこぶ")
    assert analyzer.dense_query("荷物をはこぶ") == "荷物をはこぶ"
    assert [e.concept for e in analyzer.fired("荷物をはこぶ")] == ["名前だけ"]


def test_dense_text_replaces_english_whole_words_and_adds_what_matched_by_terms(
    analyzer: Analyzer,
) -> None:
    assert analyzer.dense_query("Short Stay for kids") == "短期入所 for 子供"
    assert analyzer.dense_query("ＮＵＲＳＥ shortage") == "看護師 不足"
    # 医ケア is replaced first; 医ケア児 then is no longer written, so its term is added.
    assert analyzer.dense_query("医ケア児") == "医療的ケア児 小児"
    assert analyzer.dense_query("自立支援協議会") == "自立支援協議会"  # nothing fires


def test_added_words_weigh_as_whole_words_and_compound_parts_weigh_less(
    analyzer: Analyzer,
) -> None:
    weights = analyzer.query_weights("ショートステイを使いたい")
    assert weights["ショートステイ"] == 1.0
    assert weights["短期"] == weights["入所"] == 1.0  # added by the vocabulary
    own = analyzer.query_weights("看護師不足")
    assert own["看護師"] == own["不足"] == 1.0
    assert own["看護"] == PART_WEIGHT < 1.0  # a part of 看護師
    # An added compound brings no parts of its own (ショート, ステー from ショートステイ).
    assert "ショート" not in analyzer.query_weights("泊まりで預けたい")


# --- matched surfaces ------------------------------------------------------------------


def test_matched_surfaces_are_words_of_the_text(analyzer: Analyzer) -> None:
    text = "看護人材の不足により、新規受け入れ先がなかなか見つからない。"
    found = analyzer.matched_surfaces(text, analyzer.query_tokens("看護師不足"))
    assert {"看護", "不足"} <= set(found)
    assert "受け入れ" not in found
    for surface in found:
        assert surface in text


def test_matched_surfaces_of_every_corpus_cell_occur_in_the_cell(analyzer: Analyzer) -> None:
    # Full-width digits (２８日) and the like are folded for matching but must be reported
    # as written, or highlighting cannot find them.
    for chunk in Corpus.load(CORPUS).chunks:
        terms = analyzer.tokens(chunk.text)
        for surface in analyzer.matched_surfaces(chunk.text, terms):
            assert surface in chunk.text, (chunk.id, surface)


def test_width_variants_are_reported_as_written(analyzer: Analyzer) -> None:
    text = "11月２８日にｼｮｰﾄｽﾃｲの説明会"
    found = analyzer.matched_surfaces(text, analyzer.query_tokens("28日 ショートステイ"))
    assert "２８" in found and "ｼｮｰﾄｽﾃｲ" in found


# --- what highlighting marks: meaning, not fragments ------------------------------------


def test_tokens_carry_three_levels_of_part_of_speech(plain: Analyzer) -> None:
    assert plain.analyse("看護師")[0].pos == ("名詞", "普通名詞", "一般")


def test_verbs_are_marked_with_their_inflection_and_only_as_typed(plain: Analyzer) -> None:
    text = "研修を受けた職員が、利用できる事業所が限られてしまうと話した"
    # The stem alone (受け, 限ら) is never a mark; the word as the user typed it is.
    assert plain.matched_surfaces(text, ["受ける"], "研修を受けた人") == ["受けた"]
    assert plain.matched_surfaces(text, ["限る"], "限られている") == ["限られ"]
    # A verb the user did not type (an expansion, another inflection) is not marked, nor
    # one whose stem is only part of another word of the query (受け of 受け入れ).
    assert plain.matched_surfaces(text, ["受ける", "限る"], "受ける") == []
    assert plain.matched_surfaces(text, ["受ける", "限る"]) == []
    assert plain.matched_surfaces("研修を受けている", ["受ける"], "受け入れが少ない") == []
    assert plain.matched_surfaces("看護師が足りない", ["足りる"], "人手が足りない") == ["足りない"]


def test_kana_fragments_and_function_words_are_never_marked(plain: Analyzer) -> None:
    text = "子どもの受け入れがある。こうした場合は、とても大きい"
    found = plain.matched_surfaces(text, plain.tokens(text), text)
    assert "子ども" in found and "受け入れ" in found
    assert "大きい" in found  # an adjective written as typed
    assert all(is_meaningful(s) for s in found), found
    assert not {"の", "が", "は", "こう", "ある"} & set(found)


QUERIES = [
    "ゴルフ場",
    "看護師不足",
    "医療的ケア児の受け入れが限られている",
    "停電のとき人工呼吸器の子はどうする",
]


@pytest.mark.parametrize("query", QUERIES)
def test_search_marks_only_meaningful_words(service, query: str) -> None:
    for hit in service.search(query, k=20).hits:
        for surface in hit.matched_terms:
            assert is_meaningful(surface) and surface in hit.chunk.text, (hit.chunk.id, surface)
            assert surface not in {"場", "限ら", "受け"}, (query, hit.chunk.id)


def _common(service, term: str) -> bool:
    index = service.index
    return lexical.document_frequency(index.lexical, term) > COMMON_SHARE * len(index.store)


def test_a_generic_expansion_is_not_lit_up_all_over_the_page(service) -> None:
    query = "受け皿が見つからない"
    # 事業所 comes only from the vocabulary (受け皿 → 施設・事業所) and is everywhere.
    assert "事業所" in service.analyzer.query_tokens(query) and "事業所" not in query
    assert _common(service, "事業所")
    hits = service.search(query, k=20).hits
    assert any("事業所" in h.chunk.text for h in hits)
    assert not any("事業所" in h.matched_terms for h in hits)


def test_specific_expansions_and_typed_words_are_marked(service) -> None:
    query = "停電のとき人工呼吸器の子はどうする"
    assert "電源" in service.analyzer.query_tokens(query) and not _common(service, "電源")
    marked = {s for h in service.search(query, k=20).hits for s in h.matched_terms}
    assert {"人工呼吸器", "電源"} <= marked, marked


def test_a_generic_word_the_user_typed_is_marked(service) -> None:
    assert _common(service, "医療")
    assert all("医療" in h.matched_terms for h in service.search("医療", k=3).hits)


def test_related_cells_mark_only_specific_shared_words(service) -> None:
    disaster = "2017-atsugi-c08-challenge"  # its text says 医療機器 and 医療
    for hit in service.related(disaster, 5):
        for surface in hit.matched_terms:
            assert not _common(service, surface), (hit.chunk.id, surface)


# --- hostile input ---------------------------------------------------------------------

NURSE = ["看護師", "看護", "師"]  # 看護師 and its parts
# (text, its terms in order, the words of it that match 看護師 or x)
HOSTILE = [
    ("\ud800", [], []),
    ("看護\udfff師", ["看護", "師"], []),  # the surrogate splits the word: two words
    ("a\x00b", [], []),  # lone letters carry nothing
    ("\x07\x1b[31m看護師\x1b[0m\x7f", ["31", *NURSE], ["看護師"]),
    ("看護師" * 3334, NURSE * 3334, ["看護師"]),  # 10,002 characters
    ("x" * 10_000, ["x" * 10_000], []),  # one word, not the term x
    ("😀🏥👩‍⚕️" * 500, ["⚕️"] * 500, []),  # pictures are symbols; ⚕️ alone is a word
    ("ｶﾝｺﾞｼ ﾌｿｸ", ["カンゴシ", "フソク"], []),  # width folded in the terms
    ("\u200b\ufeff\u3000", [], []),
    ("", [], []),
]


@pytest.mark.parametrize(("text", "terms", "matched"), HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_text_gives_the_terms_of_its_words(
    analyzer: Analyzer, text: str, terms: list[str], matched: list[str]
) -> None:
    assert analyzer.tokens(text) == terms
    assert set(analyzer.query_tokens(text)) >= set(terms)
    assert analyzer.matched_surfaces(text, ["看護師", "x"]) == matched


def test_controls_and_surrogates_do_not_hide_the_words_around_them(plain: Analyzer) -> None:
    assert "看護師" in plain.tokens("\ud800看護師\x00不足")
    assert "不足" in plain.tokens("\ud800看護師\x00不足")


def test_text_longer_than_sudachi_accepts_is_analysed_whole(plain: Analyzer) -> None:
    # Sudachi refuses more than 49,149 bytes at once; a long pasted cell is 90,000 here.
    text = "看護師不足。" * 5000
    assert plain.tokens(text).count("看護師") == 5000
    # Without a 。 or line break to cut at, a word or two at the cuts may split.
    assert plain.tokens("看護師" * 20_000).count("看護師") > 19_900


@settings(max_examples=150, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from("看護師不足子ども障がいｶﾝｺﾞ２８ＳＴst 、。\n\x00😀"), max_size=60
    )
)
def test_surfaces_always_occur_in_the_text(plain: Analyzer, text: str) -> None:
    for surface in plain.matched_surfaces(text, plain.tokens(text)):
        assert surface in text


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=80))
def test_any_text_gives_clean_terms(analyzer: Analyzer, text: str) -> None:
    terms = analyzer.tokens(text)
    query = analyzer.query_tokens(text)
    for term in query:
        assert term.strip() == term and term, repr(term)  # no empty or padded term
        assert term.isprintable(), repr(term)  # no control character reaches the index
        term.encode("utf-8")  # no lone surrogate: raises if there is one
    assert len(query) == len(set(query))  # each term once
    assert set(terms) <= set(query)  # the synonyms add to the text's own terms
    assert analyzer.tokens(text) == terms  # the same text, the same terms


# --- highlight pieces ------------------------------------------------------------------


def test_longest_term_wins_and_terms_never_nest() -> None:
    text = "看護師と看護の不足"
    assert pieces(text, ["看護", "看護師"]) == [
        ("看護師", True),
        ("と", False),
        ("看護", True),
        ("の不足", False),
    ]


def test_pieces_without_terms_or_text() -> None:
    assert pieces("看護師", []) == [("看護師", False)]
    assert pieces("", ["看護"]) == []
    assert pieces("a.b", [".", ""]) == [("a", False), (".", True), ("b", False)]


def _starts_here(text: str, at: int, terms: set[str]) -> list[str]:
    return [t for t in terms if text.startswith(t, at)]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet="看護師不足の.*(", max_size=40),
    st.lists(st.text(alphabet="看護師不足.*(", max_size=4), max_size=5),
)
def test_pieces_join_back_to_the_text_without_nesting(text: str, terms: list[str]) -> None:
    cut = pieces(text, terms)
    wanted = {t for t in terms if t}
    assert "".join(p for p, _ in cut) == text
    assert all(p for p, _ in cut)
    # Flat: matched and unmatched pieces alternate (neighbours of one kind would be one).
    assert all(m1 != m2 for (_, m1), (_, m2) in pairwise(cut))
    at = 0
    for piece, matched in cut:
        end = at + len(piece)
        if matched:
            # Terms read longest first, so 看護師 is one match, never 看護 + 師.
            while at < end:
                longest = max(_starts_here(text, at, wanted), key=len)
                assert at + len(longest) <= end
                at += len(longest)
        else:
            assert not any(_starts_here(text, i, wanted) for i in range(at, end))
            at = end


def test_highlighting_a_cell_with_its_matched_surfaces(analyzer: Analyzer) -> None:
    text = "事業所看護師配置が困難である、離職がある"
    terms = analyzer.matched_surfaces(text, analyzer.query_tokens("看護師不足"))
    marked = [p for p, hit in pieces(text, terms) if hit]
    assert "看護師" in marked
    assert "".join(p for p, _ in pieces(text, terms)) == text


def test_entries_fire_in_file_order_however_their_words_overlap(tmp_path: Path) -> None:
    """Words inside other words, the same word in two entries, English as whole words
    only, and a word found among the query's terms rather than in its text."""
    path = tmp_path / "synonyms.yaml"
    path.write_text(
        "concepts:\n"
        "  - concept: a\n    groups:\n      - [看護師, ナース]\n      - [看護, ケア]\n"
        "  - concept: b\n    groups:\n      - [st, ステーション]\n      - [ナース, 看護職]\n"
        "  - concept: c\n    groups:\n      - [受け入れ, 受入]\n",
        encoding="utf-8",
    )
    analyzer = Analyzer(Synonyms.load(path))
    assert [e.words for e in analyzer.fired("ナースと看護師")] == [
        ("看護師", "ナース"),
        ("看護", "ケア"),
        ("ナース", "看護職"),
    ]
    assert analyzer.fired("short stay") == ()
    assert [e.words for e in analyzer.fired("訪問看護 ST")][1:] == [("st", "ステーション")]
    assert [e.words[0] for e in analyzer.fired("受け入れる")] == ["受け入れ"]
