"""The plugin cache the service holds for its runners, over real HTTP: entries per
project (a token of one project can neither read nor place another's), verified before
they are stored and never replaced, bounded uploads, and leases that make one runner of
many install each entry (granted, held, stored; released; expired when the holder
stops renewing them, as a killed runner does); the runner's side through the real service
adapter (a read token restores and takes no lease; a service without a cache makes it
install as before); the routes under generated input with the cache on.

The end-to-end story (real `meltano`, real plugins, cold runners at once) is
`tests/client/test_plugin_cache_fleet.py`."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from client.plugin_cache import EntryKey, pack
from client.service_plugin_cache import PluginEnvRemote, ServicePluginCache
from providers.config import ForgeConfig
from providers.registry import locate, open_forge
from service.app import build_state, create_app
from service.settings import ServiceSettings
from tests.conftest import ForgeEnv
from tests.service.conftest import LiveServer

LOCAL = pytest.mark.parametrize("env", ["local"], indirect=True)
WRITER_A, READER_A, WRITER_B = "writer-a-token-01", "reader-a-token-02", "writer-b-token-03"
VENV = "/project/.meltano/extractors/tap-a/venv"
HOLDER_1, HOLDER_2 = "holder-one-000000000001", "holder-two-000000000002"


class Cache:
    def __init__(self, client: httpx.Client, root: Path) -> None:
        self.client, self.root = client, root

    def url(self, project: str, tail: str) -> str:
        return f"/v1/projects/{project}/plugin-envs/{tail}"

    def get(self, key: EntryKey, token: str = READER_A, project: str = "warehouse") -> Any:
        return self.client.get(self.url(project, key.digest), headers=_auth(token))

    def put(
        self,
        key: EntryKey,
        data: bytes,
        token: str = WRITER_A,
        project: str = "warehouse",
        sha256: str | None = None,
        **fields: str,
    ) -> Any:
        params = {
            "plugin": "extractors/tap-a",
            "fingerprint": key.fingerprint,
            "python": key.python,
            "platform": key.platform,
            "venv": key.venv,
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            **fields,
        }
        return self.client.put(
            self.url(project, key.digest), params=params, content=data, headers=_auth(token)
        )

    def leases(self, holder: str, keys: list[EntryKey], wait: float = 0.0, **kw: Any) -> Any:
        body = {"holder": holder, "keys": [k.digest for k in keys], "wait": wait}
        return self.client.post(
            self.url(kw.get("project", "warehouse"), "leases"),
            json=body,
            headers=_auth(kw.get("token", WRITER_A)),
        )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key(fingerprint: str = "a" * 64, venv: str = VENV) -> EntryKey:
    return EntryKey(fingerprint, "cpython-3.11.7 /usr/bin/python3.11", "linux-x86_64 glibc", venv)


def archive(tmp_path: Path, payload: bytes = b"print('hi')\n") -> bytes:
    venv = tmp_path / f"venv-{hashlib.sha256(payload).hexdigest()[:8]}"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "tap-a").write_bytes(payload)
    (venv / "bin" / "python").symlink_to("/usr/bin/python3")
    target = tmp_path / f"{venv.name}.tar"
    pack(venv, target)
    return target.read_bytes()


def start(tmp_path: Path, env: ForgeEnv, **settings: Any) -> Iterator[Cache]:
    projects = tmp_path / "projects.yml"
    repo = f"file://{env.repo_dir}"
    projects.write_text(
        yaml.safe_dump(
            {
                "projects": [
                    {"name": "warehouse", "repo": repo},
                    {"name": "another", "repo": repo},
                ],
                "tokens": [
                    {"name": "a", "token": WRITER_A, "role": "write", "projects": ["warehouse"]},
                    {"name": "ra", "token": READER_A, "role": "read", "projects": ["warehouse"]},
                    {"name": "b", "token": WRITER_B, "role": "write", "projects": ["another"]},
                ],
            }
        )
    )
    config = ServiceSettings(
        projects_file=projects,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        cache_dir=tmp_path / "archives",
        data_dir=tmp_path / "data",
        **settings,
    )
    state = build_state(config)
    app = create_app(config, state=state, deliver=False)
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield Cache(client, settings.get("service_plugin_cache") or tmp_path)
    state.close()


@pytest.fixture
def cache(env: ForgeEnv, tmp_path: Path) -> Iterator[Cache]:
    yield from start(
        tmp_path,
        env,
        service_plugin_cache=tmp_path / "plugin-envs",
        service_plugin_env_max_bytes=64 * 1024,
    )


@LOCAL
def test_an_entry_is_uploaded_once_verified_and_streamed_back(cache: Cache, tmp_path: Path) -> None:
    entry = key()
    assert cache.get(entry).status_code == 404
    data = archive(tmp_path)
    stored = cache.put(entry, data)
    assert stored.status_code == 201, stored.text
    assert stored.json()["stored"] is True
    got = cache.get(entry)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["X-Entry-Sha256"] == hashlib.sha256(data).hexdigest()
    assert int(got.headers["Content-Length"]) == len(data)

    other = archive(tmp_path, b"another build of the same plugin\n")
    again = cache.put(entry, other)
    assert again.status_code == 200, again.text
    assert again.json()["stored"] is False
    assert cache.get(entry).content == data, "a verified entry is never replaced"
    entries = sorted(p.name for p in (cache.root / "warehouse" / "v1" / "entries").iterdir())
    assert entries == [f"{entry.digest}.json", f"{entry.digest}.tar"]
    assert list((cache.root / "warehouse" / "v1" / "tmp").iterdir()) == [], "no upload left"


@LOCAL
def test_entries_are_per_project(cache: Cache, tmp_path: Path) -> None:
    """A write token of one project can neither place nor read another project's entry."""
    entry = key()
    data = archive(tmp_path)
    assert cache.put(entry, data, token=WRITER_B, project="another").status_code == 201
    assert cache.get(entry).status_code == 404, "project B's upload is not project A's entry"
    assert cache.put(entry, data, token=WRITER_B).status_code == 403
    assert cache.get(entry, token=WRITER_B).status_code == 403
    assert cache.put(entry, data, token=READER_A).status_code == 403, "reading is not filling"
    assert cache.leases(HOLDER_1, [entry], token=READER_A).status_code == 403
    assert cache.get(entry, token=WRITER_B, project="another").status_code == 200


