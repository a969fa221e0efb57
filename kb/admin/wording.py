"""What the admin pages, jobs and commands call things, in the words the secretariat uses:
actions in Japanese, tables by year and council, versions by their time in Japan, cells by
organisation and field, never by their ids."""

from __future__ import annotations

from kb.admin.audit import local_time, version_time

# The audit log's actions (History.write) as pages and ``kb history-log`` print them.
ACTIONS = {
    "upload": "アップロード",
    "edit": "セルの修正",
    "restore": "元に戻す",
    "remove": "表を消す",
}


def action_name(action: str) -> str:
    return ACTIONS.get(action, action)


def table_name(year: int, council: str) -> str:
    """2018, 厚木地域… → 「2018年度 厚木地域…の表」."""
    return f"{year}年度 {council}の表"


def version_name(version: str) -> str:
    """A version id → 「2026年11月30日 23:27 の版」 (its time in Japan)."""
    return f"{local_time(version_time(version))} の版"


def _year(entry: dict) -> int:
    return int(entry["table"][:4])  # a table's slug starts with its year (audit.SLUG)


def entry_table(entry: dict) -> str:
    """The table an audit entry changed, by year and council (entries written before the
    log recorded the council name it by its slug)."""
    if entry.get("council"):
        return table_name(_year(entry), entry["council"])
    return f"表 {entry['table']}"


def entry_title(entry: dict) -> str:
    """One line saying what an audit entry did: 「セルの修正：厚木市障がい福祉課① 課題
    （2018年度）」, 「元に戻す：2018年度 …の表（2026年11月30日 23:27 の版）」."""
    what = entry_table(entry)
    if entry["action"] == "edit" and entry.get("cells"):
        cell = entry["cells"][0]
        what = f"{cell['organisation']} {cell['field']}（{_year(entry)}年度）"
    elif entry["action"] == "restore" and entry.get("restored"):
        what = f"{what}（{version_name(entry['restored'])}）"
    return f"{action_name(entry['action'])}：{what}"
