"""kb: a searchable knowledge base over the progress tables of regional care-coordination
councils (小児等在宅医療連絡会議の取組み進捗状況).

The public API, imported on first use so that ``import kb`` stays light (no numpy, FAISS
or model until a name is used)::

    from kb import SearchService, Settings
    service = SearchService(Settings.from_env())
    for hit in service.search("看護師不足", k=5).hits:
        print(hit.as_dict())

``build(settings, embedder, analyzer)`` makes an index; errors a user can act on are
``KbError`` (``InputError``, ``FilterError``, ``CellNotFound``, ``IndexMissingError``,
``IndexMismatchError``), each one Japanese line.
"""

from __future__ import annotations

from importlib import import_module

_HOMES = {
    "SearchService": "kb.search.service",
    "SearchResult": "kb.search.hits",
    "Hit": "kb.search.hits",
    "Mode": "kb.search.fusion",
    "Filters": "kb.retrieval.store",
    "Settings": "kb.core.settings",
    "build": "kb.retrieval.index",
    "Corpus": "kb.corpus.tables",
    "build_agenda": "kb.apps.themes",
    "create_app": "kb.interfaces.web.app",
    "KbError": "kb.core.errors",
    "InputError": "kb.core.errors",
    "FilterError": "kb.core.errors",
    "CellNotFound": "kb.core.errors",
    "IndexMissingError": "kb.core.errors",
    "IndexMismatchError": "kb.core.errors",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module 'kb' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
