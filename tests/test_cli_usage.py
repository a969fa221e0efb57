"""Usage mistakes on the command line: one Japanese line on stderr and exit code 1, for every
subcommand (README "Command line"), instead of click's English usage block and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kb.admin.accounts import Accounts
from kb.interfaces.cli import main


def commands(group: click.Group = main, path: tuple[str, ...] = ()) -> Iterator[tuple]:
    """(words after ``kb``, command) for every command under ``group``, sub-groups too."""
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


LEAVES = [(words, c) for words, c in commands() if not isinstance(c, click.Group)]


def kb(*args: object, home: Path, stdin: str | None = None) -> click.testing.Result:
    env = {"KB_HOME": str(home), "KB_CORPUS": str(home / "corpus")}
    return CliRunner().invoke(main, list(map(str, args)), env=env, input=stdin)


def one_error_line(result: click.testing.Result) -> str:
    """The error line of a failed run, after checking it is the only output."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert result.stdout == ""
    assert "Usage:" not in result.stderr and "Error:" not in result.stderr, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("エラー: "), line
    return line.removeprefix("エラー: ")


def test_every_command_of_kb_help_is_walked() -> None:
    top = main.commands.keys()
    assert {"search", "ingest", "export", "themes", "user", "token", "restore"} <= top
    assert {"user add", "token revoke"} <= {" ".join(w) for w, _ in LEAVES}


@pytest.mark.parametrize(("words", "command"), LEAVES, ids=[" ".join(w) for w, _ in LEAVES])
def test_help_still_works_and_mistakes_are_one_japanese_line(
    tmp_path: Path, words: tuple[str, ...], command: click.Command
) -> None:
    shown = kb(*words, "--help", home=tmp_path)
    assert shown.exit_code == 0 and shown.stdout.startswith(f"使い方: kb {' '.join(words)}")
    # click's own words are Japanese too: headings, the help option's line, its notes.
    assert "オプション:" in shown.stdout and "この説明を表示して終わる" in shown.stdout
    for english in ("Usage:", "Options:", "Show this message", "[default:", "[required]"):
        assert english not in shown.stdout, english

    line = one_error_line(kb(*words, "--no-such-option", home=tmp_path))
    assert line.startswith(f"kb {' '.join(words)} に --no-such-option というオプションはありません")
    options = [max(p.opts, key=len) for p in command.params if isinstance(p, click.Option)]
    assert line.endswith(f"（使えるもの: {'・'.join([*options, '--help'])}）")

    required = [p for p in command.params if isinstance(p, click.Argument) and p.required]
    if required:
        line = one_error_line(kb(*words, home=tmp_path))
        assert f"（{required[0].human_readable_name}）を指定してください" in line


def typed_options() -> list[tuple]:
    """(command words, option) for every option whose value click checks by type."""
    return [
        (words, p)
        for words, c in LEAVES
        for p in c.params
        if isinstance(p, click.Option)
        and not p.is_flag
        and isinstance(p.type, click.Choice | click.types.IntParamType)
    ]


@pytest.mark.parametrize(
    ("words", "option"),
    typed_options(),
    ids=[f"{' '.join(w)} {max(o.opts, key=len)}" for w, o in typed_options()],
)
def test_a_wrong_value_names_the_option_what_it_takes_and_the_value(
    tmp_path: Path, words: tuple[str, ...], option: click.Option
) -> None:
    name = max(option.opts, key=len)
    line = one_error_line(kb(*words, name, "zz", home=tmp_path))
    assert line.startswith(f"{name} は") and line.endswith("にしてください（zz）"), line
    if isinstance(option.type, click.Choice):
        assert f"{'・'.join(option.type.choices)} のどれか" in line
    missing = one_error_line(kb(*words, name, home=tmp_path))
    assert missing.startswith(f"{name} の後に値を指定してください"), missing


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("search", "看護師", "--mode", "foo"),
            "--mode は hybrid・dense・lexical のどれかにしてください（foo）",
        ),
        (("themes", "--format", "xml"), "--format は md・csv・json のどれかにしてください（xml）"),
        (("themes", "--n", "0"), "--n は 1 以上の整数にしてください（0）"),
        (("search", "看護師", "-k", "十"), "-k は半角数字の整数にしてください（十）"),
        (
            ("search", "看護師", "--year", "2017", "--year", "去年"),
            "--year は半角数字の整数にしてください（去年）",
        ),
        (("ingest", "sheet.csv", "--year", "abc"), "--year は半角数字の整数にしてください（abc）"),
        (
            ("search",),
            "検索語（QUERY）を指定してください（使い方は kb search --help で確かめられます）",
        ),
        (("search", "看護師", "-k"), "-k の後に値を指定してください（半角数字の整数）"),
        (
            ("search", "看護師", "--mode"),
            "--mode の後に値を指定してください（hybrid・dense・lexical のどれか）",
        ),
        (("search", "看護師", "--json=1"), "--json には値を付けません（--json だけで指定します）"),
        (
            ("search", "看護", "師"),
            '余分な引数があります（師）。空白を含む検索語などは "…" で囲んでください',
        ),
        (("eval", "nothere.yaml"), "質問ファイル（QUERIES）「nothere.yaml」が見つかりません"),
        (
            ("serach", "看護師"),
            "kb に「serach」というコマンドはありません（あるもの: build・calibrate・corpus・eval・export・history・history-log・ingest・related・restore・search・serve・themes・token・user）",
        ),
        (
            ("user", "delete", "sato"),
            "kb user に「delete」というコマンドはありません（あるもの: add・list・remove）",
        ),
    ],
)
def test_usage_mistakes_in_japanese(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    assert one_error_line(kb(*args, home=tmp_path)) == message


def test_kb_alone_shows_its_help(tmp_path: Path) -> None:
    for words in ((), ("user",)):
        result = kb(*words, home=tmp_path)
        assert result.exit_code == 0 and result.stdout.startswith("使い方: kb")
        assert "コマンド:" in result.stdout and "Commands:" not in result.stdout


def test_a_real_process_exits_1_with_one_line(run_kb, empty_corpus: Path) -> None:
    """The same through ``python -m kb``, the way a shell script sees it."""
    result = run_kb("search", "看護師", "--mode", "foo", corpus=empty_corpus)
    assert (result.returncode, result.stdout) == (1, "")
    assert (
        result.stderr == "エラー: --mode は hybrid・dense・lexical のどれかにしてください（foo）\n"
    )
    helped = run_kb("search", "--help", corpus=empty_corpus)
    assert helped.returncode == 0 and helped.stdout.startswith("使い方: kb search")


def test_user_add_with_two_different_passwords_is_refused_in_japanese(tmp_path: Path) -> None:
    result = kb("user", "add", "sato", home=tmp_path, stdin="sato-password-1\nsato-password-2\n")
    assert result.exit_code == 1
    assert "Error" not in result.output and "Aborted" not in result.output
    assert result.stderr.splitlines()[-1] == (
        "エラー: 2回入力したパスワードが一致しません。もう一度登録し直してください"
    )
    assert not Accounts(tmp_path / "admin").exists("sato")
    ended = kb("user", "add", "sato", home=tmp_path, stdin="sato-password-1\n")
    assert ended.exit_code == 1 and ended.stderr.splitlines()[-1] == "エラー: 中止しました"
    added = kb("user", "add", "sato", home=tmp_path, stdin="sato-password-1\nsato-password-1\n")
    assert added.exit_code == 0, added.output
    listed = kb("user", "list", "--json", home=tmp_path)
    assert [u["name"] for u in json.loads(listed.stdout)] == ["sato"]
