"""The per-process cache of built values: kept while their source is unchanged, LRU-bounded."""

from __future__ import annotations

import threading

from identities.memo import BuiltCache


def test_a_value_is_returned_only_while_its_token_is_fresh() -> None:
    built: BuiltCache[list[int]] = BuiltCache(4)
    rows = ("source",)
    value = built.put("team-a", rows, [1, 2])

    equal_but_another = tuple(["source"])
    assert built.get("team-a", lambda kept: kept is rows) is value
    assert built.get("team-a", lambda kept: kept is equal_but_another) is None
    assert built.get("team-a", lambda kept: kept == "another stamp") is None
    assert built.get("team-b", lambda kept: True) is None


def test_the_least_recently_used_goes_first() -> None:
    built: BuiltCache[str] = BuiltCache(2)
    built.put("a", 1, "A")
    built.put("b", 1, "B")
    assert built.get("a", lambda kept: True) == "A"  # "a" is now the most recent

    built.put("c", 1, "C")

    assert built.get("b", lambda kept: True) is None
    assert built.get("a", lambda kept: True) == "A"
    assert built.get("c", lambda kept: True) == "C"


def test_threads_putting_at_once_never_exceed_the_size() -> None:
    built: BuiltCache[int] = BuiltCache(8)
    start = threading.Barrier(8)

    def put_many(n: int) -> None:
        start.wait(timeout=10)
        for i in range(200):
            built.put((n, i), i, i)

    threads = [threading.Thread(target=put_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    kept = [(n, i) for n in range(8) for i in range(200) if built.get((n, i), lambda _: True)]
    assert len(kept) == 8
