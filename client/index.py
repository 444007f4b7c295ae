"""The index: what the workspace's folder holds against the manifest (the file system only).

Like git's index it answers "what changed" with one `lstat` per tracked file, compared with
the size, mtime and mode the manifest recorded, and a read only on doubt; untracked files
come from one walk of the folders, reused while no walked folder and no `.gitignore`
changed (git's untracked cache). Only contents and the execute bit count; Meltano's 0600
rewrites do not.

It also holds the one rule for a path's way: a file is ours only while every folder on its
way is a real folder, not a symlink or a file standing where a folder was.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from client.ignore import IgnoreRules
from client.manifest import STATE_DIR, FileRecord
from client.staging import blob_sha
from providers.contract import FileMode


class ChangeKind(enum.StrEnum):
    """How a file differs from the manifest (a `str`: it prints and compares as its word)."""

    ADDED = "added"
    MODIFIED = "modified"
    DELETED = "deleted"


@dataclass(frozen=True)
class LocalChange:
    """A file that differs from the manifest."""

    path: str
    """Workspace-relative path."""
    kind: ChangeKind
    """Added, modified or deleted."""
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


@dataclass(frozen=True)
class Standing:
    """What the folder holds where an update puts a file, for the plan to judge."""

    way: str | None = None
    """The first folder on the path's way that is a symlink or a file, if any."""
    here: frozenset[str] = frozenset()
    """What fills the place itself: a different file, or everything inside a folder there
    (files, links, empty folders; a folder counts as itself when it holds nothing)."""
    same: bool = False
    """An identical file already stands there (it is adopted, not written)."""

    def blocks(self, leaving: frozenset[str] | set[str]) -> bool:
        """Whether anything stands in the way that the update does not remove itself."""
        if self.way is not None:
            return self.way not in leaving
        return not self.here <= leaving


def read_local(root: Path, rel: str) -> tuple[bytes, FileMode]:
    """A workspace file's bytes (a symlink's target) and mode."""
    path = root / rel
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return os.readlink(path).encode("utf-8", "surrogateescape"), FileMode.SYMLINK
    mode = FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    return path.read_bytes(), mode


def disk_mode(info: os.stat_result) -> FileMode | None:
    """The git mode of what `lstat` found (None: a folder, FIFO or socket)."""
    if stat.S_ISLNK(info.st_mode):
        return FileMode.SYMLINK
    if stat.S_ISREG(info.st_mode):
        return FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    return None


def folders_of(rel: str) -> Iterator[str]:
    """The folders `rel` goes through, from the top: `a`, `a/b` for `a/b/c`."""
    end = rel.find("/")
    while end != -1:
        yield rel[:end]
        end = rel.find("/", end + 1)


def first_on_the_way(rel: str, not_a_folder: Callable[[str], bool]) -> str | None:
    """The first folder on `rel`'s way that `not_a_folder` says is a symlink or a file:
    the one rule for "is this path ours". A caller that walked the tree answers from its
    walk; the others ask the disk (`on_disk`)."""
    for folder in folders_of(rel):
        if not_a_folder(folder):
            return folder
    return None


def on_disk(root: Path | str) -> Callable[[str], bool]:
    """`not_a_folder` from `lstat`: something stands there and it is not a real folder (a
    missing folder is fine: publishing creates it)."""
    base = str(root)

    def not_a_folder(folder: str) -> bool:
        try:
            info = os.lstat(f"{base}/{folder}")
        except FileNotFoundError:
            return False
        return not stat.S_ISDIR(info.st_mode)

    return not_a_folder


def _inside(root: str, rel: str) -> Iterator[str]:
    """Everything under the folder `rel` that is not itself a folder, and every empty
    folder (a link to a folder is a link, never entered)."""
    with os.scandir(f"{root}/{rel}") as listing:
        entries = list(listing)
    if not entries:
        yield rel
    for entry in entries:
        path = f"{rel}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            yield from _inside(root, path)
        else:
            yield path


RACY_NS = 200_000_000
"""A folder changed this close (in ns) to the walk that listed it is listed again next
time: a change in the same clock tick would not move its mtime (git's racy rule)."""
WALKS_FILE = "walk.json"


def _tracked_key(files: Mapping[str, FileRecord]) -> list[int]:
    """Which files are tracked, in two numbers: a walk is only reused for the same set."""
    return [len(files), zlib.crc32("\0".join(files).encode("utf-8", "surrogateescape"))]


