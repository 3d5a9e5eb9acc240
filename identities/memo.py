"""A small per-process cache of values built from shared data, kept while that data is unchanged.

The shared truth stays where it is (the Django cache, or an object another cache hands out);
this keeps what a process built from it, so a hot path does not build it again. Each value is
kept with the token of the data it was built from (a stamp, or the very object), and is
returned only while the caller's token still matches. Least recently used entries go first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class BuiltCache(Generic[V]):
    """At most `size` values, each with its token; thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[Any, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, fresh: Callable[[Any], bool]) -> V | None:
        """The value kept for `key` if `fresh(its token)` holds; None otherwise."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not fresh(entry[0]):
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: Hashable, token: Any, value: V) -> V:
        """Keep `value`, built from the data `token` names; returns it."""
        with self._lock:
            self._entries[key] = (token, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value
