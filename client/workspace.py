"""A workspace: a project folder materialized from a pinned commit, its manifest, its forge.

The folder is often a volume or a mount point and the process's cwd, so it is never
removed, renamed or re-created: its inode, mode, owner and mount stay. Every update
(materialize, pull, checkout, restore) is planned against the folder first, staged inside
`.meltano-forge/`, recorded in the manifest, and only then published, file by file, with a
rename each; a process killed at any point leaves a manifest the next command finishes.
Files meltano-forge did not write (`.meltano/`, `.env`, a user's scratch files) are never
touched, and a tracked file is removed only while it is as meltano-forge left it.

Status walks the folder against the manifest: size and mtime first, hashing only on doubt.
Only contents and the execute bit count; Meltano's 0600 rewrites do not.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import posixpath
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from client.ignore import IgnoreRules
from client.manifest import (
    STATE_DIR,
    FileRecord,
    Manifest,
    PendingUpdate,
    PendingWrite,
)
from client.progress import Progress
from client.staging import Staged, blob_sha, clear_stale, stage, staging_folder
from providers.contract import FileChange, FileMode, Forge
from providers.errors import (
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    Unavailable,
    UnsafeInput,
)
from providers.safety import Limits, check_links

if TYPE_CHECKING:  # merge3, the diff module and the .git mirror (dulwich) load when used:
    from client.patch import FileDiff  # a runner's start-up needs none of them


class PullConflict(Exception):
    """Upstream and local edits to the same files could not be merged, or files that
    meltano-forge does not track stand where the branch has files; nothing changed."""

    def __init__(self, paths: Sequence[str], in_the_way: Sequence[str] = ()) -> None:
        self.paths = tuple(sorted({*paths, *in_the_way}))
        if paths:
            reason = (
                f"Both you and the branch changed {_listed(paths)} and they do not merge "
                "cleanly; nothing was changed"
            )
            instruction = (
                "Commit your changes first (they go to a side branch if they conflict), "
                "or discard them (checkout --discard)"
            )
        else:
            reason = (
                f"{_listed(in_the_way)} already exist{'s' if len(in_the_way) == 1 else ''} "
                "here but not in the workspace, and the branch has files there; nothing "
                "was changed"
            )
            instruction = "Move them out of the way, or use another folder"
        super().__init__(f"{reason}. {instruction}.")


def _listed(paths: Sequence[str]) -> str:
    shown = sorted(paths)
    return ", ".join(shown[:10]) + (f" and {len(shown) - 10} more" if len(shown) > 10 else "")


class Local(enum.Enum):
    """What an update does with uncommitted changes."""

    KEEP = "keep"
    """Keep them; merge three ways where the branch changed the same file."""
    DISCARD = "discard"
    """Replace them with the branch's version."""
    REFUSE = "refuse"
    """Refuse the update when there are any."""


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


@dataclass
class Update:
    """What an update did."""

    sha: str
    written: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)


def uncommitted(paths: Sequence[str]) -> InvalidRequest:
    """The refusal to switch or overwrite while there are uncommitted changes."""
    shown = ", ".join(paths[:5]) + (" …" if len(paths) > 5 else "")
    return InvalidRequest(
        f"{len(paths)} uncommitted change{'s' if len(paths) > 1 else ''} ({shown})",
        "Commit them, or pass --discard or --carry",
    )


def merge_text(base: bytes | None, ours: bytes | None, theirs: bytes | None) -> bytes | None:
    """A clean three-way merge of text, or None when it conflicts or is not text."""
    if ours == theirs:
        return ours
    if ours is None or theirs is None or b"\x00" in ours + theirs + (base or b""):
        return None
    import merge3

    m = merge3.Merge3(
        (base or b"").splitlines(True), ours.splitlines(True), theirs.splitlines(True)
    )
    if any(region[0] == "conflict" for region in m.merge_regions()):
        return None
    return b"".join(m.merge_lines())


