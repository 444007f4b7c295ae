"""A workspace: a project folder materialized from a pinned commit, and its local changes.

Materializing streams the snapshot into a staging folder beside the project and moves it
into place with one rename, so a failed or hostile download leaves nothing half-written.
Status walks the folder against the manifest: size and mtime first, hashing only on doubt.
Only contents and the execute bit count; Meltano's 0600 rewrites do not.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from client.ignore import IgnoreRules
from client.manifest import STATE_DIR, FileRecord, Manifest
from client.progress import Progress
from providers.contract import ArchiveEntry, FileChange, FileMode, Forge
from providers.errors import InvalidRequest, UnsafeInput
from providers.gitobjects import blob_sha
from providers.names import check_repo_path


@dataclass(frozen=True)
class LocalChange:
    """A file that differs from the manifest."""

    path: str
    """Workspace-relative path."""
    kind: str
    """'added', 'modified' or 'deleted'."""
    mode: FileMode | None
    """Mode on disk (None when deleted)."""
    base_mode: FileMode | None
    """Mode in the manifest (None when added)."""


@dataclass
class Status:
    """The workspace's changes against its base commit."""

    changes: list[LocalChange] = field(default_factory=list)
    hashed: int = 0
    """How many files had to be read and hashed (the rest passed the stat fast path)."""

    @property
    def dirty(self) -> bool:
        """True when anything changed."""
        return bool(self.changes)


def read_local(root: Path, rel: str) -> tuple[bytes, FileMode]:
    """A workspace file's bytes (a symlink's target) and mode."""
    path = root / rel
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return os.readlink(path).encode(), FileMode.SYMLINK
    mode = FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    return path.read_bytes(), mode


def _record(path: Path, data: bytes, mode: FileMode) -> FileRecord:
    info = path.lstat()
    return FileRecord(blob_sha(data), int(mode), info.st_size, info.st_mtime_ns)


class Writer:
    """Writes files under one root, refusing to write through symlinks. It remembers the
    folders it made and the links it wrote, so a fresh materialization costs one open per
    file instead of a stat per ancestor."""

    def __init__(self, root: Path, *, fresh: bool = False) -> None:
        self.root = str(root)
        self.fresh = fresh
        self._folders: set[str] = {""}
        self._links: set[str] = set()

    def _parent(self, rel: str) -> None:
        folder = posixpath.dirname(rel)
        if folder in self._folders:
            return
        parts = folder.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix in self._links or (
                not self.fresh and os.path.islink(os.path.join(self.root, prefix))
            ):
                msg = f"{rel} would be written through the symlink {prefix}"
                raise UnsafeInput(msg)
        os.makedirs(os.path.join(self.root, folder), exist_ok=True)
        self._folders.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))

    def write(self, rel: str, data: bytes, mode: FileMode) -> FileRecord:
        """Write one file safely inside the root and return its manifest record."""
        check_repo_path(rel)
        self._parent(rel)
        target = os.path.join(self.root, rel)
        if not self.fresh and os.path.lexists(target):
            os.unlink(target)
        if mode is FileMode.SYMLINK:
            link = data.decode("utf-8", "surrogateescape")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
            if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
                msg = f"The symlink {rel} points outside the project: {link!r}"
                raise UnsafeInput(msg)
            os.symlink(link, target)
            self._links.add(rel)
            info = os.lstat(target)
        else:
            permissions = 0o755 if mode is FileMode.EXECUTABLE else 0o644
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permissions)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if os.fstat(fd).st_mode & 0o777 != permissions:
                    os.fchmod(fd, permissions)  # the umask took bits we need
                info = os.fstat(fd)
            finally:
                os.close(fd)
        return FileRecord(blob_sha(data), int(mode), info.st_size, info.st_mtime_ns)


def write_file(root: Path, rel: str, data: bytes, mode: FileMode) -> FileRecord:
    """Write one file safely inside `root` (an existing workspace) and return its record."""
    return Writer(root).write(rel, data, mode)


