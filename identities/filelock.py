"""An exclusive lock on a named file in a folder, held across the processes of one machine: how
the users of the file-based cache (the API's throttle, the long-poll caps) make a read-modify-
write of their entries atomic, as their Lua scripts do on Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.files import locks


@contextmanager
def folder_lock(folder: str, name: str) -> Iterator[None]:
    os.makedirs(folder, mode=0o700, exist_ok=True)
    with open(os.path.join(folder, name), "ab") as handle:
        locks.lock(handle, locks.LOCK_EX)
        try:
            yield
        finally:
            locks.unlock(handle)
