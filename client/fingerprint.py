"""Meltano's fingerprint of a plugin environment, computed as Meltano computes it.

Meltano writes `.meltano_plugin_fingerprint` into every virtualenv it installs: a SHA-256
of the plugin's `pip install` arguments (split like a shell, sorted, deduplicated) and,
when the plugin or the project names a Python other than Meltano's own, `python:<that>`
(`meltano.core.venv_service.fingerprint` in Meltano 4). An environment whose file holds
the fingerprint its plugin asks for now is one Meltano itself would not reinstall, so the
runner decides per plugin from it, without starting Meltano (about a second and a half
each time) and without asking the package index.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from client.plugin_sources import expand

FINGERPRINT_FILE = ".meltano_plugin_fingerprint"
SYS_DIR_ROOT = "MELTANO_SYS_DIR_ROOT"
"""Meltano's own variable for where `.meltano` lives (`meltano.core.project`)."""


class UnresolvedPipUrl(ValueError):
    """A `pip_url` naming a variable that the command's environment does not set."""


def fingerprint(pip_install_args: Iterable[str], python: str | None, meltano_python: str) -> str:
    """Meltano's `venv_service.fingerprint`: the interpreter counts only when it is not
    the one running Meltano (Meltano keeps old fingerprints valid that way)."""
    components = sorted(set(pip_install_args))
    if python and python != meltano_python:
        components.append(f"python:{python}")
    return hashlib.sha256(" ".join(components).encode()).hexdigest()


def pip_install_args(pip_url: str, environ: Mapping[str, str], python_version: str) -> list[str]:
    """The arguments Meltano hands pip or uv: `pip_url` with `$VAR` expanded from the
    command's environment (plus Meltano's `MELTANO__PYTHON_VERSION`), split like a shell.

    Meltano also expands variables from `meltano.yml`'s `env:` and `.env`; a variable found
    in neither place here is `UnresolvedPipUrl`, and the caller leaves that plugin to
    Meltano rather than guess its fingerprint."""
    known = {"MELTANO__PYTHON_VERSION": python_version, **environ}
    expanded = expand(pip_url, known)
    if "$" in expanded:
        msg = "its pip_url names a variable this environment does not set"
        raise UnresolvedPipUrl(msg)
    return shlex.split(expanded)


@dataclass(frozen=True)
class SystemDir:
    """Where Meltano keeps plugin environments for one project: `.meltano`, or the folder
    `MELTANO_SYS_DIR_ROOT` names (so that a project folder that is a volume need not hold
    them, and a baked image can keep them outside it)."""

    path: Path

    @classmethod
    def of(cls, root: Path, environ: Mapping[str, str]) -> SystemDir:
        """Meltano's rule: the variable if set (relative to the project, which is the
        command's working folder), else `<project>/.meltano`; resolved, as Meltano does."""
        given = environ.get(SYS_DIR_ROOT)
        return cls((root / given if given else root / ".meltano").resolve())

    def venv(self, kind: str, dir_name: str) -> Path:
        """A plugin's virtualenv: `<sys dir>/<type>/<plugin dir name>/venv`."""
        return self.path / kind / dir_name / "venv"


def read_fingerprint(venv: Path) -> str | None:
    """The fingerprint Meltano wrote into `venv`, or None when there is no usable one:
    no file, or an environment whose interpreter is gone (Meltano reinstalls those too)."""
    try:
        if not (venv / "bin" / "python").exists():
            return None
        return (venv / FINGERPRINT_FILE).read_text()
    except OSError:
        return None
