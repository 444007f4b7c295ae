"""Build and run the project's image without a Docker daemon.

podman builds the Dockerfile (chroot isolation, vfs storage) on a `python:3.11-slim` made
locally: a Debian bookworm rootfs from debootstrap (bookworm's python3 is 3.11), imported
under that tag because no image registry is reachable. buildah runs commands in a working
container made from the image; chroot isolation shares the host's network, so servers on
127.0.0.1 in the test process are reachable from inside and the other way round.

The debootstrap output is kept as a tarball in CACHE_DIR, and the base image and the build's
layers stay in podman's store (/var/lib/containers), so only the first run pays for them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

CACHE_DIR = Path("/var/cache/meltano-forge-ci")
BASE_TAG = "python:3.11-slim"
IMAGE_TAG = "localhost/meltano-forge:test"
CONTEXT_LABEL = "org.meltano-forge.test.context"
TOOLS = ("podman", "buildah", "debootstrap")
SUITE = "bookworm"
DEBOOTSTRAP = ("--variant=minbase", "--include=python3,python3-venv,ca-certificates")
# What python:3.11-slim sets and an imported rootfs lacks; without PATH, the Dockerfile's
# `ENV PATH=...:$PATH` would leave /usr/bin out.
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
)
STORAGE = ("--storage-driver=vfs",)
# pip inside the build reaches PyPI the way the host does: same CAs, same pip configuration.
HOST_FILES = ("/etc/ssl/certs", "/etc/pip.conf")
# Never part of the build context: virtualenvs, caches, build output, local databases.
SKIP_TOP = {
    ".git",
    ".venv",
    ".venv-meltano",
    ".demo",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "build",
    "dist",
}
SKIP_ANYWHERE = ("__pycache__", "*.pyc", "*.egg-info", "*.db")
BUILD_TIMEOUT = 3600


class ImageError(RuntimeError):
    """A step of making or running the image failed; the message holds its output."""


def _run(args: Sequence[str], timeout: float = 600, env: Mapping[str, str] | None = None) -> str:
    """Run a host command; raise ImageError with its output when it fails."""
    result = subprocess.run(
        list(args), capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise ImageError(f"{' '.join(args[:4])} ... exited {result.returncode}:\n{tail}")
    return str(result.stdout)


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def unavailable() -> str | None:
    """Why the image cannot be built here, or None. Installs missing tools when it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "building the image needs Linux (podman, buildah, debootstrap)"
    missing = missing_tools()
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", *TOOLS]
        quiet = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for attempt in ([], [["apt-get", "update", "-q"]]):
            with contextlib.suppress(ImageError, OSError, subprocess.TimeoutExpired):
                for command in [*attempt, install]:
                    _run(command, timeout=900, env=quiet)
            if not missing_tools():
                break
        missing = missing_tools()
    if missing:
        return f"{', '.join(missing)} missing and cannot be installed (needs root and apt-get)"
    if os.geteuid() != 0:
        return "building needs root: chroot isolation and the vfs store in /var/lib/containers"
    return None


def debian_mirror() -> str:
    """The Debian mirror apt uses for SUITE (deb822 or one-line sources)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file() or path.suffix not in ("", ".list", ".sources"):
            continue
        text = path.read_text(errors="replace")
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:(.*)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for match in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.MULTILINE):
            if match.group(2) == SUITE:
                return match.group(1)
    return "http://deb.debian.org/debian"


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """One builder at a time on this machine (parallel test runs share the store)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with (CACHE_DIR / "image.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def unmount_under(folder: Path) -> None:
    """Unmount what a killed debootstrap left mounted in its target (/proc, /sys), deepest
    first, so that removing the folder never walks into them."""
    prefix = str(folder.resolve()) + "/"
    points = [
        line.split()[1].replace("\\040", " ")
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if len(line.split()) > 1
    ]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def base_tarball() -> Path:
    """The bookworm rootfs as a tarball, made by debootstrap once and then reused."""
    recipe = " ".join((SUITE, *DEBOOTSTRAP, "python->python3", "no-apt-cache"))
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    tarball = CACHE_DIR / f"{SUITE}-minbase-python3-{key}.tar"
    if tarball.exists():
        return tarball
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs.") as work:
        rootfs = Path(work) / "rootfs"
        try:
            _run(["debootstrap", *DEBOOTSTRAP, SUITE, str(rootfs), debian_mirror()], timeout=1800)
        finally:
            unmount_under(Path(work))
        (rootfs / "usr" / "bin" / "python").symlink_to("python3")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / leftover).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = Path(work) / "rootfs.tar"
        _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."])
        partial.replace(tarball)
    return tarball


def image_exists(tag: str) -> bool:
    found = subprocess.run(
        ["podman", *STORAGE, "image", "exists", tag], capture_output=True, check=False
    )
    return found.returncode == 0


def ensure_base_image() -> None:
    """`python:3.11-slim` in podman's store: kept from earlier runs, or imported."""
    if image_exists(BASE_TAG):
        return
    changes = [arg for change in BASE_CHANGES for arg in ("--change", change)]
    _run(["podman", *STORAGE, "import", *changes, str(base_tarball()), BASE_TAG])


def stage_context(root: Path, into: Path) -> Path:
    """The build context as a fresh clone has it, without virtualenvs, caches or bytecode:
    `__pycache__` churn would otherwise defeat the layer cache."""
    top = root.resolve()

    def skip(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if any(Path(n).match(p) for p in SKIP_ANYWHERE)}
        if Path(folder).resolve() == top:
            skipped |= SKIP_TOP & set(names)
        return skipped

    context = into / "context"
    shutil.copytree(root, context, ignore=skip, symlinks=True)
    return context


