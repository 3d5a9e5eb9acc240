"""The fast lane.

The fast lane is `pytest -m "not slow"` (or `python3 dev.py test --fast`). Every test that
starts worker processes, kills services or drives a browser is marked `slow` here, from the
markers it already has, before `-m` selects: a new integration, fault or browser test joins the
slow lane without anyone remembering a second marker.

The soak lane: a test marked `soak` (the full chaos soak, minutes long) runs only when the `-m`
expression names it (`pytest -m soak`); every other run, CI's included, deselects it.
"""

from __future__ import annotations

import pytest

SLOW_MARKERS = ("integration", "fault", "browser")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
    if "soak" not in (config.option.markexpr or ""):
        soak = [item for item in items if item.get_closest_marker("soak")]
        if soak:
            config.hook.pytest_deselected(items=soak)
            items[:] = [item for item in items if not item.get_closest_marker("soak")]
