"""``python -m azure_emulator [--host H] [--port P] [--state-dir DIR] ...``

Every option also reads an environment variable (the flag wins): ``EMULATOR_HOST``,
``EMULATOR_PORT``, ``EMULATOR_STATE_DIR``, ``EMULATOR_PUBLIC_URL``, ``EMULATOR_CERT_HOSTS``
(comma-separated) and ``EMULATOR_ALLOW_REMOTE_CONTROL`` (1/true). Knobs come from
``EMULATOR_<KNOB>`` (see knobs.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from azure_emulator.knobs import KnobError
from azure_emulator.server import serve


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m azure_emulator",
        description="Azure (ARM + Entra ID) and sandbox AKS cluster emulator over HTTPS.",
    )
    parser.add_argument("--host", default=env.get("EMULATOR_HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(env.get("EMULATOR_PORT", "8443")), help="0 = any free port"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path(env.get("EMULATOR_STATE_DIR", "var/emulator"))
    )
    parser.add_argument(
        "--public-url",
        default=env.get("EMULATOR_PUBLIC_URL") or None,
        help="base URL to advertise (issuers, kubeconfigs) when clients reach us by another name",
    )
    parser.add_argument(
        "--cert-host",
        action="append",
        default=[h for h in env.get("EMULATOR_CERT_HOSTS", "").split(",") if h.strip()],
        help="extra host name or IP for the server certificate (repeatable)",
    )
    parser.add_argument(
        "--allow-remote-control",
        action="store_true",
        default=env.get("EMULATOR_ALLOW_REMOTE_CONTROL", "").lower() in {"1", "true", "yes"},
        help="let non-loopback clients use /_emulator/ (only inside a private network)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        serve(
            host=args.host,
            port=args.port,
            state_dir=args.state_dir,
            public_url=args.public_url,
            cert_hosts=[h.strip() for h in args.cert_host],
            allow_remote_control=args.allow_remote_control,
        )
    except KnobError as exc:
        sys.stderr.write(f"emulator: invalid knob from the environment: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
