"""When to run `meltano install`: only when the plugin set changed since the last install.

The key hashes everything that decides the plugin set: `meltano.yml`, its `include_paths`
files, `plugins/**/*.lock` and requirements files.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

import yaml

from client.manifest import STATE_DIR
from client.settings import InstallPolicy

INSTALL_KEY_FILE = "install.json"


def install_key(root: Path) -> str:
    """Hash of everything that decides the plugin set."""
    digest = hashlib.sha256()
    files = {"meltano.yml"}
    meltano_yml = root / "meltano.yml"
    if meltano_yml.exists():
        try:
            data = yaml.safe_load(meltano_yml.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        for pattern in data.get("include_paths", []) if isinstance(data, dict) else []:
            files.update(
                os.path.relpath(p, root) for p in glob.glob(str(root / pattern), recursive=True)
            )
    files.update(
        os.path.relpath(p, root) for p in glob.glob(str(root / "plugins/**/*.lock"), recursive=True)
    )
    files.update(os.path.relpath(p, root) for p in glob.glob(str(root / "requirements*.txt")))
    for rel in sorted(files):
        path = root / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def needs_install(root: Path, policy: InstallPolicy) -> bool:
    """Whether `meltano install` should run before the command."""
    if policy is InstallPolicy.NEVER:
        return False
    if policy is InstallPolicy.ALWAYS:
        return True
    stored = root / STATE_DIR / INSTALL_KEY_FILE
    if not stored.exists():
        return True
    return bool(json.loads(stored.read_text()).get("key") != install_key(root))


def remember_install(root: Path) -> None:
    """Record the plugin set that was installed."""
    (root / STATE_DIR).mkdir(exist_ok=True)
    (root / STATE_DIR / INSTALL_KEY_FILE).write_text(json.dumps({"key": install_key(root)}))
