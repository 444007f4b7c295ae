"""Plugins whose pip_url is `git+https://...@tag` install through the forge's archive API,
with pip and with uv, while `git` on PATH is a shim that fails the test if it is called;
meltano.yml stays as committed and nothing is committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.plugin_sources import PluginSourceError, parse
from providers.contract import FileMode
from tests.client.conftest import FIXTURES, Runner
from tests.conftest import ForgeEnv, seed_repo

PYPROJECT = b"""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "forge-hello"
version = "0.1.0"

[project.scripts]
forge-hello = "forge_hello:main"
"""
REGISTRY = {"UV_NATIVE_TLS": "true"} if Path("/etc/pip.conf").exists() else {}
"""This machine reaches PyPI through a proxy whose CA pip learns from /etc/pip.conf; uv
needs to be told to trust the system's certificates too."""
MODULE = b'def main():\n    print("hello from a git-free plugin")\n'


def plugin_repo(env: ForgeEnv, folder: str) -> str:
    """A tiny plugin package in its own repository on the same double, tagged v0.1.0."""
    assert env.double is not None
    name = f"plugins-{env.double_name.split('/')[-1]}/forge-hello"
    prefix = f"{folder}/" if folder else ""
    seed_repo(
        env.double.create_repo(name),
        {
            f"{prefix}pyproject.toml": PYPROJECT,
            f"{prefix}forge_hello.py": MODULE,
            "README.md": b"a plugin\n",
            "bin/tool": (b"#!/bin/sh\n", FileMode.EXECUTABLE),
        },
        tag="v0.1.0",
    )
    return name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "backend", "folder"),
    [("github", "uv", ""), ("github", "virtualenv", ""), ("gitlab", "uv", "src/hello")],
    indirect=["env"],
)
def test_a_git_plugin_installs_and_runs_without_git(
    env: ForgeEnv, tmp_path: Path, no_git: Path, backend: str, folder: str
) -> None:
    assert env.double is not None
    name = plugin_repo(env, folder)
    fragment = f"#subdirectory={folder}&egg=forge-hello" if folder else ""
    pip_url = f"git+{env.double.url}/{name}.git@v0.1.0{fragment}"
    meltano_yml = (FIXTURES / "meltano-config" / "meltano.yml").read_bytes() + (
        "plugins:\n  utilities:\n  - name: hello\n    namespace: hello\n"
        f"    pip_url: {pip_url}\n    executable: forge-hello\n"
    ).encode()
    base = env.seed({"meltano.yml": meltano_yml, ".gitignore": b"/.meltano\n"})
    env.forge.create_branch("development", base)
    run = Runner(env, tmp_path, no_git)
    folder_ws = str(tmp_path / "ws")
    result = run(
        "run",
        "--",
        "meltano",
        "invoke",
        "hello",
        MELTANO_FORGE_INSTALL="auto",
        MELTANO_VENV_BACKEND=backend,
        MELTANO_FORGE_PROJECT_DIR=folder_ws,
        **REGISTRY,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "hello from a git-free plugin" in result.stdout
    assert "installing utility 'hello' from" in result.stderr
    assert "(an archive, no git)" in result.stderr
    assert env.head("development") == base, "installing commits nothing"
    assert env.git_bytes("show", "development:meltano.yml") == meltano_yml
    assert (Path(folder_ws) / "meltano.yml").read_bytes() == meltano_yml
    status = run("status", MELTANO_FORGE_PROJECT_DIR=folder_ws)
    assert "nothing to commit" in status.stdout
    again = run(
        "run",
        "--",
        "meltano",
        "invoke",
        "hello",
        MELTANO_FORGE_INSTALL="never",
        MELTANO_VENV_BACKEND=backend,
        MELTANO_FORGE_PROJECT_DIR=folder_ws,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "hello from a git-free plugin" in again.stdout, "Meltano does not reinstall"


@pytest.mark.parametrize(
    "token",
    [
        "git+ssh://git@github.com/acme/tap-x.git@v1",
        "git+git@github.com:acme/tap-x.git",
    ],
)
def test_requirements_that_need_git_are_refused_naming_the_plugin(token: str) -> None:
    with pytest.raises(PluginSourceError) as refused:
        parse("tap-x", token)
    assert "The plugin 'tap-x'" in str(refused.value)
    assert "publish the plugin to a package index" in str(refused.value)


def test_git_requirements_are_parsed_as_meltano_writes_them() -> None:
    plain = parse("t", "git+https://github.com/Acme/tap-x.git@v1.2.3")
    assert plain is not None
    assert (plain.host, plain.path, plain.ref, plain.subdirectory, plain.name) == (
        "github.com",
        "Acme/tap-x",
        "v1.2.3",
        "",
        None,
    )
    sub = parse("t", "tap-x@git+https://gitlab.com/g/s/repo@main#subdirectory=pkg/tap&egg=x")
    assert sub is not None
    assert (sub.host, sub.path, sub.ref, sub.subdirectory, sub.name) == (
        "gitlab.com",
        "g/s/repo",
        "main",
        "pkg/tap",
        "tap-x",
    )
    assert parse("t", "meltano-map-transform==0.2") is None
    head = parse("t", "git+https://github.com/acme/tap-y")
    assert head is not None
    assert head.ref == "HEAD"


def test_pip_url_variables_expand_from_the_commands_environment_never_ours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `pip_url` is repository content: `${MELTANO_FORGE_TOKEN}` in it expands from the
    command's environment (which has no forge credential), so the token never becomes part
    of a URL sent anywhere, or of a message."""
    from client.plugin_sources import git_requirements
    from client.plugins import Plugin
    from client.runner import child_environment
    from client.settings import Settings

    ours = {"MELTANO_FORGE_TOKEN": "ghp_" + "s" * 36, "TAG": "v1.2.3", "HOME": "/root"}
    for name, value in ours.items():
        monkeypatch.setenv(name, value)  # the runner's own environment holds the token
    plugin = Plugin(
        "extractors",
        "tap-x",
        "git+https://github.com/acme/tap-x.git@${MELTANO_FORGE_TOKEN} "
        "git+https://github.com/acme/tap-y.git@$TAG",
    )
    child = child_environment(ours, read_only=False, settings=Settings())
    found = git_requirements([plugin], child)
    assert [r.ref for r in found] == ["${MELTANO_FORGE_TOKEN}", "v1.2.3"]
    assert all(ours["MELTANO_FORGE_TOKEN"] not in repr(r) for r in found)


@pytest.mark.parametrize(
    "pip_url",
    [
        "git+https://github.com/acme/../../../../escape.git@v1",
        "git+https://github.com/acme/tap.git@../../../../escape",
    ],
)
def test_a_pip_url_cannot_unpack_outside_the_plugin_sources_folder(
    tmp_path: Path, pip_url: str
) -> None:
    from client.plugin_sources import PluginFetcher, git_requirements
    from client.plugins import Plugin
    from providers.safety import Limits

    found = git_requirements([Plugin("extractors", "tap-x", pip_url)], {})
    with pytest.raises(PluginSourceError, match="outside the plugin sources folder"):
        PluginFetcher(tmp_path, None, Limits()).fetch(found[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == []
