"""Fixtures shared by every test package: forge doubles, bare repositories, read-only git."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from dulwich.refs import Ref
from dulwich.repo import Repo
from pydantic import SecretStr

from providers import gitobjects
from providers.config import ForgeConfig
from providers.contract import FileMode, Forge
from providers.local import LocalForge
from providers.registry import locate, open_forge
from providers.retry import RetryPolicy
from tests.forges import gitdata
from tests.forges.github import GitHubDouble
from tests.forges.gitlab import GitLabDouble
from tests.forges.server import ForgeDouble

TOKEN = "glpat-TEST-0123456789abcdef"
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_wait=5.0)
Files = dict[str, bytes | tuple[bytes, FileMode]]


@pytest.fixture(scope="session")
def forge_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of bare repositories per double."""
    return tmp_path_factory.mktemp("forges")


@pytest.fixture(scope="session")
def github_double(forge_root: Path) -> Iterator[GitHubDouble]:
    """One GitHub double for the session; tests use their own repositories."""
    with GitHubDouble(forge_root / "github", token=TOKEN) as double:
        assert isinstance(double, GitHubDouble)
        yield double


@pytest.fixture(scope="session")
def gitlab_double(forge_root: Path) -> Iterator[GitLabDouble]:
    """One GitLab double for the session."""
    with GitLabDouble(forge_root / "gitlab", token=TOKEN) as double:
        assert isinstance(double, GitLabDouble)
        yield double


def read_only_git(git_dir: Path, *args: str) -> str:
    """Run git read-only against a bare repository, to check what the product wrote."""
    result = subprocess.run(
        ["git", "--git-dir", str(git_dir), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def seed_repo(
    repo_dir: Path,
    files: Files,
    branch: str = "main",
    message: str = "seed",
    parent: str | None = None,
    tag: str | None = None,
) -> str:
    """Commit `files` straight into a bare repository, optionally tagging the commit."""
    repo = Repo(str(repo_dir))
    try:
        store = repo.object_store
        base = gitobjects.commit_tree(store, parent.encode()) if parent else None
        edits = []
        for path, value in files.items():
            data, mode = value if isinstance(value, tuple) else (value, FileMode.REGULAR)
            edits.append(gitobjects.TreeEdit(path, mode, gitobjects.add_blob(store, data)))
        tree = gitobjects.apply_edits(store, base, edits)
        sha = gitobjects.make_commit(
            store,
            tree,
            [parent.encode()] if parent else [],
            message,
            ("Seeder", "seed@test.invalid"),
        )
        if parent:
            assert gitdata.set_head(repo, branch, parent, sha)
        else:
            repo.refs[gitobjects.branch_ref(branch)] = sha
        if tag:
            repo.refs[Ref(f"refs/tags/{tag}".encode())] = sha
        return sha.decode()
    finally:
        repo.close()


@dataclass
class ForgeEnv:
    """One repository on one kind of forge, with the adapter pointed at it."""

    kind: str
    repo_dir: Path
    double: ForgeDouble | None
    make_config: Callable[..., ForgeConfig]
    double_name: str = ""
    """The repository's name on the double (`owner/name`, `group/sub/name`)."""
    forge: Forge = field(init=False)
    opened: list[Forge] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.forge = self.new_forge()

    def new_forge(self, **overrides: Any) -> Forge:
        """A fresh adapter (no caches), with config overrides; closed at teardown."""
        forge = open_forge(self.make_config(**overrides))
        self.opened.append(forge)
        return forge

    def close(self) -> None:
        """Close every adapter this environment opened."""
        for forge in self.opened:
            forge.close()

    def seed(
        self, files: Files, branch: str = "main", message: str = "seed", parent: str | None = None
    ) -> str:
        """Commit `files` straight into the bare repository (not through the adapter)."""
        return seed_repo(self.repo_dir, files, branch, message, parent)

    def remove(self, paths: list[str], branch: str, parent: str, message: str = "remove") -> str:
        """Commit the deletion of `paths` straight into the bare repository."""
        repo = Repo(str(self.repo_dir))
        try:
            store = repo.object_store
            base = gitobjects.commit_tree(store, parent.encode())
            edits = [gitobjects.TreeEdit(p, FileMode.REGULAR, None) for p in paths]
            tree = gitobjects.apply_edits(store, base, edits)
            sha = gitobjects.make_commit(
                store, tree, [parent.encode()], message, ("Seeder", "seed@test.invalid")
            )
            assert gitdata.set_head(repo, branch, parent, sha)
            return sha.decode()
        finally:
            repo.close()

    def head(self, branch: str = "main") -> str | None:
        """The branch head, read from disk."""
        repo = Repo(str(self.repo_dir))
        try:
            return gitdata.heads(repo).get(branch)
        finally:
            repo.close()

    def git(self, *args: str) -> str:
        """Read-only git against the repository."""
        return read_only_git(self.repo_dir, *args)

    def git_bytes(self, *args: str) -> bytes:
        """Read-only git, raw output."""
        return subprocess.run(
            ["git", "--git-dir", str(self.repo_dir), *args], capture_output=True, check=True
        ).stdout

    def requests(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests the double saw (0 for local)."""
        return 0 if self.double is None else len(self.double.requests(method, path))

    def clear_log(self) -> None:
        """Forget requests seen so far."""
        if self.double is not None:
            self.double.clear_log()


def make_env(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, *, empty: bool = False
) -> ForgeEnv:
    """Build a ForgeEnv of `kind` on a fresh repository."""
    name = f"team{uuid.uuid4().hex[:6]}/proj{uuid.uuid4().hex[:6]}"
    double: ForgeDouble | None = None
    if kind == "local":
        repo_dir = tmp_path / "local" / "repo.git"
        location = locate(f"file://{repo_dir}")
        LocalForge.create(ForgeConfig(location))
    else:
        double = request.getfixturevalue(f"{kind.split('-')[0]}_double")
        if kind == "gitlab":
            name = f"group{uuid.uuid4().hex[:4]}/sub/{name.replace('/', '-')}"
        repo_dir = double.create_repo(name)
        api = double.url + ("/api/v3" if kind.startswith("github") else "/api/v4")
        location = locate(f"{double.url}/{name}", kind.split("-")[0], api)

    def make_config(**overrides: Any) -> ForgeConfig:
        settings: dict[str, Any] = {
            "token": SecretStr(TOKEN),
            "retry": FAST_RETRY,
            "graphql_commits": kind == "github-graphql",
        }
        settings.update(overrides)
        return ForgeConfig(location, **settings)

    return ForgeEnv(kind, repo_dir, double, make_config, name)


KINDS = ["local", "github", "gitlab"]


@pytest.fixture(params=KINDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ForgeEnv]:
    """A repository on each forge in turn; GitHub traffic must match the published contract."""
    forge_env = make_env(request.param, tmp_path, request)
    if forge_env.double is not None:
        forge_env.double.validation_errors.clear()
        forge_env.double.clear_log()
    yield forge_env
    forge_env.close()
    if forge_env.double is not None:
        forge_env.double.faults.clear()
        assert forge_env.double.validation_errors == []


@pytest.fixture
def no_git(tmp_path: Path) -> Iterator[Path]:
    """A `git` first on PATH that records any call; the test fails if it was called."""
    folder = tmp_path / "no-git-bin"
    folder.mkdir()
    marker = tmp_path / "git-was-called"
    script = folder / "git"
    script.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 97\n')
    script.chmod(0o755)
    yield folder
    assert not marker.exists(), f"git was called: {marker.read_text()}"
