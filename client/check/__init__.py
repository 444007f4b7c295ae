"""`meltano-forge check`: a project checked as Meltano would load it, without running a
plugin (SPEC §9).

`check_project` is a pure function of the project's files, whatever holds them: a
workspace folder (`FolderReader`), a commit on the forge (`ForgeReader`), or a mapping of
paths to bytes (the service, the editor's draft). The rules live one concern per module:

- `project`: YAML (bounded, duplicate keys refused, lines kept) and `include_paths`;
- `schema`: Meltano's own published JSON schema, vendored;
- `references`: names Meltano resolves at run time (jobs, schedules, environments, ...);
- `sources`: what a cold runner needs to install plugins (warnings);
- `secrets`: literal secrets and token-shaped values (errors).

Errors are for what breaks a runner or leaks a secret; anything a working real project
does is at most a warning.
"""

from __future__ import annotations

from collections.abc import Mapping

from client.check.project import load_project
from client.check.project_files import (
    FolderReader,
    ForgeReader,
    MappingReader,
    OverlayReader,
    ProjectReader,
    reader_for,
)
from client.check.references import check_references
from client.check.result import CheckResult, Finding, Severity
from client.check.schema import check_schema
from client.check.secrets import check_secrets
from client.check.sources import check_sources

Files = Mapping[str, bytes] | ProjectReader


def check_project(
    files: Files, *, environment: str | None = None, base: Files | None = None
) -> CheckResult:
    """Check a project's files. `environment` is the `--environment` a runner will use
    (it must exist); `base` is the project before a change, for the rules that compare
    (a pip_url changed without its lock file)."""
    project = load_project(reader_for(files))
    if project.documents:
        check_schema(project)
        check_references(project, environment)
        check_sources(project, load_project(reader_for(base)) if base is not None else None)
        check_secrets(project)
    return CheckResult.of(project.findings)


def check_change(
    before: Files, changes: Mapping[str, bytes | None], *, environment: str | None = None
) -> CheckResult:
    """Check what the project will hold once `changes` (path to new bytes, `None` to
    delete, project-relative) land on `before`; `before` is also the base of the rules
    that compare. The one gate of `commit`, the runner's auto-commit, the editor and the
    settings forms."""
    below = reader_for(before)
    return check_project(OverlayReader(below, changes), environment=environment, base=below)


__all__ = [
    "CheckResult",
    "Files",
    "Finding",
    "FolderReader",
    "ForgeReader",
    "MappingReader",
    "OverlayReader",
    "ProjectReader",
    "Severity",
    "check_change",
    "check_project",
]
