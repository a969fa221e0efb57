"""``kb user``, ``kb token``, ``kb history-log`` and ``kb restore``.

:func:`register` adds them to the ``kb`` group, given the group's own settings decorator
and error wrapper (passed in so this module never imports :mod:`kb.cli`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click

from kb.admin.accounts import Accounts
from kb.admin.audit import History, local_time
from kb.admin.wording import action_name
from kb.core.errors import KbError
from kb.core.settings import Settings
from kb.corpus.tables import Corpus, no_such_table


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    # Asked twice by hand: click's own confirmation answers a mismatch in English.
    password = click.prompt("パスワード", hide_input=True, err=True)
    if click.prompt("もう一度", hide_input=True, err=True) != password:
        raise KbError("2回入力したパスワードが一致しません。もう一度登録し直してください")
    return password


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _history_lines(entry: dict) -> list[str]:
    action = action_name(entry["action"])
    head = f"{local_time(entry['at'])}  {entry['user']}  {action}  {entry['table']}"
    counts = f"追加 {entry['added']}・変更 {entry['changed']}・削除 {entry['removed']}"
    lines = [
        head,
        f"    {counts}  版 {entry['before_version'] or '（新規）'} → {entry['after_version'] or '（表を削除）'}",
    ]
    if entry.get("file"):
        lines.append(f"    ファイル {entry['file']}  sha256 {entry['sha256']}")
    return lines


def register(main: click.Group, pass_settings: Callable, fail_cleanly: Callable) -> None:
    """Add the secretariat's commands to ``main``."""

    @main.group()
    def user() -> None:
        """事務局の利用者（ブラウザから表を追加・修正できる人）を管理する。"""

    @user.command("add")
    @click.argument("name")
    @click.option("--password-stdin", is_flag=True, help="パスワードを標準入力の1行目から読む")
    @pass_settings
    @fail_cleanly
    def user_add(settings: Settings, name: str, password_stdin: bool) -> None:
        """利用者を登録する（パスワードは2回たずねる）。"""
        Accounts(settings.admin_dir).add(name, _password(password_stdin))
        click.echo(f"利用者「{name}」を登録しました", err=True)

    @user.command("list")
    @click.option("--json", "as_json", is_flag=True, help="JSON で出力する")
    @pass_settings
    @fail_cleanly
    def user_list(settings: Settings, as_json: bool) -> None:
        """利用者の一覧。"""
        users = Accounts(settings.admin_dir).users()
        if as_json:
            _echo_json(users)
            return
        if not users:
            click.echo("利用者はまだいません（kb user add 名前 で登録します）", err=True)
        for u in users:
            click.echo(f"{u['name']}\t登録 {local_time(u['created'])}\tトークン {u['tokens']}件")

    @user.command("remove")
    @click.argument("name")
    @pass_settings
    @fail_cleanly
    def user_remove(settings: Settings, name: str) -> None:
        """利用者を削除する（その人のトークンとログイン中の画面も使えなくなる）。"""
        tokens = Accounts(settings.admin_dir).remove(name)
        click.echo(f"利用者「{name}」を削除しました（トークン {tokens}件も無効）", err=True)

    @main.group()
    def token() -> None:
        """スクリプトから API を使うためのトークンを管理する。"""

    @token.command("create")
    @click.argument("name")
    @pass_settings
    @fail_cleanly
    def token_create(settings: Settings, name: str) -> None:
        """利用者 NAME のトークンを作って表示する（表示はこの1回だけ）。"""
        click.echo(Accounts(settings.admin_dir).create_token(name))
        click.echo("トークンを作りました。Authorization: Bearer <トークン> で使います", err=True)

    @token.command("list")
    @pass_settings
    @fail_cleanly
    def token_list(settings: Settings) -> None:
        """トークンの一覧（ID と利用者。トークンそのものは保存していません）。"""
        for t in Accounts(settings.admin_dir).tokens():
            click.echo(f"{t['id']}\t{t['user']}\t作成 {local_time(t['created'])}")

    @token.command("revoke")
    @click.argument("token_or_id")
    @pass_settings
    @fail_cleanly
    def token_revoke(settings: Settings, token_or_id: str) -> None:
        """トークン（またはその ID）を無効にする。すぐに使えなくなる。"""
        token_id = Accounts(settings.admin_dir).revoke(token_or_id)
        click.echo(f"トークン {token_id} を無効にしました", err=True)

    @main.command("history-log")
    @click.option("--table", "slug", help="この表の変更だけ（例: 2018-atsugi）")
    @click.option("-n", "limit", type=click.IntRange(min=1), help="新しいものから N 件")
    @click.option(
        "--json", "as_json", is_flag=True, help="セルごとの変更前・変更後も JSON で出力する"
    )
    @pass_settings
    @fail_cleanly
    def history_log(settings: Settings, slug: str | None, limit: int | None, as_json: bool) -> None:
        """表の変更の記録（誰が・いつ・どの表の・どのセルを）を新しい順に表示する。"""
        entries = History(settings.admin_dir, settings.corpus_dir).entries()
        if slug is not None:
            # A table removed since still has its entries; one never known is a mistake.
            known = {t.slug for t in Corpus.load(settings.corpus_dir).tables}
            known |= {e["table"] for e in entries}
            if slug not in known:
                raise no_such_table(slug, sorted(known))
        entries = [e for e in entries if slug in (None, e["table"])][:limit]
        if as_json:
            _echo_json(entries)
            return
        if not entries:
            click.echo("変更の記録はありません", err=True)
        for entry in entries:
            click.echo("\n".join(_history_lines(entry)))

    @main.command()
    @click.argument("table")
    @click.argument("version", required=False)
    @click.option("--list", "listing", is_flag=True, help="残っている版の一覧を表示する")
    @click.option("--user", "who", default="kb restore", show_default=True, help="記録に残す名前")
    @pass_settings
    @fail_cleanly
    def restore(
        settings: Settings, table: str, version: str | None, listing: bool, who: str
    ) -> None:
        """表 TABLE を以前の版 VERSION に戻し、索引を作り直す。版は --list で確かめる。"""
        history = History(settings.admin_dir, settings.corpus_dir)
        if listing or not version:
            versions = history.versions(table)
            if not versions:
                raise KbError(f"表 {table} の版は残っていません")
            for v in versions:
                click.echo(f"{v['version']}\t{v['saved_at']}")
            return
        entry = history.restore(table, version, who)
        click.echo(
            f"{table} を版 {version} に戻しました（変更 {entry['changed']}・追加 {entry['added']}"
            f"・削除 {entry['removed']}）。索引を作り直します…",
            err=True,
        )
        from kb.admin.jobs import build_lock  # loads the index code: only when rebuilding

        with build_lock(settings):  # after any build the server is running
            click.get_current_context().invoke(main.commands["build"])  # `kb build`, as it is
