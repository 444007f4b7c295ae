"""Run a forge double on its own, for benchmarks and manual use.

    python -m tests.forges github --host 127.0.0.1 --port PORT --repos DIR [--token T]
    python -m tests.forges gitlab --host 127.0.0.1 --port PORT --repos DIR [--token T]

Every bare repository at DIR/OWNER/NAME.git (GitLab: DIR/GROUP/SUB/NAME.git) is served.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.forges.github import GitHubDouble
from tests.forges.gitlab import GitLabDouble


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.forges", description=__doc__.split("\n")[0]
    )
    parser.add_argument("forge", choices=["github", "gitlab"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repos", type=Path, required=True)
    parser.add_argument("--token", default=None, help="accept only this token (default: any)")
    parser.add_argument(
        "--no-validate", action="store_true", help="GitHub: skip contract validation (faster)"
    )
    args = parser.parse_args(argv)
    if args.forge == "github":
        double: GitHubDouble | GitLabDouble = GitHubDouble(
            args.repos,
            token=args.token,
            host=args.host,
            port=args.port,
            validate=not args.no_validate,
        )
        api = f"{double.url}/api/v3 (GraphQL {double.url}/api/graphql)"
    else:
        double = GitLabDouble(args.repos, token=args.token, host=args.host, port=args.port)
        api = f"{double.url}/api/v4"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    double.start()
    print(f"{args.forge} double serving {args.repos} at {double.url}; API {api}", flush=True)
    stop.wait()
    double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
