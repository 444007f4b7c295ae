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
from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
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


class CorruptObjects(Exception):
    """The object store cannot give what a commit or a tree refers to: the repository is
    corrupt."""


class MissingObject(CorruptObjects):
    """An object a tree refers to is not in the object store: the repository is corrupt."""

    def __init__(self, sha: bytes, path: str, problem: str = "is missing") -> None:
        self.sha, self.path = sha.decode(), path
        super().__init__(f"object {self.sha} ({path or 'the root folder'}) {problem}")


class UnreadableObject(MissingObject):
    """An object is there but cannot be read as what its tree says it is (bad zlib, a
    hash that does not match its bytes, the wrong type): the repository is corrupt."""


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


class ObjectDatabase:
    """A bare repository's objects read through libgit2 (pygit2's object database): its
    loose and pack readers, delta chains and zlib are C, and every object's bytes are
    checked against its id. Trees are parsed by dulwich (its compiled parser), so a walk
    sees exactly what a walk of the dulwich store sees. Reads only: writes go through
    dulwich. One per call and thread, like the dulwich `Repo` it sits beside."""

    def __init__(self, objects_dir: str | os.PathLike[str]) -> None:
        import pygit2  # loaded when used: a runner on GitHub or GitLab never needs it

        self._errors = (pygit2.GitError, ValueError)
        try:
            self._odb = pygit2.Odb(os.fspath(objects_dir))
        except pygit2.GitError as exc:
            msg = f"its object database cannot be opened ({exc})"
            raise CorruptObjects(msg) from None

    def _read(self, sha: bytes, path: str, kind: type[Tree | Blob]) -> bytes:
        try:
            type_num, data = self._odb.read(sha.decode("ascii"))
        except KeyError:
            raise MissingObject(sha, path) from None
        except self._errors as exc:
            raise UnreadableObject(sha, path, f"cannot be read: {exc}") from None
        if type_num != kind.type_num:
            raise UnreadableObject(sha, path, f"is not a {kind.type_name.decode()}")
        return data

    def tree(self, sha: bytes, path: str) -> Tree:
        """The tree object `sha`, parsed as dulwich parses it."""
        data = self._read(sha, path, Tree)
        try:
            tree = Tree.from_raw_string(Tree.type_num, data, ObjectID(sha))
        except Exception as exc:  # noqa: BLE001 - dulwich's parse errors have no one base
            raise UnreadableObject(sha, path, f"is not a valid tree: {exc}") from None
        assert isinstance(tree, Tree)  # noqa: S101
        return tree

    def blob(self, sha: bytes, path: str) -> bytes:
        """A file's bytes."""
        return self._read(sha, path, Blob)

    def blob_size(self, sha: bytes, path: str) -> int:
        """A file's size from its object header, without inflating it."""
        try:
            type_num, size = self._odb.read_header(sha.decode("ascii"))
        except KeyError:
            raise MissingObject(sha, path) from None
        except self._errors as exc:
            raise UnreadableObject(sha, path, f"cannot be read: {exc}") from None
        if type_num != Blob.type_num:
            raise UnreadableObject(sha, path, "is not a blob")
        return size


Objects = BaseObjectStore | ObjectDatabase
"""What trees are walked and looked up in: a dulwich store, or libgit2's reader."""


def _tree(objects: Objects, sha: bytes, path: str) -> Tree:
    if isinstance(objects, ObjectDatabase):
        return objects.tree(sha, path)
    tree = load(objects, sha, path)
    assert isinstance(tree, Tree)  # noqa: S101 - callers pass tree ids
    return tree


def walk(objects: Objects, tree_id: bytes, prefix: str = "") -> Iterator[tuple[str, int, ObjectID]]:
    """Every file under a tree, depth first: (path, mode, blob id). Submodules are skipped."""
    tree = _tree(objects, tree_id, prefix.rstrip("/"))
    for item in tree.iteritems():
        name = item.path.decode("utf-8", "surrogateescape")
        path = f"{prefix}{name}"
        if item.mode == DIR_MODE:
            yield from walk(objects, item.sha, path + "/")
        elif item.mode in (0o100644, 0o100755, 0o120000, 0o100664):
            yield path, item.mode, item.sha


def lookup(objects: Objects, tree_id: bytes | None, path: str) -> tuple[int, ObjectID] | None:
    """(mode, sha) of the entry at `path`, or None when there is none."""
    if tree_id is None:
        return None
    current = ObjectID(tree_id)
    parts = path.split("/")
    for i, part in enumerate(parts):
        if isinstance(objects, ObjectDatabase):
            tree: ShaFile = objects.tree(current, "/".join(parts[:i]))
        else:
            fast = _loose(objects, current) if isinstance(objects, DiskObjectStore) else None
            tree = fast if fast is not None else objects[current]
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