def read_local(root: Path, rel: str) -> tuple[bytes, FileMode]:
    """A workspace file's bytes (a symlink's target) and mode."""
    path = root / rel
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        return os.readlink(path).encode("utf-8", "surrogateescape"), FileMode.SYMLINK
    mode = FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    return path.read_bytes(), mode


RACY_NS = 200_000_000
"""A folder changed this close (in ns) to the walk that listed it is listed again next
time: a change in the same clock tick would not move its mtime (git's racy rule)."""
WALKS_FILE = "walk.json"


def _tracked_key(files: dict[str, FileRecord]) -> list[int]:
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


def _through(rel: str, links: set[str]) -> bool:
    """Whether a folder on `rel`'s way is a symlink (its file is then not ours)."""
    folder = posixpath.dirname(rel)
    while folder:
        if folder in links:
            return True
        folder = posixpath.dirname(folder)
    return False


def _holds_tracked(files: dict[str, FileRecord], folder: str) -> bool:
    """Whether a tracked file lives under `folder` (an ignored folder is still walked
    then: git never ignores tracked files)."""
    prefix = folder + "/"
    return any(rel.startswith(prefix) for rel in files)


def _disk_mode(info: os.stat_result) -> FileMode | None:
    if stat.S_ISLNK(info.st_mode):
        return FileMode.SYMLINK
    if stat.S_ISREG(info.st_mode):
        return FileMode.EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.REGULAR
    return None


