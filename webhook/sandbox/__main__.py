"""Run the sandbox standalone: `python -m webhook.sandbox --port 0 [--latency 0.05]`.

Prints one JSON line `{"url", "org_url", "pat", "sp"}` on stdout, then serves until SIGTERM
or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType

from .server import Sandbox


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the sandbox, print its facts, wait for a signal."""
    parser = argparse.ArgumentParser(
        prog="python -m webhook.sandbox",
        description=(
            "Local Azure DevOps stand-in (organization 'contoso', projects AppSec, Platform, "
            "Custom and Strict). On start it prints one JSON line on stdout: "
            '{"url", "org_url", "pat", "sp": {"tenant_id", "client_id", "client_secret"}}, '
            "then serves until SIGTERM or Ctrl-C. Work item links "
            "({org_url}/{project}/_workitems/edit/{id}) open a page where a person can change "
            "the item's state."
        ),
        epilog=(
            "Point the service at it with: WEBHOOK_ALLOWED_ORG_HOSTS=<host:port of url> "
            "(loopback http is allowed only for hosts listed there), "
            "WEBHOOK_ENTRA_AUTHORITY=<url> (for service principals), and "
            "WEBHOOK_PUBLIC_URL=<the service's own base URL> (for service hooks); then add a "
            "connection with organization URL <org_url> and the printed PAT (or the sp values)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every REST call"
    )
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with Sandbox(latency=args.latency, host=args.host, port=args.port) as sb:
        sys.stdout.write(json.dumps(sb.describe()) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