def image_id(tag: str) -> str | None:
    found = subprocess.run(
        ["podman", *STORAGE, "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() if found.returncode == 0 else None


def image_config(tag: str) -> dict[str, object]:
    """The image's OCI configuration (User, Entrypoint, WorkingDir, ...)."""
    data = json.loads(_run(["podman", *STORAGE, "image", "inspect", tag]))
    return dict(data[0]["Config"])


def image_label(tag: str, label: str) -> str:
    """A label of the image, or "" when the image or the label is missing."""
    with contextlib.suppress(ImageError):
        labels = image_config(tag).get("Labels")
        if isinstance(labels, dict):
            return str(labels.get(label, ""))
    return ""


def copied_sources(dockerfile: str) -> list[str]:
    """The context paths the Dockerfile's COPY and ADD instructions read."""
    sources: list[str] = []
    joined = re.sub(r"\\\n", " ", dockerfile)
    for line in joined.splitlines():
        words = line.strip().split(maxsplit=1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        while rest.startswith("--"):  # --chown=..., --from=...
            rest = rest.split(maxsplit=1)[1] if " " in rest else ""
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        sources.extend(str(arg) for arg in args[:-1])
    return sources


def context_digest(context: Path, base: str) -> str:
    """What the build's result depends on: the Dockerfile, the files it copies from the
    context, and the base image."""
    digest = hashlib.sha256(base.encode())
    dockerfile = context / "Dockerfile"
    files = {dockerfile}
    for source in copied_sources(dockerfile.read_text()):
        source = source.strip("/") or "."
        for match in [context] if source == "." else context.glob(source):
            files |= {match} if not match.is_dir() else set(match.rglob("*"))
    for path in sorted(p for p in files if p.is_file() or p.is_symlink()):
        relative = path.relative_to(context).as_posix()
        body = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
        digest.update(f"{relative}\0{path.lstat().st_mode:o}\0{len(body)}\0".encode())
        digest.update(body)
    return digest.hexdigest()


@dataclass
class Build:
    tag: str
    seconds: float
    log: str
    reused: bool = False
    """The image was already built from this very context and base image."""


def build_image(root: Path, workdir: Path, tag: str = IMAGE_TAG) -> Build:
    """Build the repository's Dockerfile. podman's layer cache makes rebuilds cheap, and an
    image built from the same context and base image is reused as it is (with vfs storage
    even a fully cached build copies the rootfs once per instruction)."""
    with locked():
        ensure_base_image()
        context = stage_context(root, workdir)
        digest = context_digest(context, image_id(BASE_TAG) or "")
        if image_label(tag, CONTEXT_LABEL) == digest:
            return Build(tag, 0.0, f"{tag} is up to date ({digest[:12]})", reused=True)
        mounts = [
            arg for path in HOST_FILES if Path(path).exists() for arg in ("-v", f"{path}:{path}:ro")
        ]
        started = time.monotonic()
        log = _run(
            [
                "podman",
                *STORAGE,
                "build",
                "--isolation=chroot",
                "--pull=never",
                "--layers",
                *mounts,
                "--label",
                f"{CONTEXT_LABEL}={digest}",
                "-t",
                tag,
                "-f",
                str(context / "Dockerfile"),
                str(context),
            ],
            timeout=BUILD_TIMEOUT,
        )
        seconds = time.monotonic() - started
        # Under vfs every image holds a full copy of its rootfs: drop this test's earlier
        # images that no tag names any more (`rmi` would take the layer cache with them).
        with contextlib.suppress(ImageError, subprocess.TimeoutExpired):
            _run(["podman", *STORAGE, "image", "prune", "-f", "--filter", f"label={CONTEXT_LABEL}"])
    return Build(tag, seconds, log)


Volumes = Mapping[str, str]


class Container:
    """A buildah working container from an image; removed on exit."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.name = f"meltano-forge-test-{uuid.uuid4().hex[:12]}"

    def __enter__(self) -> Container:
        _run(["buildah", *STORAGE, "from", "--pull-never", "--name", self.name, self.image])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run(
            ["buildah", *STORAGE, "rm", self.name], capture_output=True, check=False, timeout=300
        )

    def command(
        self,
        args: Sequence[str],
        *,
        user: str | None = "10001:10001",
        env: Mapping[str, str] | None = None,
        volumes: Volumes | None = None,
    ) -> list[str]:
        """The `buildah run` command line; volumes map host paths to container paths
        (append `:ro` to the container path for read-only)."""
        line = ["buildah", *STORAGE, "run", "--isolation=chroot"]
        if user:
            line += ["--user", user]
        for key, value in (env or {}).items():
            line += ["-e", f"{key}={value}"]
        for host, inside in (volumes or {}).items():
            line += ["-v", f"{host}:{inside}"]
        return [*line, self.name, "--", *args]

    def run(
        self,
        args: Sequence[str],
        *,
        user: str | None = "10001:10001",
        env: Mapping[str, str] | None = None,
        volumes: Volumes | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the container and wait; never raises on its exit code."""
        return subprocess.run(
            self.command(args, user=user, env=env, volumes=volumes),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )

    @contextlib.contextmanager
    def background(
        self,
        args: Sequence[str],
        log: Path,
        *,
        user: str | None = "10001:10001",
        env: Mapping[str, str] | None = None,
        volumes: Volumes | None = None,
    ) -> Iterator[subprocess.Popen[bytes]]:
        """Run a command in the container in the background; stop it on exit. buildah
        passes SIGTERM on to the command; its process group is killed if that is not
        enough."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                self.command(args, user=user, env=env, volumes=volumes),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                yield process
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    try:
                        process.wait(30)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(process.pid, signal.SIGKILL)
                        process.wait(30)