class Workspace:
    """A project folder, its manifest and its forge."""

    def __init__(
        self,
        root: Path,
        forge: Forge | Callable[[], Forge],
        manifest: Manifest | None,
        limits: Limits | None = None,
    ) -> None:
        self.root = root
        self._opened = forge if isinstance(forge, Forge) else None
        self._factory = forge
        self._manifest = manifest
        self.limits = limits or Limits()
        self._folders: set[str] = {""}
        self._walks: WalkCache | None = None
        self.git_remote: str | None = None
        """When set, a `.git` (see `git_mirror`) follows every change of the manifest."""

    @property
    def forge(self) -> Forge:
        """The repository's adapter (opened on first use: status needs none)."""
        if self._opened is None:
            assert not isinstance(self._factory, Forge)  # noqa: S101
            self._opened = self._factory()
        return self._opened

    @classmethod
    def open(
        cls,
        root: Path,
        forge: Forge | Callable[[], Forge],
        limits: Limits | None = None,
        git_remote: str | None = None,
    ) -> Workspace:
        """The workspace at `root` (materialized or not), with any update a killed process
        left half-published finished first. `forge` may be a factory: a workspace that only
        reads its own folder opens none. `git_remote` turns on the `.git` mirror."""
        root = root.resolve()
        workspace = cls(root, forge, Manifest.load(root), limits)
        workspace.git_remote = git_remote
        manifest = workspace._manifest
        if manifest is not None and manifest.pending is not None:
            workspace._finish(manifest.pending)
        clear_stale(root)
        return workspace

    @property
    def materialized(self) -> bool:
        """True once the folder holds a snapshot."""
        return self._manifest is not None

    @property
    def manifest(self) -> Manifest:
        """The manifest; `InvalidRequest` when the folder was never materialized."""
        if self._manifest is None:
            msg = f"{self.root} is not a meltano-forge workspace"
            raise InvalidRequest(msg, "Run `meltano-forge pull` in the folder first")
        return self._manifest

    # ---- status ------------------------------------------------------------------------
    def status(self) -> Status:
        """Changes on disk against the manifest (stat fast path, hash on doubt).

        Like git with its index: one `lstat` per tracked file, compared with the size,
        mtime and mode the manifest recorded, and a read only on doubt. Untracked files
        come from one walk of the folders (entry types from `scandir`, no stat), which
        reads `.gitignore` files as it enters their folder and goes into ignored folders
        only where tracked files live."""
        manifest = self.manifest
        files = manifest.files
        root = str(self.root)
        result = Status()
        links, untracked = self._walk(files)
        changes = result.changes
        with _Folders(root) as folders:
            lstat = folders.lstat
            for rel, record in files.items():
                if links and _through(rel, links):
                    changes.append(LocalChange(rel, "deleted", None, record.file_mode))
                    continue
                try:
                    info = lstat(rel)
                except (FileNotFoundError, NotADirectoryError):
                    changes.append(LocalChange(rel, "deleted", None, record.file_mode))
                    continue
                st_mode = info.st_mode
                kind = st_mode & 0o170000
                if kind == 0o100000:
                    mode = 0o100755 if st_mode & 0o100 else 0o100644
                elif kind == 0o120000:
                    mode = 0o120000
                elif kind == 0o040000:  # a folder now stands there: the file is gone
                    changes.append(LocalChange(rel, "deleted", None, record.file_mode))
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
        fresh = self._full_walk(files, key)
        self._walks = fresh
        fresh.save(self.root)
        return set(fresh.links), [
            (rel, os.lstat(os.path.join(self.root, rel))) for rel in fresh.untracked
        ]

    def _full_walk(self, files: dict[str, FileRecord], key: list[int]) -> WalkCache:
        """One walk of the folders: entry types from `scandir` (no stat), `.gitignore`
        files read as the walk enters their folder, ignored folders entered only where
        tracked files live."""
        root = self.root
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

    def _present(self, rel: str) -> bool:
        """The tracked file is on disk as a file or link, reached through real folders."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            if os.path.islink(os.path.join(self.root, *parts[:i])):
                return False  # its folder was replaced by a link: the file is not ours
        try:
            info = os.lstat(os.path.join(self.root, rel))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return _disk_mode(info) is not None

    def _compare(
        self, rel: str, record: FileRecord | None, result: Status, info: os.stat_result
    ) -> LocalChange | None:
        mode = _disk_mode(info)
        if mode is None:
            return None
        if record is None:
            return LocalChange(rel, "added", mode, None)
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
        return LocalChange(rel, "modified", mode, record.file_mode)

    def _unchanged(self, rel: str, record: FileRecord) -> bool:
        """The file is still as meltano-forge recorded it."""
        try:
            info = os.lstat(self.root / rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return self._compare(rel, record, Status(), info) is None

    def read(self, rel: str) -> tuple[bytes, FileMode]:
        """A workspace file's bytes and mode."""
        return read_local(self.root, rel)

    def change_set(self, changes: Iterable[LocalChange]) -> list[FileChange]:
        """Provider change set (repository paths) for local changes."""
        manifest = self.manifest
        out = []
        for change in changes:
            path = manifest.repo_path(change.path)
            if change.kind == "deleted":
                out.append(FileChange.delete(path, change.base_mode or FileMode.REGULAR))
            else:
                data, mode = self.read(change.path)
                out.append(FileChange.put(path, data, mode, change.base_mode))
        return out

    def diffs(self, changes: Iterable[LocalChange], *, offline: bool = False) -> list[FileDiff]:
        """Each change's before and after. The before comes from the forge; `offline` (or a
        forge that cannot answer) leaves only its blob id, which binary patches need."""
        from client.patch import FileDiff, Side

        manifest = self.manifest
        out = []
        for change in changes:
            record = manifest.files.get(change.path)
            old = None
            if record is not None:
                data: bytes | None = None
                if not offline:
                    try:
                        data = self.forge.read_file(
                            manifest.base_sha, manifest.repo_path(change.path)
                        )
                    except (NotFound, Unavailable, RateLimited, PermissionDenied):
                        data = None
                old = Side(data, record.file_mode, record.sha)
            new = None if change.kind == "deleted" else Side.of(*self.read(change.path))
            out.append(FileDiff(change.path, old, new))
        return out

    def check_links_after(self, changes: Iterable[LocalChange]) -> None:
        """Refuse a commit that would leave a link pointing out of the project, through
        any chain of the workspace's links (the rule a pull applies to the same tree)."""
        manifest = self.manifest
        changed = {c.path: c for c in changes}
        links: dict[str, str] = {}
        for rel, record in manifest.files.items():
            if record.file_mode is FileMode.SYMLINK and rel not in changed:
                links[rel] = os.readlink(self.root / rel) if self._present(rel) else ""
        for rel, change in changed.items():
            if change.kind != "deleted" and change.mode is FileMode.SYMLINK:
                links[rel] = os.readlink(self.root / rel)
        check_links({rel: target for rel, target in links.items() if target})

    def record_committed(self, changes: Iterable[LocalChange], new_base: str) -> None:
        """After a commit that holds exactly `changes` on top of the workspace's base."""
        manifest = self.manifest
        for change in changes:
            if change.kind == "deleted":
                manifest.files.pop(change.path, None)
            else:
                data, mode = self.read(change.path)
                info = os.lstat(self.root / change.path)
                manifest.files[change.path] = FileRecord(
                    blob_sha(data), int(mode), info.st_size, info.st_mtime_ns
                )
        manifest.base_sha = new_base
        manifest.save(self.root)
        self._mirror()

    def _mirror(self) -> None:
        """Bring the `.git` (when asked for) in step with the manifest."""
        if self.git_remote is None or self._manifest is None:
            return
        from client.git_mirror import GitMirror

        unchanged = {
            rel for rel, record in self._manifest.files.items() if self._unchanged(rel, record)
        }
        GitMirror(self.root, self.forge, self.git_remote).sync(self._manifest, unchanged)

    # ---- updates -----------------------------------------------------------------------
    def update(
        self,
        branch: str,
        ref: str,
        *,
        repo: str = "",
        project_path: str = "",
        local: Local = Local.KEEP,
        progress: Progress | None = None,
        before_publish: Callable[[], object] | None = None,
    ) -> Update:
        """Bring the folder to the snapshot of `ref` (one archive request), as `branch`.

        The first update materializes; later ones pull or switch branch. Local changes
        are kept (merged three ways where the branch changed the same file), discarded, or
        refused (`Local`); conflicts raise `PullConflict` and change nothing.
        `before_publish` runs once everything is staged and checked, before the first
        file moves."""
        current = self._manifest
        made_root = not self.root.exists()
        if current is None:
            current = Manifest(repo, branch, "", project_path.strip("/"))
        changes = {c.path: c for c in self.status().changes} if self._manifest else {}
        if changes and local is Local.REFUSE:
            raise uncommitted(list(changes))
        prefix = current.project_path + "/" if current.project_path else ""

        def wanted(rel: str, sha: str, mode: FileMode) -> bool:
            record = current.files.get(rel)
            if record is None or record.sha != sha or record.mode != mode:
                return True
            return local is Local.DISCARD and rel in changes

        try:
            with self.forge.archive(ref, current.project_path) as snapshot:
                staged = stage(
                    self.root,
                    snapshot.sha,
                    snapshot.entries,
                    prefix=prefix,
                    limits=self.limits,
                    wanted=wanted,
                    progress=progress,
                )
            try:
                pending, result = self._plan(current, branch, staged, changes, local)
                staged.files.clear()  # planned: the pending update says the rest
                if before_publish is not None:  # e.g. create the branch, now all is checked
                    before_publish()
            except BaseException:
                staged.discard()
                raise
        except BaseException:
            if made_root:  # leave no trace of a folder this failed update created
                with contextlib.suppress(OSError):
                    self.root.rmdir()
            raise
        if self._manifest is None:
            self._manifest = current
        self._publish(pending)
        return result

    def _plan(
        self,
        current: Manifest,
        branch: str,
        staged: Staged,
        changes: dict[str, LocalChange],
        local: Local,
    ) -> tuple[PendingUpdate, Update]:
        pending = PendingUpdate(branch, staged.sha, str(staged.folder.relative_to(self.root)))
        result = Update(staged.sha)
        conflicts: list[str] = []
        in_the_way: list[str] = []
        leaving = set(current.files) - set(staged.files)
        with os.scandir(self.root) as listing:  # a fresh, empty folder: nothing in the way
            empty = not self._manifest and all(e.name == STATE_DIR for e in listing)
        for rel, new in staged.files.items():
            record = current.files.get(rel)
            upstream_changed = record is None or record.sha != new.sha or record.mode != new.mode
            change = changes.get(rel)
            if not upstream_changed and not (local is Local.DISCARD and change is not None):
                continue
            write = PendingWrite(new.sha, new.sha, int(new.mode), new.mtime_ns, new.size)
            if record is None and not (local is Local.DISCARD and change is not None):
                blocked = "" if empty else self._blocked(rel, leaving, new.sha, new.mode)
                if blocked == "same":
                    write.content_sha = new.sha  # already there: adopt it
                elif blocked:
                    in_the_way.append(rel)
                    continue
            elif change is not None and local is Local.KEEP:
                merged = self._merge(current, rel, change, staged)
                if merged is None:
                    conflicts.append(rel)
                    continue
                write.content_sha = blob_sha(merged)
                if write.content_sha != new.sha:
                    _replace_staged(staged, rel, merged)
                    write.staged_mtime_ns = 0  # the staged copy is no longer as written
                    result.merged.append(rel)
            pending.writes[rel] = write
            result.written.append(rel)
        for rel, record in current.files.items():
            if rel in staged.files:
                continue
            change = changes.get(rel)
            if change is None:
                pending.deletes[rel] = record
            elif local is Local.DISCARD or change.kind == "deleted":
                pending.deletes[rel] = None
            else:
                conflicts.append(rel)
                continue
            result.deleted.append(rel)
        if conflicts or in_the_way:
            raise PullConflict(conflicts, in_the_way)
        return pending, result

    def _blocked(self, rel: str, leaving: set[str], sha: str, mode: FileMode) -> str:
        """Whether something meltano-forge does not track stands where `rel` goes:
        '' (nothing, or only tracked files this update removes), 'same' (an identical
        file: adopt it), or 'other'."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            ancestor = "/".join(parts[:i])
            path = os.path.join(self.root, ancestor)
            if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                return "" if ancestor in leaving else "other"
        path = os.path.join(self.root, rel)
        if not os.path.lexists(path):
            return ""
        if os.path.isdir(path) and not os.path.islink(path):
            inside = {
                os.path.relpath(os.path.join(folder, name), self.root).replace(os.sep, "/")
                for folder, _, names in os.walk(path)
                for name in names
            }
            return "" if inside <= leaving else "other"
        data, disk_mode = read_local(self.root, rel)
        return "same" if disk_mode == mode and blob_sha(data) == sha else "other"

    def _merge(
        self, current: Manifest, rel: str, change: LocalChange, staged: Staged
    ) -> bytes | None:
        """Our edit merged with the branch's, or None when they conflict."""
        if change.kind != "modified":
            return None
        new = staged.files[rel]
        if new.mode is FileMode.SYMLINK or change.mode is FileMode.SYMLINK:
            return None
        assert new.staged is not None  # noqa: S101 - a changed file is always staged
        theirs = (staged.folder / new.staged).read_bytes()
        ours, _ = self.read(rel)
        if ours == theirs:  # e.g. our own commit, landed on a moved branch
            return ours
        try:
            base: bytes | None = self.forge.read_file(current.base_sha, current.repo_path(rel))
        except NotFound:
            base = None
        return merge_text(base, ours, theirs)

    def restore(self, paths: Iterable[str]) -> list[str]:
        """Put `paths` back as the branch's base holds them (their changes were saved on a
        side branch): modified and deleted files are read back, added ones removed."""
        manifest = self.manifest
        pending = PendingUpdate(
            manifest.branch,
            manifest.base_sha,
            str(staging_folder(self.root).relative_to(self.root)),
        )
        staging = self.root / pending.staging
        restored = []
        for rel in sorted(set(paths)):
            record = manifest.files.get(rel)
            if record is None:
                pending.deletes[rel] = None
            else:
                data = self.forge.read_file(manifest.base_sha, manifest.repo_path(rel))
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_bytes(data)
                pending.writes[rel] = PendingWrite(record.sha, blob_sha(data), record.mode)
            restored.append(rel)
        self._publish(pending)
        return restored

    # ---- publishing --------------------------------------------------------------------
    def _publish(self, pending: PendingUpdate) -> None:
        """Record the update, then move its files into place."""
        manifest = self.manifest
        manifest.pending = pending
        manifest.save(self.root)
        self._finish(pending)

    def _finish(self, pending: PendingUpdate) -> None:
        """Publish (or finish publishing) a recorded update: deletions first, so a file
        can become a folder, then one rename per file, then the manifest, last.

        A file this process staged moves with one rename and is recorded with the stat
        data taken when it was written; a file staged by a killed process (or merged, or
        restored) is checked on disk as before."""
        manifest = self.manifest
        files = manifest.files
        staging = self.root / pending.staging
        for rel, record in pending.deletes.items():
            path = self.root / rel
            if os.path.lexists(path) and (record is None or self._unchanged(rel, record)):
                os.unlink(path)
                self._prune(rel)
            files.pop(rel, None)
        root = str(self.root)
        source_root = str(staging)
        symlink = int(FileMode.SYMLINK)
        for rel, write in pending.writes.items():
            source = f"{source_root}/{rel}"
            mode = write.mode
            if write.staged_mtime_ns and mode != symlink:
                try:
                    self._place(rel, source, FileMode(mode))
                except FileNotFoundError:
                    pass  # not staged after all: look at the disk below
                else:
                    size = write.staged_size if write.content_sha == write.record_sha else -1
                    files[rel] = FileRecord(write.record_sha, mode, size, write.staged_mtime_ns)
                    continue
            elif os.path.lexists(source):
                self._place(rel, source, FileMode(mode))
            try:
                info = os.lstat(f"{root}/{rel}")
            except FileNotFoundError:  # removed by hand since: a local deletion
                files[rel] = FileRecord(write.record_sha, mode, -1, 0)
                continue
            size = info.st_size if write.content_sha == write.record_sha else -1
            files[rel] = FileRecord(write.record_sha, mode, size, info.st_mtime_ns)
        manifest.branch, manifest.base_sha, manifest.pending = pending.branch, pending.sha, None
        manifest.save(self.root)
        shutil.rmtree(staging, ignore_errors=True)
        self._mirror()

    def _place(self, rel: str, source: str | Path, mode: FileMode) -> None:
        """Rename a staged file into place, never through a symlinked folder."""
        folder = posixpath.dirname(rel)
        if folder not in self._folders:
            parts = folder.split("/")
            for i in range(1, len(parts) + 1):
                ancestor = os.path.join(self.root, *parts[:i])
                if os.path.islink(ancestor):
                    msg = f"{rel} would be written through the symlink {'/'.join(parts[:i])}"
                    raise UnsafeInput(msg, "Remove the link, or move it out of the way")
            os.makedirs(os.path.join(self.root, folder), exist_ok=True)
            self._folders.add(folder)
        target = f"{self.root}/{rel}"
        if mode is FileMode.SYMLINK:
            with open(source, "rb") as handle:
                link = handle.read().decode("utf-8", "surrogateescape")
            temporary = os.path.join(self.root, folder, f".{posixpath.basename(rel)}.mf-link")
            if os.path.lexists(temporary):
                os.unlink(temporary)
            os.symlink(link, temporary)
            os.replace(temporary, target)
            os.unlink(source)
            return
        os.chmod(source, 0o755 if mode is FileMode.EXECUTABLE else 0o644)
        os.replace(source, target)

    def _prune(self, rel: str) -> None:
        """Remove folders a deletion left empty (git does the same); never the root."""
        folder = posixpath.dirname(rel)
        while folder:
            try:
                os.rmdir(self.root / folder)
            except OSError:
                return
            self._folders.discard(folder)
            folder = posixpath.dirname(folder)


def _replace_staged(staged: Staged, rel: str, data: bytes) -> None:
    staged_file = staged.files[rel]
    assert staged_file.staged is not None  # noqa: S101
    path = staged.folder / staged_file.staged
    path.unlink()
    path.write_bytes(data)


__all__ = [
    "STATE_DIR",
    "Local",
    "LocalChange",
    "PullConflict",
    "Status",
    "Update",
    "Workspace",
    "merge_text",
    "read_local",
]
