"""Repository content never decides where a credential goes, or which one (issue 16 §1).

Every test commits a hostile `meltano_forge:` section into the working branch, runs the
real CLI against the real forge doubles, and asks a loopback attacker host what it saw:
nothing at all, whatever the command. Where the environment names the forge, the commands
go on working there, and `pull` brings in the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.conftest import Runner, seed_project
from tests.conftest import TOKEN, ForgeEnv
from tests.forges.attacker import AttackerHost
from tests.service.conftest import WRITE, Service, receiver, service

__all__ = ["receiver", "service"]  # the service-mode test's fixtures

AWS_SECRET = "aws-secret-wJalrXUtnFEMI-K7MDENG"
FILE_SECRET = "file-secret-outside-the-project-31337"
WARNING = "meltano-forge: warning:"


@pytest.fixture
def attacker() -> Iterator[AttackerHost]:
    with AttackerHost() as host:
        yield host


@dataclass(frozen=True)
class Hostile:
    """One hostile `meltano_forge:` section and the setting its warning must name."""

    name: str
    section: Callable[[str, ForgeEnv, Path], str]
    """(attacker origin, the real forge, a secret file outside the project) -> YAML."""
    names: str
    link: str | None = None
    """A path the workspace holds as a symlink to the secret outside (ignored, never
    committed: a pull refuses links that leave the project)."""


def attacker_repo(origin: str, reference: str) -> str:
    return f"meltano_forge:\n  repo: {origin}/acme/x\n  provider: github\n  {reference}\n"


HOSTILE = [
    Hostile(
        "api_url-elsewhere",
        lambda origin, env, _: (
            f"meltano_forge:\n  repo: {env.make_config().location.web_url}\n"
            f"  provider: {env.kind}\n  api_url: {origin}{api_suffix(env)}\n"
        ),
        "meltano_forge.api_url",
    ),
    Hostile(
        "repo-elsewhere-with-aws-secret",
        lambda origin, _, __: attacker_repo(origin, "token_env: AWS_SECRET_ACCESS_KEY"),
        "meltano_forge.token_env names AWS_SECRET_ACCESS_KEY",
    ),
    Hostile(
        "token_file-absolute",
        lambda origin, _, secret: attacker_repo(origin, f"token_file: {secret}"),
        "meltano_forge.token_file",
    ),
    Hostile(
        "token_file-etc-hostname",
        lambda origin, _, __: attacker_repo(origin, "token_file: /etc/hostname"),
        "meltano_forge.token_file",
    ),
    Hostile(
        "token_file-symlink-out",
        lambda origin, _, __: attacker_repo(origin, "token_file: .meltano/token"),
        "meltano_forge.token_file",
        link=".meltano/token",
    ),
]


def commit_section(env: ForgeEnv, section: str) -> str:
    """The working branch's meltano.yml with `section` appended."""
    head = env.head("development")
    assert head is not None
    meltano_yml = env.git_bytes("show", f"{head}:meltano.yml")
    return env.seed(
        {"meltano.yml": meltano_yml + section.encode()},
        branch="development",
        parent=head,
        message="hostile",
    )


def commit_fix(env: ForgeEnv) -> bytes:
    """A meltano.yml without the section, committed to the forge; its bytes."""
    head = env.head("development")
    assert head is not None
    text = env.git("show", f"{head}:meltano.yml")
    fixed = text.partition("meltano_forge:")[0].encode()
    env.seed({"meltano.yml": fixed}, branch="development", parent=head, message="fix")
    return fixed


def secret_outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside" / "credential"
    path.parent.mkdir(exist_ok=True)
    path.write_text(FILE_SECRET + "\n")
    return path


def api_suffix(env: ForgeEnv) -> str:
    return "/api/v3" if env.kind.startswith("github") else "/api/v4"


def assert_warned_once(stderr: str, names: str) -> None:
    assert stderr.count(WARNING) == 1, stderr
    assert names in stderr, stderr


