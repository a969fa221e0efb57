"""click's usage errors and help said in Japanese; an error on one line, with exit code 1.

click reports a wrong option or argument with its English usage block and exit code 2; kb's
command line promises one Japanese line and exit code 1 for every error. :class:`KbGroup`
is the ``kb`` group: its commands and sub-groups are :class:`KbCommand` and KbGroup, whose
parsing turns each click usage error into a Japanese sentence built from the parameter
(its option name, its choices or range, the value given), and whose ``main`` prints that
sentence and exits 1. ``--help`` still prints help and exits 0, with click's own words in
it (Usage, Options, Commands, default, the help option's line) in Japanese too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

# What an argument is, in words: its metavar (QUERY, CELL_ID) means nothing to most users.
ARGUMENT_NAMES = {
    "query": "検索語",
    "file": "ファイル",
    "cell_id": "セルの ID",
    "queries": "質問ファイル",
    "name": "利用者名",
    "token_or_id": "トークンかその ID",
    "table": "表",
    "version": "版",
}


class UsageProblem(click.UsageError):
    """A usage error already said in Japanese."""


def fail(message: str) -> NoReturn:
    """Print ``message`` as kb's one error line on stderr and exit 1."""
    click.echo(f"エラー: {message}", err=True)
    sys.exit(1)


# click's headings, as its help formatter is handed them.
_SECTIONS = {"Options": "オプション", "Commands": "コマンド", "Arguments": "引数"}
# click's notes after an option's help text: [default: 10], [required].
_NOTES = (("[default: ", "[既定: "), ("[required]", "[必須]"), ("; required]", "; 必須]"))
HELP_OPTION_TEXT = "この説明を表示して終わる"


