"""Repository reads both doubles need: refs, ancestry, trees and `git archive`-style tarballs."""

from __future__ import annotations

import io
import tarfile
from collections import deque
from pathlib import Path

from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref
from dulwich.repo import Repo

from providers import gitobjects
from providers.gitobjects import branch_ref, oid


def heads(repo: Repo) -> dict[str, str]:
    """Branch name -> head SHA."""
    return {k.decode(): v.decode() for k, v in repo.refs.as_dict(gitobjects.HEADS).items()}


def default_branch(repo: Repo) -> str:
    """The branch HEAD points at."""
    target = repo.refs.get_symrefs().get(Ref(b"HEAD"), branch_ref("main"))
    return bytes(target).decode().removeprefix("refs/heads/")


def set_head(repo: Repo, name: str, old: str | bytes | None, new: str | bytes) -> bool:
    """Compare-and-swap a branch (create it when `old` is None)."""
    if old is None:
        return bool(repo.refs.add_if_new(branch_ref(name), oid(new)))
    return bool(repo.refs.set_if_equals(branch_ref(name), oid(old), oid(new)))


def init_bare(path: Path, default_branch: str = "main") -> Path:
    """Create an empty bare repository whose HEAD names `default_branch`."""
    path.mkdir(parents=True, exist_ok=True)
    repo = Repo.init_bare(str(path))
    try:
        set_default_branch(repo, default_branch)
    finally:
        repo.close()
    return path


def set_default_branch(repo: Repo, name: str) -> None:
    """Point HEAD at a branch."""
    repo.refs.set_symbolic_ref(Ref(b"HEAD"), branch_ref(name))


def commit(repo: Repo, sha: str) -> Commit | None:
    """The commit object, or None."""
    try:
        obj = repo.object_store[oid(sha)]
    except (KeyError, ValueError):
        return None
    return obj if isinstance(obj, Commit) else None


def resolve(repo: Repo, ref: str) -> str | None:
    """A branch (`x`, `heads/x`, `refs/heads/x`), a tag (`v1`, `tags/v1`, `refs/tags/v1`,
    annotated tags peeled) or a SHA -> commit SHA, in git's order: branches, then tags."""
    name = ref.removeprefix("refs/").removeprefix("heads/")
    found = heads(repo).get(name)
    if found:
        return found
    tag = ref.removeprefix("refs/").removeprefix("tags/")
    tags = repo.refs.as_dict(Ref(b"refs/tags/"))
    if tag.encode() in tags:
        return repo.get_peeled(Ref(b"refs/tags/" + tag.encode())).decode()
    if len(ref) == 40 and commit(repo, ref) is not None:
        return ref
    return None


def ancestors(repo: Repo, sha: str, limit: int = 100_000) -> dict[str, int]:
    """SHA -> distance for every ancestor of `sha` (itself included)."""
    seen: dict[str, int] = {}
    queue = deque([(sha, 0)])
    while queue and len(seen) < limit:
        current, depth = queue.popleft()
        if current in seen:
            continue
        seen[current] = depth
        obj = commit(repo, current)
        if obj is not None:
            queue.extend((p.decode(), depth + 1) for p in obj.parents)
    return seen


def is_ancestor(repo: Repo, old: str, new: str) -> bool:
    """Whether `old` is reachable from `new`."""
    return old in ancestors(repo, new)


def merge_base(repo: Repo, a: str, b: str) -> str | None:
    """The nearest common ancestor of two commits."""
    from_a = ancestors(repo, a)
    best = None
    for sha, depth in ancestors(repo, b).items():
        if sha in from_a and (best is None or depth < best[1]):
            best = (sha, depth)
    return best[0] if best else None


def commits_between(repo: Repo, base: str, head: str) -> list[str]:
    """Commits reachable from `head` but not `base`, oldest first (linear histories)."""
    excluded = ancestors(repo, base)
    out = []
    current: str | None = head
    while current and current not in excluded:
        out.append(current)
        obj = commit(repo, current)
        current = obj.parents[0].decode() if obj is not None and obj.parents else None
    return list(reversed(out))


def tree_of(repo: Repo, sha: str) -> ObjectID:
    """A commit's tree id."""
    return gitobjects.commit_tree(repo.object_store, oid(sha))


def tree_id(repo: Repo, tree_ish: str) -> ObjectID | None:
    """A tree SHA, commit SHA or branch name -> tree id."""
    resolved = resolve(repo, tree_ish)
    if resolved:
        return tree_of(repo, resolved)
    try:
        obj = repo.object_store[oid(tree_ish)]
    except (KeyError, ValueError):
        return None
    return ObjectID(obj.id) if isinstance(obj, Tree) else None


def blob(repo: Repo, sha: bytes) -> bytes:
    """A blob's bytes."""
    obj = repo.object_store[oid(sha)]
    assert isinstance(obj, Blob)
    return obj.as_raw_string()


def tarball(repo: Repo, sha: str, prefix: str, path: str = "") -> bytes:
    """What `git archive --format=tar.gz --prefix=PREFIX/ SHA [PATH]` writes: a pax global
    header carrying the SHA, a top folder, folders before their files, file modes kept."""
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT, pax_headers={"comment": sha}
    ) as tar:
        obj = commit(repo, sha)
        assert obj is not None
        mtime = obj.commit_time
        top = tarfile.TarInfo(prefix.rstrip("/"))
        top.type, top.mode, top.mtime = tarfile.DIRTYPE, 0o775, mtime
        tar.addfile(top)
        seen_dirs: set[str] = set()
        for file_path, mode, blob_id in gitobjects.walk(repo.object_store, obj.tree):
            if path and not (file_path == path or file_path.startswith(path.rstrip("/") + "/")):
                continue
            parts = file_path.split("/")
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in seen_dirs:
                    seen_dirs.add(folder)
                    info = tarfile.TarInfo(f"{prefix}{folder}")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o775, mtime
                    tar.addfile(info)
            data = blob(repo, blob_id)
            info = tarfile.TarInfo(f"{prefix}{file_path}")
            info.mtime = mtime
            if mode == 0o120000:
                info.type, info.linkname, info.mode = (
                    tarfile.SYMTYPE,
                    data.decode("utf-8", "surrogateescape"),
                    0o777,
                )
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o775 if mode == 0o100755 else 0o664
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