def every_command(
    run: Runner,
    env: ForgeEnv,
    folder: Path,
    attacker: AttackerHost,
    hostile: Hostile,
    secrets: tuple[str, ...],
) -> None:
    """pull, branches (text and JSON), commit, run and promote with the hostile section in
    the workspace; then the fix comes in through `pull`. After each command the attacker
    has seen nothing at all, and the command worked against the environment's forge."""
    ws = {"MELTANO_FORGE_PROJECT_DIR": str(folder)}
    first = run("pull", **ws)
    assert first.returncode == 0, first.stderr
    assert hostile.names.split()[0] not in first.stderr, "no meltano.yml before the first pull"
    if hostile.link:
        (folder / hostile.link).parent.mkdir(parents=True, exist_ok=True)
        (folder / hostile.link).symlink_to(secret_outside(folder.parent))

    def step(*args: str) -> subprocess.CompletedProcess[str]:
        done = run(*args, **ws)
        assert attacker.carrying(*secrets) == [], f"{args[0]} sent a credential elsewhere"
        assert attacker.requests() == [], f"{args[0]} sent a request to the repository's host"
        assert done.returncode == 0, done.stderr
        assert_warned_once(done.stderr, hostile.names)
        return done

    assert "development" in step("branches").stdout
    as_json = json.loads(step("branches", "--json").stdout)
    assert any(hostile.names in w for w in as_json["warnings"])

    (folder / "README.md").write_text("committed past a hostile meltano.yml\n")
    step("commit")
    assert env.git("show", "development:README.md") == "committed past a hostile meltano.yml\n"

    child_env = folder.parent / f"{folder.name}-child.env"
    step("run", "--", "sh", "-c", f"env > {child_env}")
    seen_by_child = child_env.read_text()
    assert all(s not in seen_by_child for s in (TOKEN, WRITE, FILE_SECRET)), seen_by_child

    step("promote")

    fixed = commit_fix(env)
    step("pull")
    assert (folder / "meltano.yml").read_bytes() == fixed, "pull brought in the fix"
    quiet = run("status", **ws)
    assert quiet.returncode == 0, quiet.stderr
    assert WARNING not in quiet.stderr


def nothing_to_fall_back_to(
    run: Runner, folder: Path, attacker: AttackerHost, hostile: Hostile, secrets: tuple[str, ...]
) -> None:
    """With no forge and no token in the environment, every command refuses (exit 2, naming
    the setting) and sends nothing anywhere."""
    run.base.update(
        MELTANO_FORGE_REPO="",
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
        MELTANO_FORGE_TOKEN="",
    )
    ws = {"MELTANO_FORGE_PROJECT_DIR": str(folder)}
    (folder / "README.md").write_text("never committed\n")
    commands = (("pull",), ("branches",), ("commit",), ("run", "--", "true"), ("promote",))
    results = [run(*args, **ws) for args in commands]
    assert attacker.carrying(*secrets) == [], "a credential went to the repository's host"
    assert attacker.requests() == [], "a request went to the repository's host"
    for done in results:
        assert done.returncode == 2, done.stderr
        assert hostile.names in done.stderr


@pytest.mark.parametrize("environment", ["names-the-forge", "names-nothing"])
@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
@pytest.mark.parametrize("env", ["github", "gitlab"], indirect=True)
def test_a_hostile_meltano_yml_sends_nothing_elsewhere(
    env: ForgeEnv,
    tmp_path: Path,
    no_git: Path,
    attacker: AttackerHost,
    hostile: Hostile,
    environment: str,
) -> None:
    """Where the environment names the forge (not its API: GHE and self-managed GitLab
    derive it), every command works there; where it names nothing, every command refuses."""
    seed_project(env)
    secret = secret_outside(tmp_path)
    commit_section(env, hostile.section(attacker.url, env, secret))
    run = Runner(env, tmp_path, no_git)
    run.base.update(AWS_SECRET_ACCESS_KEY=AWS_SECRET, MELTANO_FORGE_API_URL="")
    hostname = Path("/etc/hostname").read_text().strip() if Path("/etc/hostname").exists() else ""
    secrets = (TOKEN, AWS_SECRET, FILE_SECRET, *([hostname] if len(hostname) > 3 else []))
    folder = tmp_path / "ws"
    if environment == "names-the-forge":
        every_command(run, env, folder, attacker, hostile, secrets)
        return
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    if hostile.link:
        (folder / hostile.link).parent.mkdir(parents=True, exist_ok=True)
        (folder / hostile.link).symlink_to(secret)
    nothing_to_fall_back_to(run, folder, attacker, hostile, secrets)


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_service_mode_sends_the_service_token_only_to_the_service(
    service: Service, env: ForgeEnv, tmp_path: Path, no_git: Path, attacker: AttackerHost
) -> None:
    seed_project(env)
    hostile = Hostile(
        "service-mode-gitlab-elsewhere",
        lambda origin, _, __: f"meltano_forge:\n  provider: gitlab\n  api_url: {origin}/api/v4\n",
        "meltano_forge.provider and meltano_forge.api_url",
    )
    secret = secret_outside(tmp_path)
    commit_section(env, hostile.section(attacker.url, env, secret))
    run = Runner(env, tmp_path, no_git)
    run.base.update(
        MELTANO_FORGE_REPO=str(service.client.base_url).rstrip("/") + "/v1/projects/warehouse",
        MELTANO_FORGE_TOKEN=WRITE,
        MELTANO_FORGE_PROVIDER="",
        MELTANO_FORGE_API_URL="",
    )
    every_command(run, env, tmp_path / "ws", attacker, hostile, (WRITE, TOKEN))


