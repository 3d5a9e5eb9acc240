"""Time-bound access defaults for the suite, loaded with `-p` (pyproject's addopts) so it runs
before Django reads its settings, and inherited by every process a test starts.

The product default makes privileged roles time-bound (ACCESS_MAX_DAYS_PRIVILEGED=30: an end
date is required). Most tests ask for privileged roles to exercise four eyes, not expiry, so the
suite turns the maximum off unless the environment sets it; the time-bound tests set the
maximums they judge with `settings` (tests/identities/test_access_expiry.py).
"""

from __future__ import annotations

import os

os.environ.setdefault("ACCESS_MAX_DAYS_PRIVILEGED", "0")
