"""Local rescue bundles: where a change goes when it cannot be pushed at all.

A read-only run whose command changed files anyway, or a commit refused because the
token lost its permission or the forge stayed down after retries, leaves a folder
`<rescue dir>/<UTC time>-<run id>/` holding:

- `changes.patch`: a `git format-patch` style mail (`git am` or `git apply --binary` on a
  checkout of the base commit reproduces the change);
- `files/`: the changed files themselves;
- `bundle.json`: repository, branch, base commit, run, reason, and the paths.

Nothing is pushed and nothing in the workspace is removed: the bundle is a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from email.utils import formatdate
from pathlib import Path

from client import patch
from client.workspace import ChangeKind, LocalChange, Workspace
from providers.contract import Author

README = """Changes meltano-forge could not push ({reason}).

Base: {branch} @ {base_sha}
Bring them back on a checkout of that commit:
    git am {patch}            (or: git apply --binary {patch})
or copy the files under files/ over a workspace of {branch}.
"""


def write_bundle(
    ws: Workspace,
    changes: Sequence[LocalChange],
    folder: Path,
    *,
    run_id: str,
    reason: str,
    message: str,
    author: Author | None,
) -> Path:
    """Write the bundle and return its folder."""
    manifest = ws.manifest
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder / f"{stamp}-{run_id}"
    target.mkdir(parents=True, exist_ok=False)
    who = author or Author("meltano-forge runner", "runner@meltano-forge.invalid")
    diffs = [patch.FileDiff(manifest.repo_path(d.path), d.old, d.new) for d in ws.diffs(changes)]
    headline, _, body = message.partition("\n")
    mail = (
        (
            f"From {manifest.base_sha} Mon Sep 17 00:00:00 2001\n"
            f"From: {who.name} <{who.email}>\n"
            f"Date: {formatdate(localtime=False)}\n"
            f"Subject: [PATCH] {headline}\n\n{body.strip()}\n\n---\n\n"
        ).encode()
        + patch.render(diffs, binary=True)
        + b"-- \nmeltano-forge\n"
    )
    (target / "changes.patch").write_bytes(mail)
    for change in changes:
        if change.kind is ChangeKind.DELETED:
            continue
        source, copy = ws.root / change.path, target / "files" / change.path
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), copy)
        else:
            shutil.copy2(source, copy)
    (target / "bundle.json").write_text(
        json.dumps(
            {
                "repo": manifest.repo,
                "branch": manifest.branch,
                "base_sha": manifest.base_sha,
                "project_path": manifest.project_path,
                "run_id": run_id,
                "reason": reason,
                "changed": sorted(c.path for c in changes if c.kind is not ChangeKind.DELETED),
                "deleted": sorted(c.path for c in changes if c.kind is ChangeKind.DELETED),
            },
            indent=1,
        )
    )
    (target / "README.txt").write_text(
        README.format(
            reason=reason,
            branch=manifest.branch,
            base_sha=manifest.base_sha,
            patch=target / "changes.patch",
        )
    )
    return target
