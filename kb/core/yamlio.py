"""YAML in and out: the safe loader, one-line Japanese errors, block-style dumping, atomic writes.

Every YAML file kb reads (tables, organisations, synonyms, glossary) goes through here, so a
parse error always names the file and row the same way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from kb.core.errors import InputError

# libyaml's loader is several times faster on large tables; same safe subset of YAML.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line cell text as literal blocks, so a file reads like the table."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(data: object) -> str:
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=1000)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: Path) -> object:
    return parse_yaml(path.read_text(encoding="utf-8"), path)


def parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _unreadable(exc, path) from exc


def has_aliases(text: str, path: Path) -> bool:
    """Whether ``text`` uses anchors or aliases (& and *), read as events so nothing is
    expanded; a syntax error is an InputError naming ``path`` and its row."""
    try:
        return any(
            isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)
            for event in yaml.parse(text, Loader=_Loader)
        )
    except yaml.YAMLError as exc:
        raise _unreadable(exc, path) from exc


def compose_yaml(path: Path) -> yaml.Node | None:
    """The node tree of ``path`` (None for an empty file). Nodes keep their line
    (``node.start_mark.line``, from 0), so a checker can name the line of a bad entry."""
    try:
        return yaml.compose(path.read_text(encoding="utf-8"), Loader=_Loader)
    except yaml.YAMLError as exc:
        raise _unreadable(exc, path) from exc


def _unreadable(exc: yaml.YAMLError, path: Path) -> InputError:
    mark = getattr(exc, "problem_mark", None)
    row = mark.line + 1 if mark else None
    # str(exc) spans several lines with source excerpts; errors are reported on one line.
    detail = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InputError(f"YAML として読めません（{detail}）", file=str(path), row=row)


class NodeReader:
    """Base of the readers that turn one YAML file's node tree into kb's objects (the
    vocabulary, the evaluation queries): each failure is an InputError naming the file and
    the line of the node at fault."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, message: str) -> InputError:
        row = node.start_mark.line + 1 if node is not None else None
        return InputError(message, file=str(self.path), row=row)

    def mapping(self, node: yaml.MappingNode, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        """``node``'s keys and values; a key outside ``allowed`` fails, naming what is."""
        found: dict[str, yaml.Node] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.value not in allowed:
                name = key.value if isinstance(key, yaml.ScalarNode) else "（リストや表）"
                raise self.fail(
                    key, f"「{name}」は使えない見出しです（使えるのは {'・'.join(allowed)}）"
                )
            found[key.value] = value
        return found