def materialize(
    forge: Forge,
    root: Path,
    repo: str,
    branch: str,
    sha: str,
    project_path: str = "",
    progress: Progress | None = None,
) -> Manifest:
    """Fetch `sha` (one archive request) into an empty or missing `root`, atomically."""
    root = root.resolve()
    if root.exists() and any(root.iterdir()):
        msg = f"{root} is not empty and holds no meltano-forge workspace"
        raise InvalidRequest(
            msg, "Materialize into an empty folder, or set MELTANO_FORGE_PROJECT_DIR"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.staging-", dir=root.parent))
    try:
        manifest = Manifest(repo, branch, sha, project_path)
        with forge.archive(sha, project_path) as snapshot:
            manifest.base_sha = snapshot.sha
            _extract(snapshot.entries, staging, manifest, progress)
        manifest.save(staging)
        if root.exists():
            root.rmdir()
        staging.rename(root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Manifest.load(root) or manifest


def _extract(
    entries: Iterable[ArchiveEntry], staging: Path, manifest: Manifest, progress: Progress | None
) -> None:
    writer = Writer(staging, fresh=True)
    prefix = manifest.project_path + "/" if manifest.project_path else ""
    for entry in entries:
        if not entry.path.startswith(prefix):
            continue
        rel = entry.path[len(prefix) :]
        if rel.split("/")[0] == STATE_DIR:
            msg = f"The repository holds {entry.path}, which meltano-forge keeps for itself"
            raise UnsafeInput(msg)
        if rel in manifest.files:
            msg = f"The archive holds {entry.path} twice"
            raise UnsafeInput(msg)
        manifest.files[rel] = writer.write(rel, entry.data, entry.mode)
        if progress is not None:
            progress.advance(len(entry.data))


def status(root: Path, manifest: Manifest) -> Status:
    """Changes on disk against the manifest (stat fast path, hash on doubt).

    One `scandir` per folder gives every entry's lstat, so an unchanged file costs no
    extra system call; `.gitignore` files are read as the walk enters their folder."""
    result = Status()
    rules = IgnoreRules(root)
    seen: set[str] = set()
    tracked_dirs = {posixpath.dirname(p) for p in manifest.files}
    tracked_dirs |= {
        d.rsplit("/", i)[0] for d in list(tracked_dirs) for i in range(1, d.count("/") + 1)
    }
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        with os.scandir(os.path.join(root, rel_dir) if rel_dir else root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
        if any(e.name == ".gitignore" for e in entries):
            rules.add(rel_dir)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                if rel in tracked_dirs or not rules.ignored(rel, is_dir=True):
                    pending.append(rel)
                continue
            record = manifest.files.get(rel)
            if record is None and rules.ignored(rel):
                continue
            seen.add(rel)
            change = _compare(root, rel, record, result, info)
            if change is not None:
                result.changes.append(change)
    for rel, record in manifest.files.items():
        if rel not in seen and not os.path.lexists(os.path.join(root, rel)):
            result.changes.append(LocalChange(rel, "deleted", None, record.file_mode))
    result.changes.sort(key=lambda c: c.path)
    return result


def _compare(
    root: Path, rel: str, record: FileRecord | None, result: Status, info: os.stat_result
) -> LocalChange | None:
    if stat.S_ISLNK(info.st_mode):
        mode = FileMode.SYMLINK
    elif stat.S_ISREG(info.st_mode):
        mode = FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    else:
        return None
    if record is None:
        return LocalChange(rel, "added", mode, None)
    if mode == record.mode and info.st_size == record.size and info.st_mtime_ns == record.mtime_ns:
        return None
    result.hashed += 1
    data, mode = read_local(root, rel)
    if blob_sha(data) == record.sha and mode == record.mode:
        return None
    return LocalChange(rel, "modified", mode, record.file_mode)


def change_set(root: Path, manifest: Manifest, changes: Iterable[LocalChange]) -> list[FileChange]:
    """Provider change set (repository paths) for local changes."""
    out = []
    for change in changes:
        path = manifest.repo_path(change.path)
        if change.kind == "deleted":
            out.append(FileChange.delete(path, change.base_mode or FileMode.REGULAR))
        else:
            data, mode = read_local(root, change.path)
            out.append(FileChange.put(path, data, mode, change.base_mode))
    return out


def record_committed(
    root: Path, manifest: Manifest, changes: Iterable[LocalChange], new_base: str
) -> None:
    """After a successful commit: the manifest now describes the disk at `new_base`."""
    for change in changes:
        if change.kind == "deleted":
            manifest.files.pop(change.path, None)
        else:
            data, mode = read_local(root, change.path)
            manifest.files[change.path] = _record(root / change.path, data, mode)
    manifest.base_sha = new_base
    manifest.save(root)
