"""The workspace manifest, `.meltano-forge/state.json`: what was materialized, from where."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from providers.contract import FileMode

STATE_DIR = ".meltano-forge"
STATE_FILE = "state.json"


@dataclass
class FileRecord:
    """One materialized file as it was written."""

    sha: str
    """Git blob SHA of the contents (a symlink's target)."""
    mode: int
    """Git mode: 0o100644, 0o100755 or 0o120000."""
    size: int
    """Bytes on disk after writing (lstat)."""
    mtime_ns: int
    """Modification time after writing (lstat): the stat fast path."""

    @property
    def file_mode(self) -> FileMode:
        """The mode as a FileMode."""
        return FileMode(self.mode)


@dataclass
class Manifest:
    """Repository, branch and base commit of a workspace, and its files."""

    repo: str
    branch: str
    base_sha: str
    project_path: str = ""
    files: dict[str, FileRecord] = field(default_factory=dict)

    def repo_path(self, rel: str) -> str:
        """A workspace-relative path as a repository path."""
        return f"{self.project_path}/{rel}" if self.project_path else rel

    def save(self, root: Path) -> None:
        """Write atomically (temp file + rename)."""
        folder = root / STATE_DIR
        folder.mkdir(exist_ok=True)
        data = asdict(self)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".state.")
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, folder / STATE_FILE)

    @classmethod
    def load(cls, root: Path) -> Manifest | None:
        """The manifest, or None for a folder that was never materialized."""
        path = root / STATE_DIR / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        files = {p: FileRecord(**r) for p, r in data.pop("files", {}).items()}
        return cls(**data, files=files)