class _JapaneseHelpFormatter(click.HelpFormatter):
    """click's help layout with its own words in Japanese."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "使い方: " if prefix is None else prefix)

    def section(self, name: str) -> Any:
        return super().section(_SECTIONS.get(name, name))

    def write_dl(self, rows: Sequence[tuple[str, str]], *args: Any, **kwargs: Any) -> None:
        super().write_dl([(term, _noted(text)) for term, text in rows], *args, **kwargs)


def _noted(text: str) -> str:
    for english, japanese_words in _NOTES:
        text = text.replace(english, japanese_words)
    return text


class _KbContext(click.Context):
    formatter_class = _JapaneseHelpFormatter


class _SaysUsageErrorsInJapanese:
    """Parsing that re-raises click's usage errors as :class:`UsageProblem`, and help in
    Japanese (:class:`_JapaneseHelpFormatter`, the help option's own line)."""

    context_class = _KbContext

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.help = HELP_OPTION_TEXT
        return option

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        given = list(args)
        try:
            return super().parse_args(ctx, args)  # type: ignore[misc]
        except (UsageProblem, click.exceptions.NoArgsIsHelpError):
            raise
        except click.UsageError as exc:
            raise UsageProblem(japanese(exc, given, ctx), ctx) from None


class KbCommand(_SaysUsageErrorsInJapanese, click.Command):
    """A kb subcommand."""


class KbGroup(_SaysUsageErrorsInJapanese, click.Group):
    """The ``kb`` group and its sub-groups (``kb user``, ``kb token``)."""

    command_class = KbCommand
    group_class = type  # sub-groups are KbGroups too

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            raise UsageProblem(japanese(exc, args, ctx), ctx) from None

    def main(self, *args: Any, standalone_mode: bool = True, **extra: Any) -> Any:
        """Run kb; a usage error or an abort is one Japanese line and exit code 1."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **extra)
        try:
            code = super().main(*args, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:  # `kb`, `kb user`: show the help
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except click.UsageError as exc:
            fail(exc.message if isinstance(exc, UsageProblem) else japanese(exc, []))
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("中止しました")
        # `--help` returns its exit code; a command returns None when it succeeds.
        sys.exit(code if isinstance(code, int) else 0)


# --- the sentences --------------------------------------------------------------------------


def japanese(exc: click.UsageError, given: Sequence[str], ctx: click.Context | None = None) -> str:
    """One Japanese sentence for a click usage error raised while ``ctx`` (default: the
    error's own, which click's parser leaves unset) parsed ``given``, the words of the
    command line quoted back when a value is refused."""
    ctx = ctx or exc.ctx
    command = ctx.command_path if ctx else "kb"
    if isinstance(exc, click.exceptions.NoSuchCommand):
        names = sorted(ctx.command.list_commands(ctx)) if ctx else []  # type: ignore[attr-defined]
        return f"{command} に「{exc.command_name}」というコマンドはありません（あるもの: {'・'.join(names)}）"
    if isinstance(exc, click.exceptions.NoSuchOption):
        return f"{command} に {exc.option_name} というオプションはありません（使えるもの: {_options(ctx)}）"
    if isinstance(exc, click.MissingParameter) and exc.param is not None:
        name = _name(exc.param)
        space = " " if isinstance(exc.param, click.Option) else ""
        return f"{name}{space}を指定してください（使い方は {command} --help で確かめられます）"
    if isinstance(exc, click.BadParameter) and exc.param is not None and ctx is not None:
        return _bad_value(exc.param, ctx, _refused(exc.param, ctx, given))
    if isinstance(exc, click.BadOptionUsage):
        param = _option(ctx, exc.option_name)
        if param is not None and param.is_flag:
            return f"{exc.option_name} には値を付けません（{exc.option_name} だけで指定します）"
        allowed = _allowed(param) if param is not None else ""
        hint = f"（{allowed}）" if allowed else ""
        return f"{exc.option_name} の後に値を指定してください{hint}"
    extra = _reparsed(ctx, given)[1] if type(exc) is click.UsageError else []
    if extra:
        return (
            f"余分な引数があります（{' '.join(extra)}）。"
            '空白を含む検索語などは "…" で囲んでください'
        )
    return f"{command} の指定が正しくありません（使い方は {command} --help で確かめられます）"


def _name(param: click.Parameter) -> str:
    """An option by its longest spelling (--mode), an argument in words (検索語（QUERY）)."""
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    words = ARGUMENT_NAMES.get(param.name or "")
    metavar = param.human_readable_name
    return f"{words}（{metavar}）" if words else metavar


def _bad_value(param: click.Parameter, ctx: click.Context, value: str | None) -> str:
    """``--mode は hybrid・dense・lexical のどれかにしてください（foo）``."""
    name, kind = _name(param), param.type
    quoted = f"（{value}）" if value is not None else ""
    if isinstance(kind, click.Path) and value is not None:
        if kind.exists and not os.path.exists(value):
            return f"{name}「{value}」が見つかりません"
        if not kind.dir_okay and os.path.isdir(value):
            return f"{name}「{value}」はフォルダです。ファイルを指定してください"
        return f"{name}「{value}」は使えません"
    allowed = _allowed(param)
    if allowed:
        space = " " if allowed[0].isascii() else ""  # 「--n は 1 以上」, 「-k は半角数字」
        return f"{name} は{space}{allowed}にしてください{quoted}"
    return f"{name} の値が正しくありません{quoted}"


def _allowed(param: click.Parameter) -> str:
    """What a parameter takes, as the end of 「…にしてください」; "" when anything goes."""
    kind = param.type
    if isinstance(kind, click.Choice):
        return f"{'・'.join(map(str, kind.choices))} のどれか"
    if isinstance(kind, click.IntRange):
        low = None if kind.min is None else kind.min + (1 if kind.min_open else 0)
        high = None if kind.max is None else kind.max - (1 if kind.max_open else 0)
        if low is not None and high is not None:
            return f"{low}〜{high} の整数"
        return f"{low} 以上の整数" if low is not None else f"{high} 以下の整数"
    if isinstance(kind, click.types.IntParamType):
        return "半角数字の整数"
    if isinstance(kind, click.types.FloatParamType):
        return "半角数字の数値"
    return ""


def _refused(param: click.Parameter, ctx: click.Context, given: Sequence[str]) -> str | None:
    """The value given for ``param`` that its type refuses, read again from ``given``
    (click's error keeps only an English sentence about it)."""
    value = _reparsed(ctx, given)[0].get(param.name)
    values = value if isinstance(value, list | tuple) else [value]
    for one in values:
        if not isinstance(one, str):
            continue
        try:
            param.type.convert(one, param, ctx)
        except click.BadParameter:
            return one
    return None


def _reparsed(ctx: click.Context | None, given: Sequence[str]) -> tuple[dict, list[str]]:
    """``given`` parsed again by ``ctx``'s command, without converting any value: the raw
    value of each parameter by name, and the words no parameter took."""
    if ctx is None or not given:
        return {}, []
    try:
        opts, rest, _ = ctx.command.make_parser(ctx).parse_args(args=list(given))
    except click.UsageError:
        return {}, []
    return opts, [str(word) for word in rest]


def _option(ctx: click.Context | None, spelling: str) -> click.Option | None:
    params = ctx.command.params if ctx else []
    return next((p for p in params if isinstance(p, click.Option) and spelling in p.opts), None)


def _options(ctx: click.Context | None) -> str:
    """The command's options, e.g. ``-k・--mode・--json・--help``."""
    if ctx is None:
        return ""
    spellings = [
        max(p.opts, key=len) for p in ctx.command.get_params(ctx) if isinstance(p, click.Option)
    ]
    return "・".join(spellings)
