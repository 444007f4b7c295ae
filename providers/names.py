"""Checks for branch names and repository paths, applied before any request is sent.

Bad names are refused here with `UnsafeInput`, so a typo never reaches a forge and a
hostile path never reaches the disk.
"""

from __future__ import annotations

import re

from providers.errors import InvalidRequest, UnsafeInput

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
# git check-ref-format: no control characters, space, ~ ^ : ? * [ or backslash.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
MAX_BRANCH_BYTES = 255
"""Longer names are refused: a loose ref's last part is a file name (255 bytes at most),
and the service stores branch names in 255-character columns."""


def is_sha(value: str) -> bool:
    """True for a full 40-hex lowercase object id."""
    return bool(_SHA_RE.match(value))


def check_branch_name(name: str) -> str:
    """Return `name` if git would accept it as a branch, else raise `UnsafeInput`.

    The rules are those of `git check-ref-format --branch`, so every forge accepts what
    passes here."""
    problem = _branch_name_problem(name)
    if problem:
        msg = f"'{name}' is not a valid branch name: {problem}"
        raise UnsafeInput(
            msg,
            "Use letters, digits, '-', '_', '.' and '/' between words",
        )
    return name


def _branch_name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_BRANCH_BYTES:
        return f"it is longer than {MAX_BRANCH_BYTES} bytes"
    if name.startswith("refs/"):
        return "give the short name, without 'refs/'"
    if _REF_FORBIDDEN.search(name):
        return "it contains a space, a control character or one of ~ ^ : ? * [ \\"
    if name.startswith(("-", "/")) or name.endswith(("/", ".")):
        return "it starts with '-' or '/', or ends with '/' or '.'"
    if ".." in name or "//" in name or "@{" in name or name == "@":
        return "it contains '..', '//' or '@{', or is '@'"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "a part starts with '.' or ends with '.lock'"
    return None


def check_repo_path(path: str) -> str:
    """Return `path` if it is a safe repository-relative file path, else raise `UnsafeInput`.

    Refused: empty, absolute, backslashes, NUL, empty/`.`/`..` components, and anything
    inside `.git/`."""
    problem = _path_problem(path)
    if problem:
        msg = f"Refusing the path '{path}': {problem}"
        raise UnsafeInput(msg)
    return path


def _path_problem(path: str) -> str | None:
    if not path:
        return "it is empty"
    if "\x00" in path or "\\" in path:
        return "it contains a NUL byte or a backslash"
    if path.startswith("/"):
        return "it is absolute"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "it has an empty, '.' or '..' component"
    if any(part.lower() == ".git" for part in parts):
        return "it is inside .git"
    return None


def branch_clash(name: str, existing: list[str]) -> str | None:
    """The existing branch that makes `name` impossible as a git ref, if any.

    Git stores `refs/heads/a` as a file, so `a/b` (which needs `a` to be a folder) cannot
    exist beside it, and the other way round."""
    for other in existing:
        if other == name:
            continue
        if name.startswith(other + "/") or other.startswith(name + "/"):
            return other
    return None


class BranchClash(InvalidRequest):
    """A branch that cannot exist beside another one (see `branch_clash`): already
    explained, so nothing needs to look for the clash again."""


def branch_clash_error(name: str, clash: str) -> BranchClash:
    """The explanation for a branch that cannot exist beside `clash` (see `branch_clash`)."""
    return BranchClash(
        f"Cannot create branch '{name}' while branch '{clash}' exists: git stores branches "
        "as files, so one name cannot also be a folder of the other",
        "Choose a name like 'development-aj' instead of 'development/aj' "
        "(MELTANO_FORGE_PERSONAL_BRANCH_TEMPLATE='{working}-{user}')",
    )
