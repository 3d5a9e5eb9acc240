"""The security suite (issue 8): authorization matrices of the API and the web UI, CSRF,
separation of duties, hashed tokens, secrets kept out of logs, fuzzing, production settings and
login throttling. Run it with `pytest tests/security` (every test here is marked `security`).

The fixtures come from the API and UI suites, imported rather than copied, so each is defined
once; throttle counters (API and login) are cleared around every test.
"""

from tests.api.conftest import (  # noqa: F401 - fixtures
    catalog,
    file_request,
    fresh_throttles,
    make_token,
    role_groups,
)
from tests.ui.conftest import (  # noqa: F401 - fixtures
    client_for,
    failed_request,
    pending_request,
    ready_request,
)
