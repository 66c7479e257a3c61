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
        prog="python -m webhook.sandbox", description="Local Azure DevOps stand-in."
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
