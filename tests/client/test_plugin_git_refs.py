"""A `git+` plugin pinned to a branch (or to HEAD) is reinstalled when the branch moves:
its install records the commit it was built from, and a run that would reuse it asks
where the ref is now (the configured forge's adapter; public hosts' smart-HTTP ref
advertisement), once per requirement, and never for a plugin pinned to a commit SHA."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.server import BackendRepo, DictBackend
from dulwich.web import make_wsgi_chain

from client import plugin_git_refs
from client.install import prepare_plugins
from client.plugin_envs import Action, PluginReport
from client.plugin_git_refs import (
    RECORD,
    RefResolver,
    RefUnknown,
    check_sources,
    read_record,
    record_key,
    write_record,
)
from client.plugin_sources import GitRequirement, parse
from client.settings import Settings
from providers.safety import Limits
from tests.client.conftest import FIXTURES, Runner, meltano_dir
from tests.client.test_plugins_without_git import MODULE, REGISTRY, plugin_repo
from tests.conftest import TOKEN, ForgeEnv, seed_repo
from tests.forges import gitdata
from tests.forges.server import Fault


def requirement(token: str) -> GitRequirement:
    found = parse("tap-x", token)
    assert found is not None
    return found


# ---- the configured forge, through its adapter (real meltano) -------------------------


def project(tmp_path: Path, plugins: dict[str, str]) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    utilities = "".join(
        f"  - name: {name}\n    namespace: {name.replace('-', '_')}\n"
        f"    pip_url: {pip_url}\n    executable: forge-hello\n"
        for name, pip_url in plugins.items()
    )
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes()
    (root / "meltano.yml").write_bytes(
        meltano_yml + f"plugins:\n  utilities:\n{utilities}".encode()
    )
    return root


def prepare(
    env: ForgeEnv, root: Path, no_git: Path
) -> tuple[int, dict[str, PluginReport], list[str]]:
    """One run's plugin step, in process; its reports by name and the double's requests."""
    assert env.double is not None
    location = env.make_config().location
    settings = Settings(
        repo=location.web_url,
        provider=env.kind,
        api_url=location.api_url,
        token=TOKEN,
        install="auto",
        meltano_bin=str(meltano_dir() / "meltano"),
    )
    child = {
        "PATH": f"{no_git}:{meltano_dir()}:/usr/bin:/bin",
        "HOME": str(root.parent),
        "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
        "MELTANO_CLI_DISABLE_VERSION_CHECK": "true",
        "MELTANO_VENV_BACKEND": "uv",
        **REGISTRY,
    }
    env.double.clear_log()
    code, reports = prepare_plugins(root, settings, child, quiet_stdout=True)
    seen = [f"{e.method} {e.path}" for e in env.double.requests()]
    return code, {r.name: r for r in reports}, seen


def hello(root: Path, name: str) -> str:
    tool = root / ".meltano" / "utilities" / name / "venv" / "bin" / "forge-hello"
    return subprocess.run([tool], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_branch_plugin_on_the_forge_is_reinstalled_when_its_branch_moves(
    env: ForgeEnv, tmp_path: Path, no_git: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert env.double is not None
    name = plugin_repo(env, "")
    first = env.double.repo_path(name)
    with env.double.open_repo(name) as repo:
        assert repo is not None
        pinned = repo.refs[Ref(b"refs/heads/main")].decode()
    url = f"git+{env.double.url}/{name}.git"
    root = project(tmp_path, {"on-branch": f"{url}@main", "on-commit": f"{url}@{pinned}"})
    venv = root / ".meltano" / "utilities" / "on-branch" / "venv"

    code, reports, seen = prepare(env, root, no_git)
    assert code == 0
    assert "POST /api/graphql" not in seen, "an install records its archive's SHA, asking nothing"
    assert len(seen) == 4, seen  # two archives: the API's link, then the download
    assert {n: r.action for n, r in reports.items()} == {
        "on-branch": Action.INSTALLED,
        "on-commit": Action.INSTALLED,
    }
    assert read_record(venv) == {f"{url}@main": pinned}, "the install records the branch's SHA"
    assert read_record(venv.parent.parent / "on-commit" / "venv") == {f"{url}@{pinned}": pinned}

    caplog.set_level(logging.INFO, logger="client")
    code, reports, seen = prepare(env, root, no_git)
    assert code == 0
    assert reports["on-branch"].action is Action.REUSED
    assert reports["on-branch"].why == (
        f"its environment matches its pip_url and main is still at {pinned[:7]}"
    )
    assert reports["on-commit"].action is Action.REUSED
    assert reports["on-commit"].why == "its environment matches its pip_url"
    assert seen == ["POST /api/graphql"], "one branch request, none for the commit pin"

    moved = seed_repo(
        first,
        {"forge_hello.py": MODULE.replace(b"git-free plugin", b"moved branch")},
        parent=pinned,
        message="move main",
    )
    caplog.clear()
    code, reports, seen = prepare(env, root, no_git)
    assert code == 0
    assert reports["on-branch"].action is Action.INSTALLED
    assert reports["on-branch"].why == f"its git branch 'main' moved ({pinned[:7]} → {moved[:7]})"
    assert reports["on-commit"].action is Action.REUSED, "only the moved plugin is installed"
    assert seen == [
        "POST /api/graphql",
        f"GET /api/v3/repos/{name}/tarball/main",
        f"GET /_codeload/{name}/legacy.tar.gz/{moved}",
    ], "one branch request, then the moved plugin's archive only"
    assert read_record(venv) == {f"{url}@main": moved}
    assert hello(root, "on-branch") == "hello from a moved branch", "a clean install, not a no-op"
    assert hello(root, "on-commit") == "hello from a git-free plugin"
    assert "installing plugins: on-branch (its git branch 'main' moved" in caplog.text

    env.double.inject(Fault(method="POST", path="^/api/graphql$", status=401, body={}))
    caplog.clear()
    code, reports, seen = prepare(env, root, no_git)
    assert code == 0
    assert reports["on-branch"].action is Action.REUSED, "a ref it cannot resolve is reused"
    assert reports["on-branch"].why == (
        "its environment matches its pip_url; whether its git ref moved could not be told"
    )
    assert seen == ["POST /api/graphql"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned
    assert warned[0].startswith("utility 'on-branch': could not tell whether the git ref 'main'")
    assert TOKEN not in caplog.text

    (venv / RECORD).unlink()  # as in a baked image, or an environment from before records
    code, reports, seen = prepare(env, root, no_git)
    assert code == 0
    assert reports["on-branch"].action is Action.REUSED
    assert "its git source was not recorded at install" in reports["on-branch"].why
    assert seen == [], "nothing to compare with: nothing is asked"


def forge_resolver(env: ForgeEnv) -> RefResolver:
    config = env.make_config()
    return RefResolver(lambda: config, Limits())


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_on_the_forge_head_is_the_default_branch_and_a_tag_cannot_be_told(
    env: ForgeEnv, tmp_path: Path
) -> None:
    assert env.double is not None
    name = plugin_repo(env, "")
    with env.double.open_repo(name) as repo:
        assert repo is not None
        head = repo.refs[Ref(b"refs/heads/main")].decode()
    url = f"git+{env.double.url}/{name}.git"
    resolver = forge_resolver(env)
    env.double.clear_log()
    found = resolver.resolve(requirement(url))
    assert (found.sha, found.kind, found.label) == (head, "HEAD", "git HEAD")
    assert resolver.resolve(requirement(url)) == found, "asked once per run"
    assert resolver.lookups == 1
    repository = f"/api/v3/repos/{name}"
    asked = [f"{e.method} {e.path}" for e in env.double.requests()]
    assert asked == [f"GET {repository}", f"GET {repository}/branches", "POST /api/graphql"]
    with pytest.raises(RefUnknown, match=r"'v0\.1\.0' is not a branch of .*a tag cannot be told"):
        resolver.resolve(requirement(f"{url}@v0.1.0"))
    assert resolver.lookups == 2
    assert len(env.double.requests()) == 4, "a branch lookup: one GraphQL query"

    venv = tmp_path / "venv"
    venv.mkdir()
    write_record(venv, {f"{url}@v0.1.0": head})
    verdict = check_sources(venv, [requirement(f"{url}@v0.1.0")], resolver)
    assert verdict is not None
    assert verdict.install is None
    assert verdict.reused == "; whether its git ref moved could not be told"
    assert verdict.warning.startswith("could not tell whether the git ref 'v0.1.0' of ")
    assert "Its environment is reused; pin a commit SHA in its pip_url" in verdict.warning
    assert resolver.lookups == 2, "a ref that failed is not asked again"
    assert len(env.double.requests()) == 4


def test_a_commit_pin_or_a_plain_requirement_asks_nothing(tmp_path: Path) -> None:
    asked: list[str] = []

    def config() -> None:
        asked.append("the forge's settings")

    resolver = RefResolver(config, Limits())
    sha = "a" * 40
    assert (
        check_sources(tmp_path, [requirement(f"git+https://github.com/a/b@{sha}")], resolver)
        is None
    )
    assert check_sources(tmp_path, [], resolver) is None
    assert (resolver.lookups, asked) == (0, [])


def test_an_environment_without_a_record_is_reused_asking_nothing(tmp_path: Path) -> None:
    resolver = RefResolver(lambda: None, Limits())
    verdict = check_sources(tmp_path, [requirement("git+https://github.com/a/b@main")], resolver)
    assert verdict is not None
    assert verdict.install is None
    assert "its git source was not recorded at install (a baked image" in verdict.reused
    assert resolver.lookups == 0


def test_the_record_never_holds_a_credential_and_is_written_whole(tmp_path: Path) -> None:
    secret = "git+https://user:ghp_" + "s" * 36 + "@github.com/a/b@main"
    named = "b@git+https://oauth2:glpat-" + "t" * 20 + "@gitlab.com/a/b@main"
    plain = "b @ git+https://github.com/a/b@main"
    write_record(tmp_path, {secret: "1" * 40, plain: "2" * 40, named: "3" * 40})
    text = (tmp_path / RECORD).read_text()
    assert "ghp_" not in text
    assert "glpat-" not in text
    assert "user" not in text
    assert json.loads(text)["git"] == {
        record_key(secret): "1" * 40,
        plain: "2" * 40,
        record_key(named): "3" * 40,
    }
    assert record_key(secret).startswith("sha256:")
    assert record_key(named).startswith("sha256:")
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD], "no temporary left"
    (tmp_path / RECORD).write_text("{not json")
    assert read_record(tmp_path) is None


# ---- public hosts: git's smart-HTTP ref advertisement, served for real -----------------


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def public(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Repo, list[str]]]:
    """github.com, as far as `info/refs` goes: dulwich's own smart-HTTP server over a real
    bare repository at `acme/tap-x`, on 127.0.0.1; the paths it was asked for."""
    bare = gitdata.init_bare(tmp_path / "tap-x.git", "main")
    repo = Repo(str(bare))
    app = make_wsgi_chain(DictBackend({"/acme/tap-x.git": cast("BackendRepo", repo)}))
    paths: list[str] = []

    def logged(environ, start_response):  # type: ignore[no-untyped-def]
        paths.append(f"{environ['PATH_INFO']}?{environ.get('QUERY_STRING', '')}")
        return app(environ, start_response)

    server: WSGIServer = make_server("127.0.0.1", 0, logged, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(plugin_git_refs, "PUBLIC_BASE", f"http://127.0.0.1:{server.server_port}")
    try:
        yield repo, paths
    finally:
        server.shutdown()
        server.server_close()
        repo.close()


def annotated_tag(repo: Repo, name: str, commit: str) -> str:
    tag = Tag()
    tag.name = name.encode()
    tag.object = (Commit, commit.encode())
    tag.tagger = b"Seeder <seed@test.invalid>"
    tag.tag_time, tag.tag_timezone = 1_700_000_000, 0
    tag.message = b"release\n"
    repo.object_store.add_object(tag)
    repo.refs[Ref(f"refs/tags/{name}".encode())] = tag.id
    return tag.id.decode()


def test_public_refs_resolve_branches_peeled_tags_and_head(
    public: tuple[Repo, list[str]],
) -> None:
    repo, paths = public
    main = seed_repo(Path(repo.path), {"a.txt": b"1\n"}, tag="light")
    repo.refs[Ref(b"refs/heads/dev")] = ObjectID(main.encode())
    dev = seed_repo(Path(repo.path), {"a.txt": b"2\n"}, branch="dev", parent=main)
    tag_object = annotated_tag(repo, "v1.0", dev)
    resolver = RefResolver(lambda: None, Limits())
    base = "git+https://github.com/acme/tap-x.git"

    branch = resolver.resolve(requirement(f"{base}@dev"))
    assert (branch.sha, branch.kind, branch.label) == (dev, "branch", "git branch 'dev'")
    tag = resolver.resolve(requirement(f"{base}@v1.0"))
    assert (tag.sha, tag.kind) == (dev, "tag"), "peeled to its commit"
    assert tag.sha != tag_object
    assert resolver.resolve(requirement(f"{base}@light")).sha == main
    head = resolver.resolve(requirement(base))
    assert (head.sha, head.kind) == (main, "HEAD")
    resolver.resolve(requirement(f"{base}@dev#egg=tap-x"))  # the same ref: asked once
    assert paths == ["/acme/tap-x.git/info/refs?service=git-upload-pack"] * 4
    assert resolver.lookups == 4

    with pytest.raises(
        RefUnknown, match=re.escape("github.com/acme/tap-x has no branch or tag 'gone'")
    ):
        resolver.resolve(requirement(f"{base}@gone"))
    with pytest.raises(RefUnknown, match=re.escape("github.com answered 404")):
        resolver.resolve(requirement("git+https://github.com/acme/missing.git@main"))
    with pytest.raises(RefUnknown, match="neither the configured forge"):
        resolver.resolve(requirement("git+https://example.org/acme/tap-x.git@main"))
    assert resolver.lookups == 6, "no request to a host that is not public github or gitlab"


def test_public_moved_branch_asks_a_reinstall(
    public: tuple[Repo, list[str]], tmp_path: Path
) -> None:
    repo, paths = public
    first = seed_repo(Path(repo.path), {"a.txt": b"1\n"})
    token = "tap-x @ git+https://gitlab.com/acme/tap-x.git@main"
    venv = tmp_path / "venv"
    venv.mkdir()
    write_record(venv, {token: first})
    same = check_sources(venv, [requirement(token)], RefResolver(lambda: None, Limits()))
    assert same is not None
    assert (same.install, same.reused) == (None, f" and main is still at {first[:7]}")
    second = seed_repo(Path(repo.path), {"a.txt": b"2\n"}, parent=first)
    moved = check_sources(venv, [requirement(token)], RefResolver(lambda: None, Limits()))
    assert moved is not None
    assert moved.install == f"its git branch 'main' moved ({first[:7]} → {second[:7]})"
    assert len(paths) == 2


def test_an_oversized_advertisement_is_refused(public: tuple[Repo, list[str]]) -> None:
    repo, _ = public
    sha = seed_repo(Path(repo.path), {"a.txt": b"1\n"})
    repo.refs.add_packed_refs(
        {Ref(f"refs/tags/release-{n:05d}".encode()): ObjectID(sha.encode()) for n in range(3000)}
    )
    resolver = RefResolver(lambda: None, Limits(), max_bytes=64 * 1024)
    with pytest.raises(RefUnknown, match="advertises more than 65536 bytes of refs"):
        resolver.resolve(requirement("git+https://github.com/acme/tap-x.git@main"))
    roomy = RefResolver(lambda: None, Limits())
    assert roomy.resolve(requirement("git+https://github.com/acme/tap-x.git@main")).sha == sha


def test_public_unreachable_cannot_tell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin_git_refs, "PUBLIC_BASE", "http://127.0.0.1:9")
    with pytest.raises(RefUnknown, match=re.escape("github.com could not be reached")):
        RefResolver(lambda: None, Limits(), timeout=5).resolve(
            requirement("git+https://github.com/acme/tap-x.git@main")
        )


@pytest.mark.parametrize("env", ["gitlab"], indirect=True)
def test_on_gitlab_a_branch_costs_one_request(env: ForgeEnv) -> None:
    assert env.double is not None
    name = plugin_repo(env, "")
    with env.double.open_repo(name) as repo:
        assert repo is not None
        head = repo.refs[Ref(b"refs/heads/main")].decode()
    url = f"git+{env.double.url}/{name}.git"
    resolver = forge_resolver(env)
    env.double.clear_log()
    found = resolver.resolve(requirement(f"{url}@main"))
    assert (found.sha, found.kind) == (head, "branch")
    asked = [f"{e.method} {e.path}" for e in env.double.requests()]
    assert len(asked) == 1, asked
    assert asked[0].startswith("GET /api/v4/projects/")
    assert "/repository/branches/main" in asked[0]
    assert resolver.resolve(requirement(url)).sha == head
    with pytest.raises(RefUnknown, match="a tag cannot be told"):
        resolver.resolve(requirement(f"{url}@v0.1.0"))
    # HEAD: the project (its default branch, and the protected ones), then its branch
    assert len(env.double.requests()) == 5
    assert resolver.lookups == 3


@pytest.mark.parametrize("joined", [" @ ", "@"])
def test_a_named_git_requirement_with_credentials_is_never_cached(joined: str) -> None:
    """`tap-x@git+https://user:token@host/...` (no spaces) carries credentials as much as
    `tap-x @ git+...` does: neither may go to the plugin cache, whatever its ref."""
    from client.fingerprint import pip_install_args
    from client.plugin_envs import uncacheable
    from client.plugins import Plugin

    pip_url = f"tap-x{joined}git+https://oauth2:glpat-{'t' * 20}@gitlab.com/a/b@{'a' * 40}"
    plugin = Plugin("extractors", "tap-x", pip_url)
    assert uncacheable(plugin, pip_install_args(pip_url, {}, ""), None) == (
        "its pip_url carries credentials"
    )


@pytest.mark.slow
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_the_runner_reinstalls_a_moved_branch_plugin_and_says_why(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """`meltano-forge run` in one workspace: the branch moves between two runs, and the
    second runs the new code, saying why it reinstalled."""
    assert env.double is not None
    name = plugin_repo(env, "")
    with env.double.open_repo(name) as repo:
        assert repo is not None
        first = repo.refs[Ref(b"refs/heads/main")].decode()
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + (
        "plugins:\n  utilities:\n  - name: hello\n    namespace: hello\n"
        f"    pip_url: git+{env.double.url}/{name}.git@main\n    executable: forge-hello\n"
    ).encode()
    base = env.seed({"meltano.yml": meltano_yml, ".gitignore": b"/.meltano\n"})
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    workspace = str(tmp_path / "ws")
    extra = {
        "MELTANO_FORGE_INSTALL": "auto",
        "MELTANO_VENV_BACKEND": "uv",
        "MELTANO_FORGE_PROJECT_DIR": workspace,
        **REGISTRY,
    }
    result = run("run", "--", "meltano", "invoke", "hello", **extra)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "hello from a git-free plugin" in result.stdout
    moved = seed_repo(
        env.double.repo_path(name),
        {"forge_hello.py": MODULE.replace(b"git-free plugin", b"moved branch")},
        parent=first,
        message="move main",
    )
    again = run("run", "--", "meltano", "invoke", "hello", **extra)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "hello from a moved branch" in again.stdout
    assert f"its git branch 'main' moved ({first[:7]} → {moved[:7]})" in again.stderr
    same = run("run", "--", "meltano", "invoke", "hello", **extra)
    assert same.returncode == 0, same.stderr[-3000:]
    assert f"matches its pip_url and main is still at {moved[:7]}" in same.stderr
    assert "installing plugins: none needed (1 reused)" in same.stderr
