"""The workspace manifest, `.meltano-forge/state.json`: what was materialized, from where,
which update is being published, and which changes were rescued to side branches.

An update is recorded (`pending`) before its first file moves into place and cleared last,
so a process killed in between leaves a manifest that says exactly what to finish.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from providers.contract import FileMode

STATE_DIR = ".meltano-forge"
STATE_FILE = "state.json"
STAGING_DIR = "staging"


@dataclass
class FileRecord:
    """One file as meltano-forge last wrote or committed it."""

    sha: str
    """Git blob SHA of the branch's version (a symlink's target)."""
    mode: int
    """Git mode: 0o100644, 0o100755 or 0o120000."""
    size: int
    """Bytes on disk after writing (lstat); -1 when the disk holds something else (a
    merge of local edits), so the stat fast path never vouches for it."""
    mtime_ns: int
    """Modification time after writing (lstat): the stat fast path."""

    @property
    def file_mode(self) -> FileMode:
        """The mode as a FileMode."""
        return FileMode(self.mode)


@dataclass
class PendingWrite:
    """A file of an update, waiting in staging to be renamed into place."""

    record_sha: str
    """The branch's blob SHA, recorded once the file is in place."""
    content_sha: str
    """The blob SHA of what is staged (differs from `record_sha` for a merge)."""
    mode: int
    """Git mode of the file."""


@dataclass
class PendingUpdate:
    """An update being published; finished by the next command if this one dies."""

    branch: str
    """The branch the workspace is moving to."""
    sha: str
    """The commit the workspace is moving to."""
    staging: str
    """The staging folder, relative to the workspace root."""
    writes: dict[str, PendingWrite] = field(default_factory=dict)
    """Files to rename from staging into place."""
    deletes: dict[str, FileRecord | None] = field(default_factory=dict)
    """Files to remove: only while they still match their record (None: unconditionally,
    for files whose changes were saved elsewhere, e.g. on a rescue branch)."""


@dataclass
class Rescue:
    """Changes that were saved on a side branch and taken out of the workspace."""

    branch: str
    """The side branch holding them."""
    base_sha: str
    """The commit the side branch started from."""
    paths: list[str]
    """Workspace paths the changes touched."""
    reason: str
    """Why: 'command failed' or 'conflict'."""
    at: float
    """When (epoch seconds)."""


@dataclass
class Manifest:
    """Repository, branch and base commit of a workspace, and its files."""

    repo: str
    branch: str
    base_sha: str
    project_path: str = ""
    files: dict[str, FileRecord] = field(default_factory=dict)
    pending: PendingUpdate | None = None
    rescues: list[Rescue] = field(default_factory=list)

    def repo_path(self, rel: str) -> str:
        """A workspace-relative path as a repository path."""
        return f"{self.project_path}/{rel}" if self.project_path else rel

    def workspace_path(self, path: str) -> str | None:
        """A repository path as a workspace-relative path (None outside the project)."""
        if not self.project_path:
            return path
        prefix = self.project_path + "/"
        return path[len(prefix) :] if path.startswith(prefix) else None

    def save(self, root: Path) -> None:
        """Write atomically (temp file, fsync, rename): a crash leaves the old or the new."""
        folder = root / STATE_DIR
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".state.")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> Manifest | None:
        """The manifest, or None for a folder that was never materialized."""
        path = root / STATE_DIR / STATE_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        files = {p: FileRecord(**r) for p, r in data.pop("files", {}).items()}
        pending = data.pop("pending", None)
        rescues = [Rescue(**r) for r in data.pop("rescues", [])]
        return cls(
            **data,
            files=files,
            pending=_pending(pending) if pending else None,
            rescues=rescues,
        )


def _pending(data: dict[str, Any]) -> PendingUpdate:
    return PendingUpdate(
        data["branch"],
        data["sha"],
        data["staging"],
        {p: PendingWrite(**w) for p, w in data["writes"].items()},
        {p: FileRecord(**r) if r else None for p, r in data["deletes"].items()},
    )
