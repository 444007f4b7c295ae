"""Listings longer than a page are followed to the end (Link / x-next-page headers)."""

from __future__ import annotations

import pytest
from dulwich.repo import Repo

from tests.conftest import ForgeEnv
from tests.forges import gitdata


@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_branches_are_paginated(env: ForgeEnv) -> None:
    base = env.seed({"meltano.yml": b"v: 1\n"})
    repo = Repo(str(env.repo_dir))
    try:
        for i in range(230):
            gitdata.set_head(repo, f"feature-{i:03d}", None, base)
    finally:
        repo.close()
    env.clear_log()
    names = [b.name for b in env.forge.branches()]
    assert len(names) == 231
    assert env.requests("GET", r"/branches$") == 3, "100 a page, three pages"
