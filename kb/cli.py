"""The ``kb`` command. Results go to stdout, progress and errors to stderr.

Each command is a thin wrapper over a library function, so the CLI, the web app and the
tests exercise the same code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path

import click

from kb.corpus import Corpus
from kb.errors import KbError
from kb.settings import Settings


def _fail_cleanly(command: Callable) -> Callable:
    """Report KbError as one line on stderr and exit 1, instead of a traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except KbError as exc:
            click.echo(f"エラー: {exc}", err=True)
            sys.exit(1)

    return wrapper


def log(message: str) -> None:
    click.echo(message, err=True)


def _dump(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """kb: 小児等在宅医療連絡会議の取組み進捗状況を検索するナレッジベース"""
    ctx.obj = Settings.from_env()


pass_settings = click.make_pass_decorator(Settings)


# --- corpus ----------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="JSON で出力する")
@click.option("--check", is_flag=True, help="表が元の文書と一字一句同じ内容かを確かめる")
@pass_settings
@_fail_cleanly
def corpus(settings: Settings, as_json: bool, check: bool) -> None:
    """読み込まれている表（団体・項目・欄ごとのセル数・年度）を表示する。"""
    from kb.provenance import check_against_files
    from kb.summary import corpus_summary, render

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
        log("元の文書と一致しません" if problems else "すべての表が元の文書と一致しました")
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
    from kb.ingest import TableMeta
    from kb.ingest import ingest as run_ingest

    meta = TableMeta(year=year, council=council, council_id=council_id, document=document)
    table, path = run_ingest(file, settings.corpus_dir, meta, replace=replace)
    log(f"{len(table.columns)}列を取り込みました → {path}")
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
    default="wide",
    show_default=True,
    help="wide: 団体が横に並ぶ表 / long: 1セル1行",
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
    settings: Settings, fmt: str | None, layout: str, output: Path | None, table_slug: str | None
) -> None:
    """コーパスを xlsx / csv / jsonl に書き出す。"""
    from kb import export as ex
    from kb.sheets import Sheet, write_csv, write_xlsx

    loaded = Corpus.load(settings.corpus_dir)
    fmt = fmt or (output.suffix.lstrip(".").lower() if output else "jsonl")
    if fmt == "jsonl":
        lines = "\n".join(ex.jsonl_lines(loaded)) + "\n"
        if output:
            output.write_text(lines, encoding="utf-8")
        else:
            click.echo(lines, nl=False)
        return
    if output is None:
        raise click.UsageError("xlsx と csv は -o で出力ファイルを指定してください")
    if fmt not in ("xlsx", "csv"):
        raise click.BadParameter(
            f"「{fmt}」には書き出せません（xlsx・csv・jsonl）", param_hint="--format"
        )
    if layout == "long":
        rows = ex.long_rows(_select(loaded, table_slug, allow_all=True))
        if fmt == "xlsx":
            write_xlsx(output, [Sheet(name="セル一覧", rows=rows)])
        else:
            write_csv(output, rows)
    else:
        (table,) = _select(loaded, table_slug, allow_all=False)
        if fmt == "xlsx":
            write_xlsx(output, ex.wide_sheets(table))
        else:
            write_csv(output, ex.wide_csv_rows(table))
    log(f"書き出しました → {output}")


def _select(loaded: Corpus, slug: str | None, allow_all: bool) -> list:
    if slug:
        chosen = [t for t in loaded.tables if t.slug == slug]
        if not chosen:
            raise click.BadParameter(
                f"「{slug}」という表はありません（あるもの: {', '.join(t.slug for t in loaded.tables)}）",
                param_hint="--table",
            )
        return chosen
    if allow_all or len(loaded.tables) == 1:
        return loaded.tables
    raise click.BadParameter(
        f"表が複数あります。--table で選んでください（{', '.join(t.slug for t in loaded.tables)}）",
        param_hint="--table",
    )
