"""A workspace: a project folder materialized from a pinned commit, its manifest, its forge.

The folder is often a volume or a mount point and the process's cwd, so it is never
removed, renamed or re-created: its inode, mode, owner and mount stay. Every update
(materialize, pull, checkout, restore) is planned against the folder first, staged inside
`.meltano-forge/`, recorded in the manifest, and only then published, file by file, with a
rename each; a process killed at any point leaves a manifest the next command finishes.
Files meltano-forge did not write (`.meltano/`, `.env`, a user's scratch files) are never
touched, and a tracked file is removed only while it is as meltano-forge left it.

`Workspace` is the one object callers use. Behind it sit three rooms: the index (what the
folder holds against the manifest: `client.index`), the plan (what an update does, a pure
function: `client.plan`) and the journal (publishing, and finishing after a kill:
`client.journal`). This module holds only what needs the forge or all three.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from client import journal
from client.index import ChangeKind, Index, LocalChange, Standing, Status, read_local
from client.manifest import STATE_DIR, FileRecord, Manifest, PendingUpdate, PendingWrite
from client.plan import Local, PullConflict, Update, merge_text, plan_update, uncommitted
from client.progress import Progress
from client.staging import Staged, blob_sha, clear_stale, stage, staging_folder
from providers.contract import FileChange, FileMode, Forge
from providers.errors import InvalidRequest, NotFound, PermissionDenied, RateLimited, Unavailable
from providers.safety import Limits, check_links

if TYPE_CHECKING:  # merge3, the diff module and the .git mirror (dulwich) load when used:
    from client.patch import FileDiff  # a runner's start-up needs none of them


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
        self.index = Index(root)
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
        """Changes on disk against the manifest (stat fast path, hash on doubt)."""
        return self.index.status(self.manifest.files)

    def read(self, rel: str) -> tuple[bytes, FileMode]:
        """A workspace file's bytes and mode."""
        return read_local(self.root, rel)

    def change_set(self, changes: Iterable[LocalChange]) -> list[FileChange]:
        """Provider change set (repository paths) for local changes."""
        manifest = self.manifest
        out = []
        for change in changes:
            path = manifest.repo_path(change.path)
            if change.kind is ChangeKind.DELETED:
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
            new = None if change.kind is ChangeKind.DELETED else Side.of(*self.read(change.path))
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
                links[rel] = os.readlink(self.root / rel) if self.index.present(rel) else ""
        for rel, change in changed.items():
            if change.kind is not ChangeKind.DELETED and change.mode is FileMode.SYMLINK:
                links[rel] = os.readlink(self.root / rel)
        check_links({rel: target for rel, target in links.items() if target})

    def record_committed(self, changes: Iterable[LocalChange], new_base: str) -> None:
        """After a commit that holds exactly `changes` on top of the workspace's base."""
        manifest = self.manifest
        for change in changes:
            if change.kind is ChangeKind.DELETED:
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
            rel for rel, record in self._manifest.files.items() if self.index.unchanged(rel, record)
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
        """The plan, asking the index what stands in the way and the forge for merge bases;
        merged contents replace their staged copies."""
        with os.scandir(self.root) as listing:  # a fresh, empty folder: nothing in the way
            empty = not self._manifest and all(e.name == STATE_DIR for e in listing)
        into = PendingUpdate(branch, staged.sha, str(staged.folder.relative_to(self.root)))
        plan = plan_update(
            current.files,
            staged.files,
            changes,
            local,
            into,
            standing=(lambda *_: Standing()) if empty else self.index.standing,
            merge=lambda rel: self._merge(current, rel, staged),
        )
        for rel, data in plan.rewrites.items():
            _replace_staged(staged, rel, data)
        return plan.pending, plan.update

    def _merge(self, current: Manifest, rel: str, staged: Staged) -> bytes | None:
        """Our edit merged with the branch's staged copy, or None when they conflict."""
        new = staged.files[rel]
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
        """Record the update, then move its files into place (the journal)."""
        journal.publish(self.root, self.manifest, pending, self.index.unchanged)
        self._mirror()

    def _finish(self, pending: PendingUpdate) -> None:
        """Finish publishing an update a killed process recorded."""
        journal.finish(self.root, self.manifest, pending, self.index.unchanged)
        self._mirror()


def _replace_staged(staged: Staged, rel: str, data: bytes) -> None:
    staged_file = staged.files[rel]
    assert staged_file.staged is not None  # noqa: S101
    path = staged.folder / staged_file.staged
    path.unlink()
    path.write_bytes(data)


__all__ = [
    "STATE_DIR",
    "ChangeKind",
    "Local",
    "LocalChange",
    "PullConflict",
    "Status",
    "Update",
    "Workspace",
    "merge_text",
    "read_local",
    "uncommitted",
]
