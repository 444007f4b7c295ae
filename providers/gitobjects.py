"""Git object plumbing on a dulwich object store: walk, diff and rewrite trees.

The local adapter commits with these, and the forge doubles build their GitHub and GitLab
semantics on them, so a tree is always written the way git itself would write it.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from dulwich.object_store import BaseObjectStore, DiskObjectStore
from dulwich.objects import Blob, Commit, ObjectID, Tree
from dulwich.refs import Ref

from providers.contract import FileMode
from providers.errors import InvalidRequest

DIR_MODE = 0o040000


def oid(value: str | bytes) -> ObjectID:
    """A hex object id as dulwich types it."""
    return ObjectID(value.encode() if isinstance(value, str) else value)


def branch_ref(name: str) -> Ref:
    """`refs/heads/NAME` as dulwich types it."""
    return Ref(f"refs/heads/{name}".encode())


HEADS = Ref(b"refs/heads/")


@dataclass(frozen=True)
class TreeEdit:
    """Set `path` to blob `sha` with `mode`, or remove it when `sha` is None."""

    path: str
    mode: FileMode
    sha: bytes | None


class MissingObject(Exception):
    """An object a tree refers to is not in the object store: the repository is corrupt."""

    def __init__(self, sha: bytes, path: str) -> None:
        self.sha, self.path = sha.decode(), path
        super().__init__(f"object {self.sha} ({path or 'the root folder'}) is missing")


_LOOSE_TYPES: dict[bytes, type[Tree | Blob | Commit]] = {
    b"blob": Blob,
    b"tree": Tree,
    b"commit": Commit,
}


def load(store: BaseObjectStore, sha: bytes, path: str) -> Tree | Blob | Commit:
    """An object, or `MissingObject` naming the path that needed it."""
    fast = _loose(store, sha) if isinstance(store, DiskObjectStore) else None
    if fast is not None:
        return fast
    try:
        obj = store[ObjectID(sha)]
    except KeyError:
        raise MissingObject(sha, path) from None
    assert isinstance(obj, (Tree, Blob, Commit))  # noqa: S101 - trees never point at tags
    return obj


def _loose(store: DiskObjectStore, sha: bytes) -> Tree | Blob | Commit | None:
    """A loose object read in one go (a quarter of dulwich's cost per object: the
    repositories the local adapter writes hold every object loose), or None to let
    dulwich look (packs, alternates) and raise its own errors."""
    hexsha = sha.decode("ascii", "replace")
    try:
        with open(os.path.join(store.path, hexsha[:2], hexsha[2:]), "rb") as handle:
            raw = zlib.decompress(handle.read())
    except (OSError, zlib.error):
        return None
    header, _, body = raw.partition(b"\0")
    kind, _, size = header.partition(b" ")
    cls = _LOOSE_TYPES.get(kind)
    if cls is None or not size.isdigit() or int(size) != len(body):
        return None
    obj = cls()
    try:
        obj.set_raw_string(body, ObjectID(sha))
    except Exception:  # noqa: BLE001 - malformed: dulwich reads it again and says why
        return None
    return obj


def walk(
    store: BaseObjectStore, tree_id: bytes, prefix: str = ""
) -> Iterator[tuple[str, int, ObjectID]]:
    """Every file under a tree, depth first: (path, mode, blob id). Submodules are skipped."""
    tree = load(store, tree_id, prefix.rstrip("/"))
    assert isinstance(tree, Tree)  # noqa: S101 - callers pass tree ids
    for item in tree.iteritems():
        name = item.path.decode("utf-8", "surrogateescape")
        path = f"{prefix}{name}"
        if item.mode == DIR_MODE:
            yield from walk(store, item.sha, path + "/")
        elif item.mode in (0o100644, 0o100755, 0o120000, 0o100664):
            yield path, item.mode, item.sha


def lookup(store: BaseObjectStore, tree_id: bytes | None, path: str) -> tuple[int, ObjectID] | None:
    """(mode, sha) of the entry at `path`, or None when there is none."""
    if tree_id is None:
        return None
    current = ObjectID(tree_id)
    parts = path.split("/")
    for i, part in enumerate(parts):
        fast = _loose(store, current) if isinstance(store, DiskObjectStore) else None
        tree = fast if fast is not None else store[current]
        assert isinstance(tree, Tree)  # noqa: S101
        try:
            mode, sha = tree[part.encode()]
        except KeyError:
            return None
        if i == len(parts) - 1:
            return mode, sha
        if mode != DIR_MODE:
            return None
        current = sha
    return None  # pragma: no cover


def changed_paths(
    store: BaseObjectStore, old_tree: bytes | None, new_tree: bytes | None
) -> frozenset[str]:
    """Paths that differ between two trees (both sides of a rename)."""
    from dulwich.diff_tree import tree_changes  # loaded when used: not on a runner's path

    paths: set[str] = set()
    old, new = (ObjectID(t) if t else None for t in (old_tree, new_tree))
    for change in tree_changes(store, old, new):
        for entry in (change.old, change.new):
            if entry is not None and entry.path is not None:
                paths.add(entry.path.decode("utf-8", "surrogateescape"))
    return frozenset(paths)


def apply_edits(
    store: BaseObjectStore, base_tree: bytes | None, edits: Iterable[TreeEdit]
) -> ObjectID:
    """Write the tree that results from applying `edits` to `base_tree` (None = empty).

    Raises `InvalidRequest` when an edit deletes a missing file or puts a file where a
    folder is (or the other way round)."""
    nested: dict[str, object] = {}
    for edit in edits:
        node = nested
        parts = edit.path.split("/")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                msg = f"{edit.path}: a file and a folder would share a name"
                raise InvalidRequest(msg)
            node = child
        if isinstance(node.get(parts[-1]), dict):
            msg = f"{edit.path}: a file and a folder would share a name"
            raise InvalidRequest(msg)
        node[parts[-1]] = edit
    tree_id = _apply(store, ObjectID(base_tree) if base_tree else None, nested, "")
    return tree_id if tree_id is not None else _store(store, Tree())


def _apply(
    store: BaseObjectStore, tree_id: ObjectID | None, nested: dict[str, object], prefix: str
) -> ObjectID | None:
    tree = Tree()
    if tree_id is not None:
        base = store[tree_id]
        assert isinstance(base, Tree)  # noqa: S101
        for item in base.iteritems():
            tree.add(item.path, item.mode, item.sha)
    for name, value in nested.items():
        key = name.encode("utf-8", "surrogateescape")
        existing = tree[key] if key in tree else None  # noqa: SIM401 - Tree has no .get()
        if isinstance(value, dict):
            sub_base = ObjectID(existing[1]) if existing and existing[0] == DIR_MODE else None
            if existing and existing[0] != DIR_MODE:
                msg = f"{prefix}{name} is a file; it cannot hold other files"
                raise InvalidRequest(msg)
            sub = _apply(store, sub_base, value, f"{prefix}{name}/")
            if sub is None:
                if key in tree:
                    del tree[key]
            else:
                tree.add(key, DIR_MODE, sub)
            continue
        assert isinstance(value, TreeEdit)  # noqa: S101
        if value.sha is None:
            if existing is None or existing[0] == DIR_MODE:
                msg = f"Cannot delete {value.path}: it is not a file in the branch"
                raise InvalidRequest(msg)
            del tree[key]
        else:
            if existing is not None and existing[0] == DIR_MODE:
                msg = f"{value.path} is a folder in the branch; it cannot be a file"
                raise InvalidRequest(msg)
            tree.add(key, int(value.mode), ObjectID(value.sha))
    if not len(tree):
        return None
    return _store(store, tree)


def _store(store: BaseObjectStore, obj: Tree | Blob | Commit) -> ObjectID:
    store.add_object(obj)
    return obj.id


def add_blob(store: BaseObjectStore, data: bytes) -> ObjectID:
    """Store `data` as a blob and return its id."""
    return _store(store, Blob.from_string(data))


def make_commit(
    store: BaseObjectStore,
    tree: bytes,
    parents: Sequence[bytes],
    message: str,
    author: tuple[str, str],
    committer: tuple[str, str] | None = None,
    when: int | None = None,
) -> ObjectID:
    """Write a commit object and return its id."""
    commit = Commit()
    commit.tree = ObjectID(tree)
    commit.parents = [ObjectID(p) for p in parents]
    commit.author = f"{author[0]} <{author[1]}>".encode()
    committer = committer or author
    commit.committer = f"{committer[0]} <{committer[1]}>".encode()
    commit.commit_time = commit.author_time = int(time.time()) if when is None else when
    commit.commit_timezone = commit.author_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = message.encode()
    return _store(store, commit)


def commit_tree(store: BaseObjectStore, commit_id: bytes) -> ObjectID:
    """The tree id of a commit."""
    commit = store[ObjectID(commit_id)]
    if not isinstance(commit, Commit):
        msg = f"{commit_id.decode()} is not a commit"
        raise InvalidRequest(msg)
    return ObjectID(commit.tree)