UNTRUSTED = [
    pytest.param(
        lambda forge, attacker: (
            f"repo: {forge}\n  provider: github\n  api_url: {attacker}/api/v3\n"
        ),
        "meltano_forge.api_url names host 127.0.0.1:{port}",
        id="api_url-elsewhere",
    ),
    pytest.param(
        lambda _, attacker: f"repo: {attacker}/acme/x\n  provider: github\n",
        "meltano_forge.repo names host 127.0.0.1:{port}",
        id="repo-elsewhere",
    ),
]


def no_location(run: Runner) -> None:
    """The environment names no repository: meltano.yml's location is the only one."""
    run.base.update(MELTANO_FORGE_REPO="", MELTANO_FORGE_PROVIDER="", MELTANO_FORGE_API_URL="")


@pytest.mark.parametrize(("section", "names"), UNTRUSTED)
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_without_a_location_in_the_environment_an_untrusted_host_is_refused(
    env: ForgeEnv,
    tmp_path: Path,
    no_git: Path,
    attacker: AttackerHost,
    section: Callable[[str, str], str],
    names: str,
) -> None:
    seed_project(env)
    web = env.make_config().location.web_url
    body = section(web, attacker.url)
    commit_section(env, f"meltano_forge:\n  {body}  token_env: GITHUB_TOKEN\n")
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    no_location(run)
    forge = web.removeprefix("http://").partition("/")[0]
    for command in ("pull", "branches", "commit", "promote"):
        refused = run(
            command,
            MELTANO_FORGE_PROJECT_DIR=str(folder),
            MELTANO_FORGE_TRUSTED_HOSTS=forge,
            GITHUB_TOKEN=TOKEN,
        )
        assert refused.returncode == 2, refused.stderr
        assert names.format(port=attacker.netloc.partition(":")[2]) in refused.stderr
        assert "the environment does not trust" in refused.stderr
        assert f"MELTANO_FORGE_TRUSTED_HOSTS={attacker.netloc}" in refused.stderr
    assert attacker.requests() == []

    trusted = run(
        "branches",
        MELTANO_FORGE_PROJECT_DIR=str(folder),
        MELTANO_FORGE_TRUSTED_HOSTS=f"{forge}, {attacker.netloc}",
        GITHUB_TOKEN=TOKEN,
    )
    assert trusted.returncode != 0, "the attacker host answers 404"
    assert attacker.requests() != [], "an environment that trusts the host lets it through"


@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_a_trusted_location_in_meltano_yml_is_honoured(
    env: ForgeEnv, tmp_path: Path, no_git: Path, attacker: AttackerHost
) -> None:
    seed_project(env)
    location = env.make_config().location
    commit_section(
        env,
        f"meltano_forge:\n  repo: {location.web_url}\n  provider: github\n"
        f"  api_url: {location.api_url}\n  token_env: GITHUB_TOKEN\n",
    )
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    no_location(run)
    run.base["MELTANO_FORGE_TOKEN"] = ""
    forge = location.web_url.removeprefix("http://").partition("/")[0]
    listed = run(
        "branches",
        MELTANO_FORGE_PROJECT_DIR=folder,
        MELTANO_FORGE_TRUSTED_HOSTS=forge,
        GITHUB_TOKEN=TOKEN,
    )
    assert listed.returncode == 0, listed.stderr
    assert "development" in listed.stdout
    assert WARNING not in listed.stderr
    assert attacker.requests() == []


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_local_path_in_meltano_yml_is_refused(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    seed_project(env)
    elsewhere = tmp_path / "another" / "repo.git"
    commit_section(env, f"meltano_forge:\n  repo: file://{elsewhere}\n")
    run = Runner(env, tmp_path, no_git)
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder).returncode == 0
    with_env = run("status", MELTANO_FORGE_PROJECT_DIR=folder)
    assert with_env.returncode == 0, with_env.stderr
    assert_warned_once(with_env.stderr, "meltano_forge.repo")
    no_location(run)
    refused = run("pull", MELTANO_FORGE_PROJECT_DIR=folder)
    assert refused.returncode == 2, refused.stderr
    assert "meltano_forge.repo names a repository on this machine's disk" in refused.stderr
    assert not elsewhere.parent.exists()


