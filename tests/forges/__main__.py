"""Run a forge double on its own, for benchmarks and manual use.

    python -m tests.forges github --host 127.0.0.1 --port PORT --repos DIR [--token T]
    python -m tests.forges gitlab --host 127.0.0.1 --port PORT --repos DIR [--token T]
        [--archive-rate-limit 5 [--archive-limit-answer archive|throttle]]

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
from tests.forges.ratelimit import ArchiveLimit


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
    parser.add_argument(
        "--archive-rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="GitLab: answer 429 past N archive downloads a minute per user (gitlab.com: 5)",
    )
    parser.add_argument(
        "--archive-limit-answer",
        choices=["archive", "throttle"],
        default="archive",
        help="GitLab: the archive endpoint's JSON 429 body, or Rack::Attack's 'Retry later'",
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
        limit = (
            ArchiveLimit(args.archive_rate_limit, answer=args.archive_limit_answer)
            if args.archive_rate_limit
            else None
        )
        double = GitLabDouble(
            args.repos, token=args.token, host=args.host, port=args.port, archive_rate_limit=limit
        )
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