class WalkCache:
    """What the last walk of the folders found, and the stat data that vouch for it: the
    mtime of every folder it listed (a file added, removed or renamed in a folder moves
    its mtime) and the stat of every `.gitignore` it read."""

    __slots__ = ("folders", "ignores", "key", "links", "started", "untracked")

    def __init__(self, key: list[int], started: int) -> None:
        self.key = key
        self.started = started
        self.folders: dict[str, int] = {}
        self.ignores: dict[str, list[int]] = {}
        self.links: list[str] = []
        self.untracked: list[str] = []

    def folder(self, rel: str, info: os.stat_result) -> None:
        """A listed folder (a racy one never vouches: -1)."""
        racy = info.st_mtime_ns > self.started - RACY_NS
        self.folders[rel] = -1 if racy else info.st_mtime_ns

    def ignore_file(self, rel: str, info: os.stat_result) -> None:
        """A `.gitignore` that was read."""
        self.ignores[rel] = [info.st_size, info.st_mtime_ns, info.st_ino]

    def replay(self, root: Path) -> tuple[set[str], list[tuple[str, os.stat_result]]] | None:
        """The walk's findings if nothing it depends on changed, else None."""
        base = str(root)
        try:
            for rel, mtime_ns in self.folders.items():
                if os.stat(f"{base}/{rel}" if rel else base).st_mtime_ns != mtime_ns:
                    return None
            for rel, seen in self.ignores.items():
                info = os.stat(f"{base}/{rel}/.gitignore" if rel else f"{base}/.gitignore")
                if [info.st_size, info.st_mtime_ns, info.st_ino] != seen:
                    return None
            untracked = [(rel, os.lstat(f"{base}/{rel}")) for rel in self.untracked]
        except OSError:
            return None
        return set(self.links), untracked

    def save(self, root: Path) -> None:
        """Keep it for the next command (best effort: a read-only folder walks again)."""
        folder = root / STATE_DIR
        data = {
            "key": self.key,
            "started": self.started,
            "folders": self.folders,
            "ignores": self.ignores,
            "links": self.links,
            "untracked": self.untracked,
        }
        with contextlib.suppress(OSError):
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".walk.")
            try:
                with os.fdopen(fd, "w") as handle:
                    json.dump(data, handle)
                os.replace(tmp, folder / WALKS_FILE)
            except OSError:
                os.unlink(tmp)
                raise

    @classmethod
    def load(cls, root: Path) -> WalkCache | None:
        """The last walk, if one was kept."""
        try:
            data = json.loads((root / STATE_DIR / WALKS_FILE).read_text())
            walk = cls(list(data["key"]), int(data["started"]))
            walk.folders = {str(k): int(v) for k, v in data["folders"].items()}
            walk.ignores = {str(k): [int(x) for x in v] for k, v in data["ignores"].items()}
            walk.links = [str(x) for x in data["links"]]
            walk.untracked = [str(x) for x in data["untracked"]]
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return walk


class _Folders:
    """`lstat` of workspace paths through one descriptor per folder: the kernel then
    resolves one name per file, not the whole path (Linux; elsewhere, whole paths)."""

    FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY

    def __init__(self, root: str) -> None:
        self.root = root
        self.fds: dict[str, int] = {}
        if os.lstat not in os.supports_dir_fd or os.open not in os.supports_dir_fd:
            self.lstat = self._whole  # type: ignore[method-assign]

    def __enter__(self) -> _Folders:
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds.values():
            if fd >= 0:
                os.close(fd)

    def _whole(self, rel: str) -> os.stat_result:
        return os.lstat(f"{self.root}/{rel}")

    def lstat(self, rel: str) -> os.stat_result:
        """`os.lstat` of `root/rel` (a symlinked folder on the way is followed, as a
        whole path would be: callers check links themselves)."""
        folder, _, name = rel.rpartition("/")
        fd = self.fds.get(folder)
        if fd is None:
            try:
                fd = os.open(f"{self.root}/{folder}" if folder else self.root, self.FLAGS)
            except OSError:
                fd = -1  # missing, not a folder, or unreadable: whole paths say which
            self.fds[folder] = fd
        if fd < 0:
            return os.lstat(f"{self.root}/{rel}")
        return os.lstat(name, dir_fd=fd)


