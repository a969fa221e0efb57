"""The one check of what users type into a search: query, k, filters (and the page forms'
text fields). The CLI, the JSON API and the pages all come through here, so each limit and
each Japanese message exists once; a bad value raises :class:`FilterError` naming its
parameter (the API turns that into a 422, the pages into a message, the CLI into exit 1).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from kb.core.errors import FilterError
from kb.core.fields import FIELDS
from kb.core.text import agency_of, normalise_organisation
from kb.retrieval.store import Filters
from kb.search.fusion import Mode

MAX_K = 100
MAX_QUERY_CHARS = 500
# What a field filter may name: the code (challenge) or the label the pages show (課題).
_FIELD_NAMES = {name: f for f in FIELDS for name in (f.value, f.ja)}


def check_k(k: int) -> int:
    """``k`` (how many results) if it is within 1…MAX_K."""
    if not 1 <= k <= MAX_K:
        raise FilterError(f"表示件数 k は 1〜{MAX_K} にしてください（{k}）", param="k")
    return k


def check_query(query: str) -> str:
    """``query`` if it is at most MAX_QUERY_CHARS long (blank is fine: browsing)."""
    if len(query) > MAX_QUERY_CHARS:
        raise FilterError(
            f"検索語が長すぎます（{len(query)}文字、{MAX_QUERY_CHARS}文字まで）", param="q"
        )
    return query


def parse_k(raw: str, default: int) -> int:
    """A form's ``k`` field: blank means ``default``."""
    if not raw.strip():
        return default
    if not raw.strip().isdigit():
        raise FilterError(f"表示件数 k は 1〜{MAX_K} にしてください（{raw}）", param="k")
    return check_k(int(raw))


def parse_mode(raw: str) -> Mode:
    """A ``mode`` value: blank means hybrid."""
    try:
        return Mode(raw or Mode.hybrid)
    except ValueError:
        choices = "・".join(m.value for m in Mode)
        raise FilterError(
            f"検索の方法 mode は {choices} のどれかにしてください（{raw}）", param="mode"
        ) from None


# The spellings of yes and no a query string may use (those FastAPI accepts).
_FLAGS = {
    **dict.fromkeys(("true", "1", "on", "yes"), True),
    **dict.fromkeys(("false", "0", "off", "no", ""), False),
}


def parse_flag(raw: str, param: str) -> bool:
    """A yes/no parameter such as ``fold``: true/false, 1/0, on/off, yes/no; blank is no."""
    flag = _FLAGS.get(raw.strip().lower())
    if flag is None:
        raise FilterError(f"{param} は true か false にしてください（{raw}）", param=param)
    return flag


def parse_years(raw: Iterable[str]) -> list[int]:
    """A form's ``year`` values as numbers (whether the index has them is checked by
    :func:`parse_filters`)."""
    raw = list(raw)
    if not all(y.strip().isdigit() for y in raw):
        raise FilterError(f"年度は数字で指定してください（{'、'.join(raw)}）", param="year")
    return [int(y) for y in raw]


def parse_year(raw: str) -> int | None:
    """A single ``year`` parameter (/table, /themes, /api/themes): blank means none."""
    years = parse_years([raw] if raw.strip() else [])
    return years[0] if years else None


def parse_count(raw: str) -> int | None:
    """A form's ``n`` (number of themes); blank means "let the data decide"."""
    if not raw.strip():
        return None
    if not raw.strip().isdigit():
        raise FilterError(f"テーマの数は数字で指定してください（{raw}）", param="n")
    return int(raw)


def canonical_organisation(aliases: dict[str, str], name: str) -> str:
    """``name`` in the index's spelling: normalised, and an alias turned into the agency it
    names (座間養護学校 → 神奈川県立座間養護学校, both of its sheets ① and ②)."""
    wanted = normalise_organisation(name)
    if wanted in aliases and aliases[wanted] != wanted:
        return agency_of(aliases[wanted])
    return wanted


def resolve_organisations(
    values: dict[str, list], aliases: dict[str, str], names: Iterable[str]
) -> tuple[str, ...]:
    """Turn what a user typed (a name, an alias, part of a name) into organisation or agency
    names among the index's ``values``; an unknown name raises listing the known ones."""
    known = [*values["organisation"], *values["agency"]]
    resolved: list[str] = []
    for name in names:
        wanted = canonical_organisation(aliases, name)
        matches = [k for k in known if k == wanted] or [
            k for k in values["organisation"] if wanted in k
        ]
        if not matches:
            raise FilterError(
                f"団体「{name}」は見つかりません。登録されている団体: {'、'.join(values['organisation'])}",
                param="org",
            )
        resolved += matches
    return tuple(dict.fromkeys(resolved))


def canonical_filter_params(
    values: dict[str, list], aliases: dict[str, str], params: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """A page's query ``params`` with its field and organisation filters in the index's own
    spelling, the names its facets and their links use: a field's label (課題) as its name
    (challenge), an alias or part of a name as the organisation, an agency as each of its
    sheets (厚木市障がい福祉課 → ① and ②). Values kb does not know are left as they are
    (:func:`parse_filters` names them)."""
    sheets = values["organisation"]
    canonical: list[tuple[str, str]] = []
    for name, value in params:
        if name == "field" and (field := _FIELD_NAMES.get(_folded(value))) is not None:
            canonical.append((name, field.value))
        elif name == "org":
            try:
                found = resolve_organisations(values, aliases, [value])
            except FilterError:
                found = (value,)
            for org in found:
                own = [s for s in sheets if agency_of(s) == org] if org not in sheets else []
                canonical += [(name, s) for s in own or [org]]
        else:
            canonical.append((name, value))
    return list(dict.fromkeys(canonical))


def _folded(name: str) -> str:
    return unicodedata.normalize("NFKC", name).strip().lower()


def parse_filters(
    values: dict[str, list],
    aliases: dict[str, str] | None = None,
    *,
    fields: Iterable[str] = (),
    organisations: Iterable[str] = (),
    categories: Iterable[str] = (),
    years: Iterable[int] = (),
) -> Filters:
    """Filters from user input, checked against the index's ``values`` (and organisation
    ``aliases``); an unknown value raises naming it and what there is instead."""
    categories, years = list(categories), list(years)
    parsed_fields = []
    for f in fields:
        # The pages' labels (課題, 来年度) as well as the names the URLs use (challenge).
        field = _FIELD_NAMES.get(_folded(f))
        if field is None:
            raise FilterError(
                f"欄「{f}」はありません（{'・'.join(x.ja for x in FIELDS)}、"
                f"または {', '.join(x.value for x in FIELDS)}）",
                param="field",
            )
        parsed_fields.append(field)
    for c in categories:
        if c not in values["categories"]:
            raise FilterError(
                f"課題区分「{c}」はありません（{'、'.join(values['categories'])}）",
                param="category",
            )
    for y in years:
        if y not in values["year"]:
            raise FilterError(
                f"{y}年度の表はありません（表がある年度: {'・'.join(f'{v}年度' for v in values['year'])}）",
                param="year",
            )
    return Filters(
        fields=tuple(parsed_fields),
        organisations=resolve_organisations(values, aliases or {}, organisations),
        categories=tuple(categories),
        years=tuple(years),
    )