def alias_bomb() -> str:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\nmeltano_forge: *a8\n"


BROKEN = [
    pytest.param("meltano_forge: [unclosed\n", "meltano.yml line", id="invalid-yaml"),
    pytest.param(alias_bomb(), "meltano.yml", id="alias-bomb"),
    pytest.param("meltano_forge:\n  colour: blue\n", "does not take colour", id="unknown-key"),
    pytest.param(
        "meltano_forge:\n  token: ghp_literal_in_the_repository\n",
        "a token must never be committed",
        id="literal-token",
    ),
    pytest.param(
        "meltano_forge:\n  trusted_hosts: evil.example\n",
        "does not take trusted_hosts",
        id="trusted-hosts-from-the-repository",
    ),
    pytest.param("meltano_forge: yes\n", "is not a mapping", id="not-a-mapping"),
    pytest.param(
        "meltano_forge:\n  auto_commit: [1]\n", "meltano_forge.auto_commit", id="wrong-type"
    ),
]


@pytest.mark.parametrize(("section", "names"), BROKEN)
@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_a_broken_meltano_yml_never_stops_pull_from_fetching_the_fix(
    env: ForgeEnv, tmp_path: Path, no_git: Path, section: str, names: str
) -> None:
    seed_project(env)
    head = env.head("development")
    assert head is not None
    meltano_yml = env.git_bytes("show", f"{head}:meltano.yml")
    broken = section if section.startswith("a0:") else meltano_yml.decode() + section
    env.seed({"meltano.yml": broken.encode()}, branch="development", parent=head)
    run = Runner(env, tmp_path, no_git)
    folder = tmp_path / "ws"
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder)).returncode == 0
    fixed = env.head("development")
    assert fixed is not None
    env.seed({"meltano.yml": meltano_yml}, branch="development", parent=fixed)
    pulled = run("pull", MELTANO_FORGE_PROJECT_DIR=str(folder))
    assert pulled.returncode == 0, pulled.stderr
    assert_warned_once(pulled.stderr, names)
    assert "uses the environment's settings" in pulled.stderr
    assert "ghp_literal_in_the_repository" not in pulled.stderr
    assert (folder / "meltano.yml").read_bytes() == meltano_yml


@pytest.mark.parametrize(
    "forge_token",
    [pytest.param("", id="token-from-GITHUB_TOKEN"), pytest.param(TOKEN, id="token-from-env")],
)
@pytest.mark.parametrize("env", ["github"], indirect=True)
def test_runs_child_never_sees_a_credential_whatever_holds_it(
    env: ForgeEnv, tmp_path: Path, no_git: Path, forge_token: str
) -> None:
    seed_project(env)
    commit_section(env, "meltano_forge:\n  token_env: GITHUB_TOKEN\n")
    run = Runner(env, tmp_path, no_git)
    run.base["MELTANO_FORGE_TOKEN"] = forge_token
    named = TOKEN if not forge_token else "ghp-another-token-the-project-named"
    out = tmp_path / "child.env"
    folder = str(tmp_path / "ws")
    assert run("pull", MELTANO_FORGE_PROJECT_DIR=folder, MELTANO_FORGE_TOKEN=TOKEN).returncode == 0
    done = run(
        "run",
        "--",
        "sh",
        "-c",
        f"env > {out}",
        GITHUB_TOKEN=named,
        COPY_OF_THE_TOKEN=TOKEN,
        REMOTE_WITH_THE_TOKEN=f"https://x-access-token:{TOKEN}@example.com/acme/x",
        UNRELATED_SETTING="kept",
        MELTANO_FORGE_PROJECT_DIR=folder,
    )
    assert done.returncode == 0, done.stderr
    child = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert child.get("UNRELATED_SETTING") == "kept"
    for gone in ("GITHUB_TOKEN", "COPY_OF_THE_TOKEN", "REMOTE_WITH_THE_TOKEN"):
        assert gone not in child, gone
    assert not [k for k in child if k.startswith("MELTANO_FORGE_")]
    assert TOKEN not in out.read_text()
    assert named not in out.read_text()