class Index:
    """The file-system side of a workspace: status, and what stands where files go."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._walks: WalkCache | None = None

    def status(self, files: dict[str, FileRecord]) -> Status:
        """Changes on disk against the manifest's `files` (stat fast path, hash on doubt).

        One `lstat` per tracked file, compared with the size, mtime and mode the manifest
        recorded, and a read only on doubt. Untracked files come from one walk of the
        folders (entry types from `scandir`, no stat), which reads `.gitignore` files as it
        enters their folder and goes into ignored folders only where tracked files live."""
        root = str(self.root)
        result = Status()
        links, untracked = self._walk(files)
        changes = result.changes
        deleted = ChangeKind.DELETED
        with _Folders(root) as folders:
            lstat = folders.lstat
            for rel, record in files.items():
                if links and first_on_the_way(rel, links.__contains__) is not None:
                    changes.append(LocalChange(rel, deleted, None, record.file_mode))
                    continue
                try:
                    info = lstat(rel)
                except (FileNotFoundError, NotADirectoryError):
                    changes.append(LocalChange(rel, deleted, None, record.file_mode))
                    continue
                st_mode = info.st_mode
                kind = st_mode & 0o170000
                if kind == 0o100000:
                    mode = 0o100755 if st_mode & 0o100 else 0o100644
                elif kind == 0o120000:
                    mode = 0o120000
                elif kind == 0o040000:  # a folder now stands there: the file is gone
                    changes.append(LocalChange(rel, deleted, None, record.file_mode))
                    continue
                else:  # a FIFO or socket: not a file git could track; not reported
                    continue
                if (
                    mode == record.mode
                    and info.st_size == record.size
                    and info.st_mtime_ns == record.mtime_ns
                ):
                    continue
                change = self._compare(rel, record, result, info)
                if change is not None:
                    changes.append(change)
        for rel, info in untracked:
            change = self._compare(rel, None, result, info)
            if change is not None:
                changes.append(change)
        changes.sort(key=lambda c: c.path)
        return result

    def _walk(
        self, files: dict[str, FileRecord]
    ) -> tuple[set[str], list[tuple[str, os.stat_result]]]:
        """Symlinks found where folders could be, and the untracked files git would not
        ignore (with their lstat): from the last walk while no walked folder and no
        `.gitignore` changed since (git's untracked cache), else from a new walk."""
        key = _tracked_key(files)
        cache = self._walks if self._walks is not None else WalkCache.load(self.root)
        if cache is not None and cache.key == key:
            found = cache.replay(self.root)
            if found is not None:
                self._walks = cache
                return found
        fresh = _full_walk(self.root, files, key)
        self._walks = fresh
        fresh.save(self.root)
        return set(fresh.links), [
            (rel, os.lstat(os.path.join(self.root, rel))) for rel in fresh.untracked
        ]

    def present(self, rel: str) -> bool:
        """The tracked file is on disk as a file or link, reached through real folders."""
        if first_on_the_way(rel, on_disk(self.root)) is not None:
            return False  # its folder was replaced by a link or a file: the file is not ours
        try:
            info = os.lstat(os.path.join(self.root, rel))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return disk_mode(info) is not None

    def unchanged(self, rel: str, record: FileRecord) -> bool:
        """The file is still as meltano-forge recorded it."""
        try:
            info = os.lstat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return self._compare(rel, record, Status(), info) is None

    def standing(self, rel: str, sha: str, mode: FileMode) -> Standing:
        """What stands where an update puts the file `rel` (blob `sha`, `mode`)."""
        way = first_on_the_way(rel, on_disk(self.root))
        if way is not None:
            return Standing(way=way)
        try:
            info = os.lstat(os.path.join(self.root, rel))
        except (FileNotFoundError, NotADirectoryError):
            return Standing()
        if stat.S_ISDIR(info.st_mode):
            return Standing(here=frozenset(_inside(str(self.root), rel)))
        data, disk = read_local(self.root, rel)
        if disk == mode and blob_sha(data) == sha:
            return Standing(same=True)
        return Standing(here=frozenset((rel,)))

    def _compare(
        self, rel: str, record: FileRecord | None, result: Status, info: os.stat_result
    ) -> LocalChange | None:
        mode = disk_mode(info)
        if mode is None:
            return None
        if record is None:
            return LocalChange(rel, ChangeKind.ADDED, mode, None)
        if (
            mode == record.mode
            and info.st_size == record.size
            and info.st_mtime_ns == record.mtime_ns
        ):
            return None
        result.hashed += 1
        data, mode = read_local(self.root, rel)
        if blob_sha(data) == record.sha and mode == record.mode:
            return None
        return LocalChange(rel, ChangeKind.MODIFIED, mode, record.file_mode)


def _full_walk(root: Path, files: Mapping[str, FileRecord], key: list[int]) -> WalkCache:
    """One walk of the folders: entry types from `scandir` (no stat), `.gitignore` files
    read as the walk enters their folder, ignored folders entered only where tracked files
    live (git never ignores tracked files)."""
    rules = IgnoreRules(root)
    walk = WalkCache(key, time.time_ns())
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        path = os.path.join(root, rel_dir) if rel_dir else str(root)
        try:
            info = os.stat(path)
            with os.scandir(path) as listing:
                entries = list(listing)  # any order: a folder's rules only match below it
        except NotADirectoryError:  # a tracked folder was replaced by a file or link
            continue
        walk.folder(rel_dir, info)
        if any(e.name == ".gitignore" for e in entries):
            rules.add(rel_dir)
            walk.ignore_file(rel_dir, os.stat(os.path.join(path, ".gitignore")))
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            if entry.is_dir(follow_symlinks=False):
                if not rules.ignored(rel, is_dir=True) or _holds_tracked(files, rel):
                    pending.append(rel)
                continue
            if entry.is_symlink():
                walk.links.append(rel)
            if rel in files or rules.ignored(rel):
                continue
            walk.untracked.append(rel)
    return walk


def _holds_tracked(files: Mapping[str, FileRecord], folder: str) -> bool:
    """Whether a tracked file lives under `folder` (an ignored folder is still walked
    then: git never ignores tracked files)."""
    prefix = folder + "/"
    return any(rel.startswith(prefix) for rel in files)


__all__ = [
    "ChangeKind",
    "Index",
    "LocalChange",
    "Standing",
    "Status",
    "first_on_the_way",
    "on_disk",
    "read_local",
]
