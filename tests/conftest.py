"""Shared fixtures. Each support module registers its own; see tests/support/."""

pytest_plugins = [
    "tests.support.workers",
]
