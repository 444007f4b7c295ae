"""What a project tree may hold, checked the same way in both directions.

A commit that a pull would refuse breaks the branch for every runner, so extraction (pull)
and change sets (the client's commit and the service's `POST /commits`) share these rules:

- paths: repository-relative, no `..`, nothing inside `.git/` or `.meltano-forge/`, no
  name over 255 bytes and no path over 1,024 bytes or 64 levels (git stores such names,
  but a filesystem refuses them, and a refusal halfway through would strand the pull);
- sizes: no file over `max_file_bytes`, no tree over `max_total_bytes`;
- symlinks: every link, followed through the other links of the same tree exactly as the
  kernel would follow them, must stay inside the tree at every step. Checking each link's
  text on its own is not enough: `d/l -> ..` is harmless alone, but makes `d/e/x -> ../l/..`
  leave the tree. `check_links` therefore resolves every link against all the others,
  whatever order an archive or a change set presents them in.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass

from providers.errors import UnsafeInput
from providers.names import check_repo_path

RESERVED = ".meltano-forge"
"""meltano-forge's own state folder; a tree that holds it would overwrite the manifest."""
MAX_LINK_HOPS = 40
"""Linux's own limit on symlinks followed while resolving one path (ELOOP)."""
MAX_NAME_BYTES = 255
"""One file or folder name: the limit of ext4, XFS, btrfs and tmpfs (NAME_MAX)."""
MAX_PATH_BYTES = 1024
"""A whole repository path, well inside PATH_MAX (4,096) below any project folder."""
MAX_PATH_DEPTH = 64
"""Folders in one path; Meltano and dbt projects stay under 10."""


@dataclass(frozen=True)
class Limits:
    """Caps on what a snapshot or a change set may hold."""

    max_file_bytes: int = 100 * 1024**2
    """One file; GitHub refuses files over 100 MiB, and a Meltano project has none."""
    max_total_bytes: int = 2 * 1024**3
    """All files together, uncompressed."""
    max_entries: int = 500_000
    """Files and folders."""


def check_path(path: str) -> str:
    """`path` if a tree may hold it, else `UnsafeInput`."""
    check_repo_path(path)
    parts = path.split("/")
    if RESERVED in parts:
        msg = f"Refusing the path '{path}': {RESERVED}/ is meltano-forge's own state folder"
        raise UnsafeInput(msg, "Rename the folder; meltano-forge keeps its manifest there")
    problem = _length_problem(path, parts)
    if problem:
        msg = f"Refusing the path '{path}': {problem}"
        raise UnsafeInput(msg, "Shorten the names or flatten the folders in the repository")
    return path


def _length_problem(path: str, parts: list[str]) -> str | None:
    if len(path.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        return f"it is longer than {MAX_PATH_BYTES:,} bytes"
    if len(parts) > MAX_PATH_DEPTH:
        return f"it is more than {MAX_PATH_DEPTH} levels deep"
    longest = max(parts, key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"a name in it is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_size(path: str, size: int, limits: Limits) -> None:
    """Refuse one file over the cap."""
    if size > limits.max_file_bytes:
        msg = f"{path} is {size:,} bytes, over the limit of {limits.max_file_bytes:,}"
        raise UnsafeInput(
            msg,
            "Keep large data out of the project repository (object storage, a package index)",
        )


def resolve_link(path: str, links: Mapping[str, str]) -> str:
    """Where the symlink at `path` finally points, relative to the tree's root, following
    every link of the tree (`links`: path → target) on the way. `UnsafeInput` when it is
    absolute, climbs above the root at any step, or loops."""
    hops = 0
    stack = [p for p in posixpath.dirname(path).split("/") if p]
    pending = _parts(path, links[path])
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                msg = f"The symlink {path} points outside the project: {links[path]!r}"
                raise UnsafeInput(msg, "Links may only point inside the project")
            stack.pop()
            continue
        candidate = "/".join([*stack, part])
        if candidate in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                msg = f"The symlink {path} loops (through {candidate})"
                raise UnsafeInput(msg, "Fix the links so that each ends at a file or folder")
            pending = _parts(candidate, links[candidate]) + pending
            continue
        stack.append(part)
    return "/".join(stack)


def _parts(path: str, target: str) -> list[str]:
    if target.startswith("/") or "\x00" in target or "\\" in target:
        msg = f"The symlink {path} points outside the project: {target!r}"
        raise UnsafeInput(msg, "Links may only point inside the project, by a relative path")
    return target.split("/")


def check_links(links: Mapping[str, str]) -> None:
    """Every link of a tree stays inside it (see the module docstring)."""
    for path in links:
        resolve_link(path, links)
