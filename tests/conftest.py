"""Shared fixtures. Each support module registers its own; see tests/support/."""

pytest_plugins = [
    "tests.support.log_capture",
    "tests.support.workers",
    "tests.support.emulator",
    "tests.support.people",
    "tests.support.sandbox",
    "tests.support.redis_server",
    "tests.support.tcp_proxy",
    "tests.support.worker_zygote",
]
