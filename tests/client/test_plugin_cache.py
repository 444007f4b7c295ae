"""The shared plugin environment cache on real files, real locks and real processes:
entries verified before use, one filler at a time even when a holder is SIGKILLed, a
read-only volume (a read-only bind mount) read but never written, least recently used
eviction, and nothing but the environment in an entry."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from client.plugin_cache import DEFAULT_MAX_BYTES, EntryKey, PluginCache
from client.plugin_envs import uncacheable
from client.plugins import Plugin

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-value-never-cached"


def fake_venv(project: Path, name: str, payload: bytes = b"x" * 1000) -> Path:
    """A folder laid out like a Meltano plugin environment, with a symlink to its base
    interpreter as a real one has, beside the things a cache must never take."""
    venv = project / ".meltano" / "extractors" / name / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / "site-packages").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / name).write_text("#!/bin/sh\necho hi\n")
    (venv / "bin" / name).chmod(0o755)
    (venv / "lib" / "site-packages" / "mod.py").write_bytes(payload)
    (venv / ".meltano_plugin_fingerprint").write_text("f" * 64)
    (project / ".env").write_text(f"TAP_PASSWORD={SECRET}\n")
    (project / ".meltano" / "run" / name).mkdir(parents=True, exist_ok=True)
    (project / ".meltano" / "run" / name / "tap.config.json").write_text(SECRET)
    (project / ".meltano" / "meltano.db").write_text(SECRET)
    return venv


def key_for(venv: Path, fingerprint: str = "f" * 64) -> EntryKey:
    return EntryKey(
        fingerprint, "cpython-3.11.7 /usr/bin/python3.11", "linux-x86_64 glibc", str(venv)
    )


def test_an_entry_round_trips_and_holds_only_the_environment(tmp_path: Path) -> None:
    cache = PluginCache(tmp_path / "cache")
    venv = fake_venv(tmp_path / "project", "tap-a")
    key = key_for(venv)
    manifest = cache.store(key, venv, "extractors/tap-a")
    assert manifest is not None
    archive = cache.entries / f"{key.digest}.tar"
    assert SECRET.encode() not in archive.read_bytes()
    assert SECRET.encode() not in (cache.entries / f"{key.digest}.json").read_bytes()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "bin/python" in names
    assert not [n for n in names if n.startswith(("/", "..")) or ".env" in n or "run/" in n]
    shutil.rmtree(venv)
    assert cache.restore(key, venv)
    assert (venv / "bin" / "python").is_symlink()
    assert os.readlink(venv / "bin" / "python") == sys.executable
    assert os.access(venv / "bin" / "tap-a", os.X_OK)
    assert (venv / "lib" / "site-packages" / "mod.py").read_bytes() == b"x" * 1000
    assert cache.store(key, venv, "extractors/tap-a") is None, "an entry is made once"


def test_an_entry_is_for_one_path(tmp_path: Path) -> None:
    """Virtualenvs are not relocatable: the same plugin at another path is another key."""
    cache = PluginCache(tmp_path / "cache")
    venv = fake_venv(tmp_path / "project", "tap-a")
    assert cache.store(key_for(venv), venv, "extractors/tap-a") is not None
    elsewhere = tmp_path / "other" / ".meltano" / "extractors" / "tap-a" / "venv"
    assert key_for(elsewhere).digest != key_for(venv).digest
    assert not cache.restore(key_for(elsewhere), elsewhere)
    assert not cache.restore(key_for(venv), elsewhere), "a key restores only to its own path"
    assert not elsewhere.exists()


@pytest.mark.parametrize("damage", ["flipped", "truncated", "missing"])
def test_a_corrupt_entry_is_never_used_and_is_replaced(tmp_path: Path, damage: str) -> None:
    cache = PluginCache(tmp_path / "cache")
    venv = fake_venv(tmp_path / "project", "tap-a", payload=os.urandom(200_000))
    key = key_for(venv)
    assert cache.store(key, venv, "extractors/tap-a") is not None
    archive = cache.entries / f"{key.digest}.tar"
    data = bytearray(archive.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0xFF
        archive.write_bytes(bytes(data))
    elif damage == "truncated":
        archive.write_bytes(bytes(data[: len(data) // 3]))
    else:
        archive.unlink()
    shutil.rmtree(venv)
    venv.mkdir(parents=True)
    (venv / "old").write_text("what was there before")
    assert not cache.restore(key, venv)
    assert (venv / "old").read_text() == "what was there before", "nothing half-restored"
    assert [p.name for p in venv.parent.iterdir()] == ["venv"], "no staging folder left"
    if damage != "missing":
        assert not (cache.entries / f"{key.digest}.json").exists(), "the bad entry is removed"
    shutil.rmtree(venv)
    venv = fake_venv(tmp_path / "project2", "tap-a")
    key = key_for(venv)
    assert cache.store(key, venv, "extractors/tap-a") is not None, "and can be made again"
    shutil.rmtree(venv)
    assert cache.restore(key, venv)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from client.plugin_cache import EntryKey, PluginCache
    cache = PluginCache(Path(sys.argv[1]))
    key = EntryKey("f" * 64, "py", "plat", sys.argv[2])
    with cache.claim([key]):
        print("held", flush=True)
        time.sleep(300)
    """
)


