"""A small thread-safe memo of recent answers, kept by whatever the answers depend on.

A loaded index build owns one: answers depend only on the build (and the synonyms, which
clear it), so a new build starts with an empty memo and nothing stale can be served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

KEPT = 2048


class Memo:
    """Least-recently-used answers by key; :meth:`clear` also drops answers still being
    computed, so one computed from what was cleared is never stored."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._answers: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self.generation = 0  # bumped by clear(); see remember()

    def remembered(self, key: tuple, compute: Callable[[], T]) -> T:
        """``compute()``, or its answer from an earlier call with the same ``key``."""
        found = self.recall(key)
        if found is None:
            generation = self.generation
            found = compute()
            self.remember(key, found, generation)
        return found

    def recall(self, key: tuple) -> object | None:
        """What :meth:`remember` kept for ``key``, or None."""
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        return None

    def remember(self, key: tuple, value: object, generation: int) -> None:
        """Keep ``value`` unless the memo was cleared since ``generation`` was read."""
        with self._lock:
            if generation != self.generation:
                return
            self._answers[key] = value
            if len(self._answers) > self._kept:
                self._answers.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._answers.clear()
            self.generation += 1