@pytest.mark.parametrize(
    ("provider", "api_url"),
    [
        ("gitlab", "https://{attacker}\\@gitlab.com/api/v4"),
        ("gitlab", "https://{attacker}@gitlab.com/api/v4"),
        ("github", "https://{attacker}\\@api.github.com"),
    ],
    ids=["backslash-gitlab", "userinfo-gitlab", "backslash-github"],
)
def test_a_url_that_parses_two_ways_is_refused_before_anything_is_sent(
    tmp_path: Path, provider: str, api_url: str
) -> None:
    """`https://evil\\@gitlab.com` is gitlab.com to the trust check's URL parser and evil to
    urllib3, which python-gitlab sends the token through. The URL is refused as a whole,
    and what the clients are given is rebuilt from what the check saw. The attacker serves
    TLS with a certificate the client trusts, as a real attacker's domain would."""
    with AttackerHost(tls=True) as host:
        assert host.cert is not None
        folder = tmp_path / "ws"
        folder.mkdir()
        web = (
            "https://gitlab.com/acme/warehouse"
            if provider == "gitlab"
            else ("https://github.com/acme/warehouse")
        )
        variable = "GITLAB_TOKEN" if provider == "gitlab" else "GITHUB_TOKEN"
        (folder / "meltano.yml").write_text(
            f"version: 1\nmeltano_forge:\n  repo: {web}\n  provider: {provider}\n"
            f"  api_url: '{api_url.format(attacker=host.netloc)}'\n  token_env: {variable}\n"
        )
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MELTANO_FORGE_")} | {
            "MELTANO_FORGE_PROJECT_DIR": str(folder),
            "MELTANO_FORGE_INSTALL": "never",
            variable: TOKEN,
            "REQUESTS_CA_BUNDLE": str(host.cert),
            "SSL_CERT_FILE": str(host.cert),
        }
        done = subprocess.run(
            [sys.executable, "-c", "from service.entry import main; main()", "pull"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert host.carrying(TOKEN) == [], "the token went to the attacker"
        assert host.requests() == []
        assert done.returncode == 2, done.stderr
        assert "is not a plain http(s) URL" in done.stderr
        assert TOKEN not in done.stderr + done.stdout


@pytest.mark.parametrize("env", ["local"], indirect=True)
def test_runs_child_cannot_read_the_runners_own_environment(
    env: ForgeEnv, tmp_path: Path, no_git: Path
) -> None:
    """The child's environment is clean, but ours is not: a child of the same user could
    read `/proc/<runner>/environ`. The runner makes itself undumpable before it starts a
    child, so that file belongs to root. Run as a container's user does (not root)."""
    seed_project(env)
    run = Runner(env, tmp_path, no_git)
    shared = Path(tempfile.mkdtemp(prefix="meltano-forge-uid10001-"))  # not under root's 0700
    shared.chmod(0o755)
    shutil.copytree(env.repo_dir, shared / "repo.git")
    folder = shared / "project"
    folder.mkdir()
    os.chown(folder, 10001, 10001)
    peek = "(cat /proc/$PPID/environ || echo unreadable) | tr '\\0' '\\n'"
    done = subprocess.run(
        [
            *("setpriv", "--reuid=10001", "--regid=10001", "--clear-groups"),
            *(sys.executable, "-c", "from service.entry import main; main()"),
            *("run", "--", "sh", "-c", peek),
        ],
        cwd=Path(__file__).resolve().parents[2],
        env=run.environ(
            MELTANO_FORGE_AUTO_COMMIT="false",
            MELTANO_FORGE_PROJECT_DIR=str(folder),
            MELTANO_FORGE_REPO=f"file://{shared / 'repo.git'}",
            HOME=str(folder),
        ),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    shutil.rmtree(shared)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert "MELTANO_FORGE_TOKEN" not in done.stdout
    assert "unreadable" in done.stdout
