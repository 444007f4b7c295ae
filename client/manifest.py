"""The workspace manifest, `.meltano-forge/state.json`: what was materialized, from where,
which update is being published, and which changes were rescued to side branches.

An update is recorded (`pending`) before its first file moves into place and cleared last,
so a process killed in between leaves a manifest that says exactly what to finish.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any

from providers.contract import FileMode

STATE_DIR = ".meltano-forge"
STATE_FILE = "state.json"
STAGING_DIR = "staging"


@dataclass(slots=True)
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


@dataclass(slots=True)
class PendingWrite:
    """A file of an update, waiting in staging to be renamed into place."""

    record_sha: str
    """The branch's blob SHA, recorded once the file is in place."""
    content_sha: str
    """The blob SHA of what is staged (differs from `record_sha` for a merge)."""
    mode: int
    """Git mode of the file."""
    staged_mtime_ns: int = field(default=0, compare=False)
    """In memory only, never saved: the staged copy's modification time as this process
    wrote it (0: unknown). A rename keeps it, so publishing needs no stat."""
    staged_size: int = field(default=-1, compare=False)
    """In memory only, never saved: the staged copy's size as this process wrote it."""


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
        """Write atomically (temp file, fsync, rename): a crash leaves the old or the new.

        The JSON is what `json.dump(asdict(self), indent=1, sort_keys=True)` wrote, one
        file per line, streamed a few thousand records at a time (no copy of the
        manifest as dicts, and the C encoder for every string)."""
        folder = root / STATE_DIR
        folder.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".state.")
        with os.fdopen(fd, "w") as handle:
            for piece in self._json():
                handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / STATE_FILE)

    def _json(self) -> Iterator[str]:
        scalars = {
            "base_sha": self.base_sha,
            "branch": self.branch,
            "project_path": self.project_path,
            "repo": self.repo,
            "rescues": [asdict(r) for r in self.rescues],
        }
        keys = sorted([*scalars, "files", "pending"])
        yield "{"
        for i, key in enumerate(keys):
            yield ("\n " if i == 0 else ",\n ") + _quote(key) + ": "
            if key == "files":
                yield from _records(self.files, _file_json, " ")
            elif key == "pending":
                if self.pending is None:
                    yield "null"
                else:
                    yield from _pending_json(self.pending)
            else:
                yield json.dumps(scalars[key], indent=1, sort_keys=True).replace("\n", "\n ")
        yield "\n}"

    @classmethod
    def load(cls, root: Path) -> Manifest | None:
        """The manifest, or None for a folder that was never materialized."""
        path = root / STATE_DIR / STATE_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        data: dict[str, Any] = json.loads(text, object_hook=_typed)
        del text
        files = {p: _file(r) for p, r in data.pop("files", {}).items()}
        pending = data.pop("pending", None)
        rescues = [Rescue(**r) for r in data.pop("rescues", [])]
        return cls(
            **data,
            files=files,
            pending=_pending(pending) if pending else None,
            rescues=rescues,
        )


_FILE_KEYS = frozenset(("mode", "mtime_ns", "sha", "size"))
_WRITE_KEYS = frozenset(("content_sha", "mode", "record_sha"))


def _typed(obj: dict[str, Any]) -> Any:
    """JSON objects that are records become records as they are parsed: a large manifest
    never exists twice in memory, once as dicts and once as records."""
    if len(obj) == 4 and obj.keys() == _FILE_KEYS:
        return FileRecord(obj["sha"], obj["mode"], obj["size"], obj["mtime_ns"])
    if len(obj) == 3 and obj.keys() == _WRITE_KEYS:
        return PendingWrite(obj["record_sha"], obj["content_sha"], obj["mode"])
    return obj


def _file(value: FileRecord | dict[str, Any]) -> FileRecord:
    return value if isinstance(value, FileRecord) else FileRecord(**value)


def _write(value: PendingWrite | dict[str, Any]) -> PendingWrite:
    return value if isinstance(value, PendingWrite) else PendingWrite(**value)


def _file_json(record: FileRecord, pad: str) -> str:
    i = pad + " "
    return (
        f'{{\n{i}"mode": {int(record.mode)},\n{i}"mtime_ns": {int(record.mtime_ns)},\n'
        f'{i}"sha": {_quote(record.sha)},\n{i}"size": {int(record.size)}\n{pad}}}'
    )


def _write_json(write: PendingWrite, pad: str) -> str:
    i = pad + " "
    return (
        f'{{\n{i}"content_sha": {_quote(write.content_sha)},\n{i}"mode": {int(write.mode)},'
        f'\n{i}"record_sha": {_quote(write.record_sha)}\n{pad}}}'
    )


def _delete_json(record: FileRecord | None, pad: str) -> str:
    return "null" if record is None else _file_json(record, pad)


def _records(items: dict[str, Any], render: Any, pad: str) -> Iterator[str]:
    """`{"path": record, ...}` sorted by path, a few thousand lines per piece."""
    if not items:
        yield "{}"
        return
    lines: list[str] = []
    inner = pad + " "
    for i, key in enumerate(sorted(items)):
        lines.append(("{\n" if i == 0 else ",\n") + inner + _quote(key) + ": ")
        lines.append(render(items[key], inner))
        if len(lines) >= 8192:
            yield "".join(lines)
            lines.clear()
    lines.append("\n" + pad + "}")
    yield "".join(lines)


def _pending_json(pending: PendingUpdate) -> Iterator[str]:
    yield "{\n  " + _quote("branch") + ": " + _quote(pending.branch) + ",\n  "
    yield _quote("deletes") + ": "
    yield from _records(pending.deletes, _delete_json, "  ")
    yield ",\n  " + _quote("sha") + ": " + _quote(pending.sha)
    yield ",\n  " + _quote("staging") + ": " + _quote(pending.staging) + ",\n  "
    yield _quote("writes") + ": "
    yield from _records(pending.writes, _write_json, "  ")
    yield "\n }"


def _pending(data: dict[str, Any]) -> PendingUpdate:
    return PendingUpdate(
        data["branch"],
        data["sha"],
        data["staging"],
        {p: _write(w) for p, w in data["writes"].items()},
        {p: _file(r) if r else None for p, r in data["deletes"].items()},
    )
