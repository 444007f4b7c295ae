"""What a runner run costs in forge requests (counted, never timed): every request counts
against the token's rate limit, and a fleet of runners multiplies it.

GitHub: one GraphQL query gives the branch's head, its protection, whether the token may
push, and a download link; the download is one request; the commit one mutation.
GitLab: the branch (head, protection, `can_push`), the archive, the commit. Knowing the
token's permission before the command runs costs GitLab its one extra request: no GitLab
answer carries both the archive and the permission."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.client.conftest import Runner, seed_project
from tests.conftest import ForgeEnv

BUDGET = {"github": (3, 2), "gitlab": (3, 2)}
"""(with a change, without) for a run in a fresh container."""


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_a_runner_run_costs_at_most_its_budget(env: ForgeEnv, tmp_path: Path, no_git: Path) -> None:
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    with_change, without = BUDGET[env.kind]
    env.clear_log()
    changed = run("run", "--", "sh", "-c", "echo '# runner' >> meltano.yml")
    assert changed.returncode == 0, changed.stderr
    assert "auto-committed meltano.yml" in changed.stdout
    assert env.requests() <= with_change, env.double.requests() if env.double else None
    env.clear_log()
    quiet = run("run", "--", "true")
    assert quiet.returncode == 0, quiet.stderr
    assert env.requests() <= without, env.double.requests() if env.double else None
    if env.kind == "github":
        assert env.requests("POST", r"^/api/graphql$") == 1, "the facts and the link: one query"
        assert env.requests("GET", r"^/_codeload/") == 1
        assert env.requests("GET", r"/tarball/") == 0, "no redirect hop: the link was given"