def _tar(members: list[tuple[str, bytes, str]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@LOCAL
@pytest.mark.parametrize(
    "bad",
    [
        "sha256",
        "key",
        "dotdot",
        "through-a-link",
        "same-name",
        "dot-prefix",
        "not-a-tar",
        "too-large",
        "too-large-chunked",
    ],
)
def test_a_bad_upload_is_refused_and_stores_nothing(cache: Cache, tmp_path: Path, bad: str) -> None:
    entry = key()
    data = archive(tmp_path)
    if bad == "sha256":
        answer = cache.put(entry, data, sha256="0" * 64)
        assert answer.status_code == 422, answer.text
        assert "SHA-256" in answer.json()["detail"]
    elif bad == "key":
        answer = cache.put(entry, data, fingerprint="b" * 64)
        assert answer.status_code == 422, answer.text
        assert "digest of the fields" in answer.json()["detail"]
    elif bad in ("dotdot", "through-a-link", "same-name", "dot-prefix"):
        outside = tmp_path / "outside"
        members = {
            "dotdot": [("../../etc/evil", b"x", "")],
            "through-a-link": [("lib", b"", "/etc"), ("lib/evil", b"x", "")],
            # a file named as a link is opened through it; `./d` and `d` are one name
            "same-name": [("x", b"", str(outside / "same.txt")), ("x", b"x", "")],
            "dot-prefix": [("./d", b"", str(outside)), ("d/f", b"x", "")],
        }[bad]
        answer = cache.put(entry, _tar(members))
        assert answer.status_code == 422, answer.text
        assert "member" in answer.json()["detail"]
    elif bad == "not-a-tar":
        answer = cache.put(entry, b"\x00garbage" * 1000)
        assert answer.status_code == 422, answer.text
    else:
        big = b"x" * (64 * 1024 + 1)
        if bad == "too-large":
            answer = cache.put(entry, big)
        else:  # no Content-Length: counted as it streams
            params = {
                "plugin": "extractors/tap-a",
                "fingerprint": entry.fingerprint,
                "python": entry.python,
                "platform": entry.platform,
                "venv": entry.venv,
                "sha256": hashlib.sha256(big).hexdigest(),
            }
            answer = cache.client.put(
                cache.url("warehouse", entry.digest),
                params=params,
                content=iter([big[:40000], big[40000:]]),
                headers=_auth(WRITER_A),
            )
        assert answer.status_code == 413, answer.text
    assert cache.get(entry).status_code == 404
    assert list((cache.root / "warehouse" / "v1" / "tmp").iterdir()) == []


@pytest.fixture
def small_uploads(env: ForgeEnv, tmp_path: Path) -> Iterator[Cache]:
    yield from start(
        tmp_path,
        env,
        service_plugin_cache=tmp_path / "plugin-envs",
        service_plugin_env_max_bytes=64 * 1024,
        service_plugin_lease_seconds=1.5,
    )


@LOCAL
def test_uploads_past_the_setting_are_refused(small_uploads: Cache, tmp_path: Path) -> None:
    entry = key()
    assert small_uploads.put(entry, b"x" * (64 * 1024 + 1)).status_code == 413
    assert small_uploads.put(entry, archive(tmp_path)).status_code == 201, "under it is fine"


@LOCAL
def test_one_runner_gets_the_whole_plugin_set_and_the_others_wait_for_it(
    small_uploads: Cache, tmp_path: Path
) -> None:
    cache = small_uploads
    tap, target = key("a" * 64), key("b" * 64, VENV.replace("extractors/tap-a", "loaders/t"))
    first = cache.leases(HOLDER_1, [tap, target]).json()
    assert first["leases"] == {tap.digest: "granted", target.digest: "granted"}
    assert cache.leases(HOLDER_2, [target, tap]).json()["leases"] == {
        tap.digest: "held",
        target.digest: "held",
    }
    assert cache.leases(HOLDER_1, [tap]).json()["leases"] == {tap.digest: "granted"}, "renewed"

    answers: list[dict[str, Any]] = []
    waited: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        answers.append(cache.leases(HOLDER_2, [tap, target], wait=20).json())
        waited.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    assert cache.leases(HOLDER_1, [tap, target]).status_code == 200  # renews while installing
    assert cache.put(tap, archive(tmp_path)).status_code == 201
    waiter.join(30)
    assert answers[0]["leases"] == {tap.digest: "stored", target.digest: "held"}
    assert waited[0] < 15, "the waiter hears of the upload, not its deadline"


@LOCAL
def test_a_lease_ends_when_released_or_no_longer_renewed(
    small_uploads: Cache, tmp_path: Path
) -> None:
    cache = small_uploads
    tap = key()
    assert cache.leases(HOLDER_1, [tap]).json()["leases"] == {tap.digest: "granted"}
    released = cache.client.post(
        cache.url("warehouse", "leases/release"),
        json={"holder": HOLDER_1, "keys": [tap.digest]},
        headers=_auth(WRITER_A),
    )
    assert released.status_code == 204
    assert cache.leases(HOLDER_2, [tap]).json()["leases"] == {tap.digest: "granted"}
    # HOLDER_2 is killed: it renews no more, and its lease (1.5 s here) ends by itself.
    started = time.monotonic()
    answer = cache.leases(HOLDER_1, [tap], wait=20).json()
    assert answer["leases"] == {tap.digest: "granted"}
    assert 0.5 < time.monotonic() - started < 15


@LOCAL
def test_without_a_folder_the_service_holds_no_plugin_cache(env: ForgeEnv, tmp_path: Path) -> None:
    for cache in start(tmp_path, env):
        entry = key()
        answer = cache.get(entry)
        assert answer.status_code == 404
        assert "MELTANO_FORGE_SERVICE_PLUGIN_CACHE" in answer.json()["detail"]
        assert cache.leases(HOLDER_1, [entry]).status_code == 404
        assert cache.put(entry, archive(tmp_path)).status_code == 404


@contextlib.contextmanager
def runner_side(cache: Cache, token: str) -> Iterator[ServicePluginCache]:
    """The runner's view of the service's cache, through the real service adapter."""
    url = str(cache.client.base_url).rstrip("/")
    forge = open_forge(ForgeConfig(locate(f"{url}/v1/projects/warehouse"), token=SecretStr(token)))
    try:
        assert isinstance(forge, PluginEnvRemote)
        yield ServicePluginCache(forge)
    finally:
        forge.close()


def fake_env(folder: Path) -> Path:
    venv = folder / ".meltano" / "extractors" / "tap-a" / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "tap-a").write_text("#!/bin/sh\necho hi\n")
    (venv / "bin" / "tap-a").chmod(0o755)
    (venv / "lib").mkdir()
    (venv / "lib" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # several chunks
    return venv


@LOCAL
def test_a_runner_uploads_and_another_restores_through_the_adapter(
    env: ForgeEnv, tmp_path: Path
) -> None:
    for cache in start(tmp_path, env, service_plugin_cache=tmp_path / "plugin-envs"):
        with runner_side(cache, WRITER_A) as installer, runner_side(cache, READER_A) as restorer:
            venv = fake_env(tmp_path / "one")
            entry = key(venv=str(venv))
            assert installer.leases([entry.digest], 0.0) == {entry.digest: "granted"}
            assert restorer.leases([entry.digest], 0.0) is None, "a read token takes no lease"
            assert restorer.leasing is False
            assert installer.upload(entry, venv, "extractors/tap-a", None) == (
                "uploaded to the service"
            )
            original = (venv / "lib" / "big.bin").read_bytes()
            shutil.rmtree(venv)
            assert restorer.restore(entry, venv), "a read token restores"
            assert (venv / "lib" / "big.bin").read_bytes() == original
            assert os.readlink(venv / "bin" / "python") == sys.executable
            assert os.access(venv / "bin" / "tap-a", os.X_OK)
            assert not restorer.restore(key("c" * 64, str(venv)), venv), "none for that key"
            assert installer.upload(entry, venv, "extractors/tap-a", None) == (
                "the service had it already"
            )


@LOCAL
def test_a_runner_of_a_service_without_a_plugin_cache_installs_as_before(
    env: ForgeEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for cache in start(tmp_path, env):
        with runner_side(cache, WRITER_A) as runner:
            venv = tmp_path / "p" / ".meltano" / "extractors" / "tap-a" / "venv"
            entry = key(venv=str(venv))
            assert not runner.restore(entry, venv)
            with caplog.at_level(logging.INFO):
                assert runner.leases([entry.digest], 0.0) is None
            assert "the service holds no plugin cache: installing here" in caplog.text
            assert runner.leasing is False


FUZZ = schemathesis.openapi.from_path(Path(__file__).resolve().parents[2] / "openapi.yaml")
FUZZ.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@pytest.mark.slow
@LOCAL
@FUZZ.include(path_regex="plugin-envs").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_plugin_cache_routes_under_generated_input(
    case: schemathesis.Case[Any], cache: Cache
) -> None:
    """With the cache on (the shared fuzz test sees it off): valid and invalid keys,
    fields, bodies and lease requests never make a 5xx, and answers match their schema."""
    case.path_parameters = {**(case.path_parameters or {}), "project": "warehouse"}
    wait = case.body.get("wait") if isinstance(case.body, dict) else None
    if isinstance(case.body, dict) and isinstance(wait, (int, float)):
        case.body["wait"] = min(wait, 0.5)  # a long poll is not what is fuzzed
    url = str(cache.client.base_url).rstrip("/")
    case.call_and_validate(
        base_url=url,
        headers=_auth(WRITER_A),
        checks=[not_a_server_error, response_schema_conformance],
        timeout=30,
    )


@LOCAL
def test_each_project_keeps_its_own_least_recently_used_bound(
    env: ForgeEnv, tmp_path: Path
) -> None:
    payloads = [os.urandom(100_000) for _ in range(4)]
    archives = [archive(tmp_path, p) for p in payloads]
    bound = int(len(archives[0]) * 2.5)  # room for two entries a project
    for cache in start(
        tmp_path,
        env,
        service_plugin_cache=tmp_path / "plugin-envs",
        service_plugin_cache_max_bytes=bound,
    ):
        a, b, c, other = (key(f"{i}" * 64) for i in "abcd")
        assert cache.put(other, archives[3], token=WRITER_B, project="another").status_code == 201
        assert cache.put(a, archives[0]).status_code == 201
        assert cache.put(b, archives[1]).status_code == 201
        assert cache.get(a).status_code == 200, "a is now the most recently used"
        assert cache.put(c, archives[2]).status_code == 201
        assert cache.get(b).status_code == 404, "b was the least recently used"
        assert cache.get(a).status_code == 200
        assert cache.get(c).status_code == 200
        kept = cache.get(other, token=WRITER_B, project="another")
        assert kept.status_code == 200, "another project's entries are not evicted for it"


@LOCAL
def test_a_restored_entry_has_no_setuid_bits_and_no_foreign_owner(
    env: ForgeEnv, tmp_path: Path
) -> None:
    """The service stores what a write token uploads; the runner that restores it clears
    setuid, setgid and sticky bits and owns the files itself (as root: no setuid-root
    file from an upload)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("bin/tool")
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o6755, 0, 0, "root", "root"
        if os.getuid() == 0:
            info.uid = info.gid = 4242
            info.uname = info.gname = ""
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
        link = tarfile.TarInfo("bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, sys.executable
        tar.addfile(link)
    data = buffer.getvalue()
    for cache in start(tmp_path, env, service_plugin_cache=tmp_path / "plugin-envs"):
        venv = tmp_path / "r" / ".meltano" / "extractors" / "tap-a" / "venv"
        entry = key(venv=str(venv))
        assert cache.put(entry, data).status_code == 201
        with runner_side(cache, READER_A) as restorer:
            assert restorer.restore(entry, venv)
        tool = (venv / "bin" / "tool").stat()
        assert oct(tool.st_mode & 0o7777) == oct(0o755)
        assert (tool.st_uid, tool.st_gid) == (os.getuid(), os.getgid())
        assert os.readlink(venv / "bin" / "python") == sys.executable, "absolute links stay"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_renewed_no_longer_than_its_maximum_age(tmp_path: Path) -> None:
    """A holder asking again and again renews its lease only until `max_age` after the
    first grant: then it hears `held`, renews nothing, and once its lease lapses another
    runner takes it (so a write token cannot keep cold runners waiting forever)."""
    from service.plugin_envs import LEASE_MAX_AGE, LeaseState, PluginEnvs

    assert LEASE_MAX_AGE == 1800.0
    clock = Clock()
    store = PluginEnvs(tmp_path / "plugin-envs", 1 << 20, 60.0, max_age=300.0, clock=clock)
    tap = key().digest
    granted = {tap: LeaseState.GRANTED}
    held = {tap: LeaseState.HELD}
    assert store.leases("warehouse", HOLDER_1, [tap]).states == granted
    for _ in range(5):  # renewed every 50 s: 250 s after the first grant
        clock.now += 50.0
        assert store.leases("warehouse", HOLDER_1, [tap]).states == granted
        assert store.leases("warehouse", HOLDER_2, [tap]).states == held
    clock.now += 50.0  # 300 s: the last renewal, to 360 s
    assert store.leases("warehouse", HOLDER_1, [tap]).states == granted
    clock.now += 1.0  # 301 s: past the maximum age
    assert store.leases("warehouse", HOLDER_1, [tap]).states == held, "renewal refused"
    assert not store.peek("warehouse", HOLDER_1, [tap]), "nothing for its holder to act on"
    assert store.leases("warehouse", HOLDER_2, [tap]).states == held, "until it lapses"
    clock.now += 59.5  # 360.5 s: its last renewal has lapsed
    assert store.peek("warehouse", HOLDER_2, [tap])
    assert store.leases("warehouse", HOLDER_1, [tap]).states == held
    assert store.leases("warehouse", HOLDER_2, [tap]).states == granted, "another takes it"
    assert store.leases("warehouse", HOLDER_1, [tap]).states == held
    clock.now += 250.0  # the new holder's own age counts from its own grant
    assert store.leases("warehouse", HOLDER_2, [tap]).states == granted