def test_a_lock_whose_holder_is_killed_is_free_at_once(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    venv = str(tmp_path / "p" / ".meltano" / "extractors" / "tap-a" / "venv")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(cache_dir), venv],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        cache = PluginCache(cache_dir)
        key = EntryKey("f" * 64, "py", "plat", venv)
        probe = subprocess.run(
            [sys.executable, "-c", _TRY_LOCK, str(cache.locks / f"{key.digest}.lock")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.stdout.strip() == "busy", "the live holder holds it"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        started = time.monotonic()
        with cache.claim([key]):
            waited = time.monotonic() - started
        assert waited < 2, f"a SIGKILLed holder's lock took {waited:.1f}s to free"
    finally:
        holder.kill()
        holder.communicate()


_TRY_LOCK = (
    "import fcntl, sys\n"
    "h = open(sys.argv[1], 'a')\n"
    "try:\n"
    "    fcntl.flock(h, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
    "    print('free')\n"
    "except BlockingIOError:\n"
    "    print('busy')\n"
)

FILLER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from client.plugin_cache import EntryKey, PluginCache
    cache_dir, project, counter = (Path(a) for a in sys.argv[1:4])
    venv = project / ".meltano" / "extractors" / "tap-a" / "venv"
    cache = PluginCache(cache_dir)
    key = EntryKey("f" * 64, "py", "plat", str(venv))
    if not cache.restore(key, venv):
        with cache.claim([key], "waiting"):
            if cache.restore(key, venv):
                print("restored after waiting")
            else:
                with counter.open("a") as c:
                    c.write("install\\n")
                time.sleep(1.5)  # an install takes a while
                (venv / "bin").mkdir(parents=True)
                (venv / "bin" / "tool").write_text("made once")
                cache.store(key, venv, "extractors/tap-a")
                print("installed")
    else:
        print("restored")
    """
)


def test_concurrent_runners_fill_an_entry_once(tmp_path: Path) -> None:
    """Runners in containers of their own restore into the same path; only one installs."""
    counter = tmp_path / "installs.log"
    project = tmp_path / "same-path-in-each-container"
    fillers = []
    for i in range(3):
        fillers.append(
            subprocess.Popen(
                [sys.executable, "-c", FILLER, str(tmp_path / "cache"), str(project), str(counter)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        if i == 0:
            time.sleep(0.3)
    results = [p.communicate(timeout=60) for p in fillers]
    assert [p.returncode for p in fillers] == [0, 0, 0], results
    assert counter.read_text().splitlines() == ["install"], results
    outcomes = sorted(out.strip() for out, _ in results)
    assert outcomes.count("installed") == 1, outcomes
    assert (project / ".meltano" / "extractors" / "tap-a" / "venv" / "bin" / "tool").exists()


def test_a_read_only_cache_volume_is_read_and_never_written(tmp_path: Path) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs unshare and root")
    cache_dir = tmp_path / "cache"
    cache = PluginCache(cache_dir)
    venv = fake_venv(tmp_path / "project", "tap-a")
    key = key_for(venv)
    assert cache.store(key, venv, "extractors/tap-a") is not None
    shutil.rmtree(venv)
    other = fake_venv(tmp_path / "project", "tap-b")
    before = sorted(p.name for p in cache.entries.iterdir())
    script = textwrap.dedent(
        f"""
        import json, shutil
        from pathlib import Path
        from client.plugin_cache import EntryKey, PluginCache
        from tests.client.test_plugin_cache import key_for
        cache = PluginCache(Path({str(cache_dir)!r}))
        venv, other = Path({str(venv)!r}), Path({str(other)!r})
        restored = cache.restore(key_for(venv), venv)
        with cache.claim([key_for(other)]):
            stored = cache.store(key_for(other, "e" * 64), other, "extractors/tap-b")
        print(json.dumps([cache.writable, restored, stored is None]))
        """
    )
    inner = f'mount --bind -o ro {cache_dir} {cache_dir} && {sys.executable} -c "$0"'
    result = subprocess.run(
        ["unshare", "-m", "sh", "-c", inner, script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[false, true, true]", result.stdout + result.stderr
    assert (venv / "bin" / "tap-a").exists(), "restored from the read-only volume"
    assert sorted(p.name for p in cache.entries.iterdir()) == before, "nothing written"


def test_least_recently_used_entries_go_past_the_bound(tmp_path: Path) -> None:
    assert DEFAULT_MAX_BYTES == 10 * 1024**3
    venvs = [fake_venv(tmp_path / f"p{i}", f"tap-{i}", os.urandom(100_000)) for i in range(4)]
    keys = [key_for(v) for v in venvs]
    cache = PluginCache(tmp_path / "cache")
    for i in range(3):
        stored = cache.store(keys[i], venvs[i], f"extractors/tap-{i}")
        assert stored is not None
        cache.max_bytes = int(stored.size * 3.5)  # room for three entries, not four
        old = time.time() - 100 + i
        os.utime(cache.entries / f"{keys[i].digest}.json", (old, old))
    shutil.rmtree(venvs[0])
    assert cache.restore(keys[0], venvs[0]), "tap-0 is now the most recently used"
    assert cache.store(keys[3], venvs[3], "extractors/tap-3") is not None
    kept = {k.digest for k in keys if cache.manifest(k) is not None}
    assert kept == {keys[0].digest, keys[2].digest, keys[3].digest}, "tap-1 was least recent"
    assert cache.size() <= cache.max_bytes


@pytest.mark.parametrize(
    ("pip_url", "why"),
    [
        ("tap-a==1.0", ""),
        ("git+https://user:ghp_abc@github.com/acme/tap-a.git@" + "a" * 40, "credentials"),
        ("tap-a --index-url https://me:pw@pypi.example.com/simple", "credentials"),
        ("git+https://github.com/acme/tap-a.git@${TOKEN}", "variable"),
        ("git+https://github.com/acme/tap-a.git@v1.0", "not a commit"),
        ("git+https://github.com/acme/tap-a.git@" + "a" * 40, ""),
    ],
)
def test_what_may_be_cached(pip_url: str, why: str) -> None:
    import shlex

    reason = uncacheable(Plugin("extractors", "tap-a", pip_url), shlex.split(pip_url), None)
    assert (why in reason) if why else reason == "", reason


@pytest.mark.parametrize(
    "shape",
    ["dotdot", "through-a-link", "absolute", "device", "same-name", "dot-prefix", "twice"],
)
def test_an_entry_that_would_write_outside_its_folder_is_refused(
    tmp_path: Path, shape: str
) -> None:
    """The manifest's SHA-256 proves an entry whole, not harmless: whoever can write the
    volume can write both. Members are checked as they are unpacked."""
    import hashlib
    import io
    import json
    from dataclasses import asdict

    from client.plugin_cache import FORMAT, Manifest

    outside = tmp_path / "outside"
    outside.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            data = b"" if kind != tarfile.REGTYPE else b"pwned"
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("bin/ok")
        if shape == "dotdot":
            add(f"../../../../{outside.relative_to('/')}/evil")
        elif shape == "through-a-link":
            add("lib", tarfile.SYMTYPE, str(outside))
            add("lib/evil")
        elif shape == "absolute":
            add(f"{outside}/evil")
        elif shape == "same-name":  # a file named as a link is opened through it
            add("x", tarfile.SYMTYPE, str(outside / "same.txt"))
            add("x")
        elif shape == "dot-prefix":  # `./d` and `d` are one name
            add("./d", tarfile.SYMTYPE, str(outside))
            add("d/f")
        elif shape == "twice":
            add("bin/ok")
        else:
            add("dev", tarfile.CHRTYPE)
    data = buffer.getvalue()
    cache = PluginCache(tmp_path / "cache")
    venv = tmp_path / "project" / ".meltano" / "extractors" / "tap-a" / "venv"
    key = key_for(venv)
    (cache.entries / f"{key.digest}.tar").write_bytes(data)
    manifest = Manifest(
        FORMAT, key.digest, hashlib.sha256(data).hexdigest(), len(data), "extractors/tap-a",
        key.fingerprint, key.python, key.platform, key.venv, time.time(),
    )  # fmt: skip
    (cache.entries / f"{key.digest}.json").write_text(json.dumps(asdict(manifest)))
    assert not cache.restore(key, venv)
    assert list(outside.iterdir()) == []
    assert not venv.exists()
    assert not (cache.entries / f"{key.digest}.json").exists(), "the bad entry is removed"


def _plant(cache: PluginCache, key: EntryKey, data: bytes) -> None:
    """An entry of `data` with a manifest that proves it whole (as a writer of the volume
    could make)."""
    import hashlib
    import json
    from dataclasses import asdict

    from client.plugin_cache import FORMAT, Manifest

    (cache.entries / f"{key.digest}.tar").write_bytes(data)
    manifest = Manifest(
        FORMAT, key.digest, hashlib.sha256(data).hexdigest(), len(data), "extractors/tap-a",
        key.fingerprint, key.python, key.platform, key.venv, time.time(),
    )  # fmt: skip
    (cache.entries / f"{key.digest}.json").write_text(json.dumps(asdict(manifest)))


def test_a_restore_clears_setuid_bits_and_keeps_no_owner(tmp_path: Path) -> None:
    """A member's setuid, setgid and sticky bits go (its exec bits stay), and whoever
    restores owns what it writes: as root, an entry can never make a setuid-root file."""
    import io

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode in (("bin/tool", 0o6755), ("share", 0o1777)):
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.uname, info.gname = mode, 4242, 4242, "", ""
            if name == "share":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"hi"))
    cache = PluginCache(tmp_path / "cache")
    venv = tmp_path / "project" / ".meltano" / "extractors" / "tap-a" / "venv"
    key = key_for(venv)
    _plant(cache, key, buffer.getvalue())
    assert cache.restore(key, venv)
    tool, share = (venv / "bin" / "tool").stat(), (venv / "share").stat()
    assert oct(tool.st_mode & 0o7777) == oct(0o755)
    assert oct(share.st_mode & 0o7777) == oct(0o777)
    assert (tool.st_uid, tool.st_gid) == (os.getuid(), os.getgid())
    assert (share.st_uid, share.st_gid) == (os.getuid(), os.getgid())


def test_a_real_virtualenv_with_absolute_links_round_trips(tmp_path: Path) -> None:
    """A virtualenv's `bin/python` links absolutely to its base interpreter: such link
    targets restore as they were, and the restored interpreter runs."""
    venv = tmp_path / "project" / ".meltano" / "extractors" / "tap-a" / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--symlinks", str(venv)], check=True
    )
    links = {p.relative_to(venv): os.readlink(p) for p in venv.rglob("*") if p.is_symlink()}
    assert any(Path(target).is_absolute() for target in links.values()), links
    cache = PluginCache(tmp_path / "cache")
    key = key_for(venv)
    assert cache.store(key, venv, "extractors/tap-a") is not None
    shutil.rmtree(venv)
    assert cache.restore(key, venv)
    assert {p.relative_to(venv): os.readlink(p) for p in venv.rglob("*") if p.is_symlink()} == (
        links
    )
    ran = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ran.stdout.strip() == str(venv)
