"""The project as Meltano would load it: `meltano.yml`, the files its `include_paths`
match, and the lock files under `plugins/`, each entry remembering its file and line.

Meltano deep-merges the included files into `meltano.yml`; the rules need to know where
each plugin, job, schedule and environment was written, so they are kept per file here and
merged only as lists of located entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from client.bounded_yaml import YamlRefused
from client.check.located_yaml import Located, load_located
from client.check.project_files import ProjectReader, glob_matches, is_outside
from client.check.result import Finding, Severity

MELTANO_YML = "meltano.yml"
PLUGIN_TYPES = (
    "extractors",
    "loaders",
    "transforms",
    "transformers",
    "orchestrators",
    "utilities",
    "mappers",
    "files",
)

_SINGULAR = {"utilities": "utility", "files": "file bundle"}


def singular(kind: str) -> str:
    """'extractor' for 'extractors', 'utility' for 'utilities'."""
    return _SINGULAR.get(kind, kind.removesuffix("s"))


@dataclass(frozen=True)
class Entry:
    """One named item (plugin, job, schedule, environment) and where it was written."""

    data: Located
    file: str
    kind: str
    """`extractors`, ..., `jobs`, `schedules` or `environments`."""

    @property
    def name(self) -> str:
        """The entry's name ('' when it has none, which the schema reports)."""
        name = self.data.get("name")
        return name if isinstance(name, str) else ""

    @property
    def what(self) -> str:
        """'the extractor 'tap-x'', for messages."""
        return f"the {singular(self.kind)} '{self.name}'"

    @property
    def line(self) -> int:
        """The line the entry starts on."""
        return self.data.line

    def line_of(self, key: str) -> int:
        """The line of one of the entry's keys."""
        return self.data.line_of(key)


@dataclass
class Project:
    """The loaded files and their entries; YAML errors are findings, not exceptions."""

    documents: dict[str, Located] = field(default_factory=dict)
    """Every file that loaded, `meltano.yml` first, then includes in Meltano's order."""
    locks: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    """Lock files by (plugin type, plugin name)."""
    lock_bytes: dict[str, bytes] = field(default_factory=dict)
    """Lock files by path, to see whether one changed."""
    findings: list[Finding] = field(default_factory=list)

    @property
    def root(self) -> Located:
        """`meltano.yml` (empty when it did not load)."""
        return self.documents.get(MELTANO_YML, Located())

    def entries(self, kind: str) -> Iterator[Entry]:
        """Every located entry of a top-level list (`jobs`, `schedules`, `environments`)."""
        for path, doc in self.documents.items():
            items = doc.get(kind)
            if isinstance(items, list):
                yield from (Entry(i, path, kind) for i in items if isinstance(i, Located))

    def plugins(self) -> Iterator[Entry]:
        """Every plugin written in any file, with its type as the entry's kind."""
        for path, doc in self.documents.items():
            groups = doc.get("plugins")
            if not isinstance(groups, Located):
                continue
            for kind, items in groups.items():
                if kind in PLUGIN_TYPES and isinstance(items, list):
                    yield from (Entry(i, path, kind) for i in items if isinstance(i, Located))

    def plugin(self, kind: str, name: str) -> Entry | None:
        """The first plugin of a type with that name (Meltano uses the first)."""
        return next((p for p in self.plugins() if p.kind == kind and p.name == name), None)

    def lock_for(self, plugin: Entry) -> dict[str, Any] | None:
        """The lock file of a plugin: its variant's, or its only one."""
        found = self.locks.get((plugin.kind, plugin.name), [])
        variant = plugin.data.get("variant")
        for lock in found:
            if variant is None or lock.get("variant") == variant:
                return lock
        return None

    def error(self, rule: str, file: str, line: int | None, reason: str, todo: str) -> None:
        """Record an error."""
        self.findings.append(Finding(rule, Severity.ERROR, file, line, reason, todo))

    def warn(self, rule: str, file: str, line: int | None, reason: str, todo: str) -> None:
        """Record a warning."""
        self.findings.append(Finding(rule, Severity.WARNING, file, line, reason, todo))


def load_project(reader: ProjectReader) -> Project:
    """Load `meltano.yml`, its includes and lock files, recording what does not load."""
    project = Project()
    root = _load(project, reader, MELTANO_YML)
    if root is None:
        return project
    paths = list(reader.paths())
    patterns = root.get("include_paths") or []
    if isinstance(patterns, list):
        for pattern in patterns:
            for path in _included(project, root, pattern, paths):
                if path not in project.documents:
                    _load(project, reader, path)
    _load_locks(project, reader, paths)
    return project


def _included(project: Project, root: Located, pattern: Any, paths: list[str]) -> list[str]:
    line = root.line_of("include_paths")
    if not isinstance(pattern, str):
        return []  # the schema reports the wrong type
    if pattern.startswith(("/", "~")):
        project.error(
            "include-paths",
            MELTANO_YML,
            line,
            f"the include path '{pattern}' is absolute, which Meltano cannot glob",
            "Use a path relative to the folder of meltano.yml",
        )
        return []
    if is_outside(pattern):
        project.warn(
            "include-paths",
            MELTANO_YML,
            line,
            f"the include path '{pattern}' points outside the project: Meltano refuses any "
            "file it matches there, and a runner sees only the repository",
            "Move the files into the project and include them by a relative path",
        )
        return []
    matched = [p for p in glob_matches(pattern, paths) if p != MELTANO_YML]
    if not matched:
        project.warn(
            "include-paths",
            MELTANO_YML,
            line,
            f"the include path '{pattern}' matches no file",
            "Fix the pattern, or remove it if the files are gone",
        )
    return matched


def _load(project: Project, reader: ProjectReader, path: str) -> Located | None:
    data = reader.read(path)
    if data is None:
        if path == MELTANO_YML:
            project.error(
                "yaml", path, None, "there is no meltano.yml", "Check the project from its folder"
            )
        return None
    try:
        doc = load_located(data, path)
    except YamlRefused as exc:
        project.findings.append(
            Finding("yaml", Severity.ERROR, path, exc.line, exc.reason, exc.instruction, exc.column)
        )
        return None
    if doc is None:
        project.error(
            "yaml",
            path,
            1,
            "the file is empty, and Meltano fails on an empty project file",
            "Write `{}` in it, or remove it"
            + (" from include_paths" if path != MELTANO_YML else ""),
        )
        return None
    if not isinstance(doc, Located):
        project.error(
            "yaml",
            path,
            1,
            "the file is not a mapping of Meltano's keys",
            "Start it with keys such as plugins:, jobs: or environments:",
        )
        return None
    project.documents[path] = doc
    return doc


def _load_locks(project: Project, reader: ProjectReader, paths: list[str]) -> None:
    for path in paths:
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "plugins" or not parts[2].endswith(".lock"):
            continue
        data = reader.read(path)
        if data is None:
            continue
        try:
            lock = json.loads(data)
        except ValueError:
            project.warn(
                "lock-file",
                path,
                None,
                "the lock file is not JSON",
                "Run `meltano lock --update` for the plugin",
            )
            continue
        if not isinstance(lock, dict):
            continue
        project.lock_bytes[path] = data
        name = lock.get("name") or parts[2].removesuffix(".lock").split("--")[0]
        project.locks.setdefault((parts[1], str(name)), []).append(lock)
