"""The embedded default: a bare repository on disk. Files are read through libgit2
(`gitobjects.ObjectDatabase`: C pack and loose readers); refs, commits, history and every
write go through dulwich.

Ref updates are compare-and-swap under git's own `.lock` files, so several processes (or
threads) committing to one branch never lose a commit or move a branch backwards. A swap
lost to another writer, or to its lock, is tried again by `ForgeBase`'s race, through the
one retry mechanism.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.file import FileLocked
from dulwich.graph import find_merge_base
from dulwich.merge import three_way_merge
from dulwich.object_store import DiskObjectStore
from dulwich.objects import Commit, ObjectID
from dulwich.refs import Ref
from dulwich.repo import Repo
from dulwich.walk import Walker

from providers import contract, gitobjects
from providers.base import Attempt, Draft, ForgeBase, Landed, Missing, Moved
from providers.config import ForgeConfig, system_author
from providers.contract import FileMode
from providers.errors import AlreadyExists, Conflict, InvalidRequest, NotFound, Unavailable
from providers.names import (
    branch_clash,
    branch_clash_error,
    check_branch_name,
    check_repo_path,
    is_sha,
)
from providers.retry import LostRace, Pause


def _person(identity: bytes, when: int, offset_seconds: int) -> contract.Person:
    name, _, email = identity.decode("utf-8", "replace").partition(" <")
    return contract.Person(name, email.rstrip(">"), when, offset_seconds // 60)


class LocalForge(ForgeBase):
    """A bare git repository in a folder. It has no pull requests (promotions are applied
    at once) and no branch protection of its own: read-only branches come from the
    settings' protected globs."""

    capabilities = contract.Capabilities(
        symlinks=True, executable_bit=True, verified_commits=False, change_requests=False
    )
    race_attempts = 200
    race_pause = Pause(0.002, 0.02)
    """A lost swap here costs microseconds, so writers come back soon."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__(config)
        self.path = Path(config.location.api_url)
        self.web_url = config.location.web_url
        self.default_author = config.default_author or system_author()
        self.limits = config.archive_limits

    @classmethod
    def create(cls, config: ForgeConfig, default_branch: str = "main") -> LocalForge:
        """Initialise an empty bare repository at the configured path if none is there."""
        path = Path(config.location.api_url)
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            repo = Repo.init_bare(str(path))
            repo.refs.set_symbolic_ref(Ref(b"HEAD"), gitobjects.branch_ref(default_branch))
            repo.close()
        return cls(config)

    @contextmanager
    def _repo(self) -> Iterator[Repo]:
        try:
            repo = Repo(str(self.path))
        except (NotGitRepository, FileNotFoundError) as exc:
            msg = f"There is no git repository at {self.path}"
            raise NotFound(
                msg,
                "Check MELTANO_FORGE_REPO, or run `meltano-forge init` to create one",
            ) from exc
        try:
            yield repo
        except gitobjects.CorruptObjects as exc:
            msg = f"The repository at {self.path} is corrupt: {exc}"
            raise Unavailable(
                msg, "Restore it from a backup (`git fsck` lists every missing object)"
            ) from exc
        finally:
            repo.close()

    def repository(self) -> contract.RepositoryInfo:
        """Default branch from HEAD; a local repository has no forge-side protections."""
        with self._repo() as repo:
            target = repo.refs.get_symrefs().get(Ref(b"HEAD"), gitobjects.branch_ref("main"))
            default = target.decode().removeprefix("refs/heads/")
            empty = not any(True for _ in repo.refs.keys(base=gitobjects.HEADS))
        owner = self.path.stat().st_uid == os.getuid()  # a local repository's admin owns it
        return contract.RepositoryInfo(
            default, self.web_url, empty, None, os.access(self.path, os.W_OK), owner
        )

    def branches(self) -> list[contract.Branch]:
        """All `refs/heads/*`, sorted by name."""
        with self._repo() as repo:
            heads = repo.refs.as_dict(gitobjects.HEADS)
        return sorted(
            (contract.Branch(name.decode(), sha.decode()) for name, sha in heads.items()),
            key=lambda b: b.name,
        )

    def branch(self, name: str) -> contract.Branch:
        """One branch, or `NotFound`."""
        check_branch_name(name)
        head = self._head(name)
        if head is None:
            msg = f"The branch '{name}' does not exist"
            raise NotFound(msg)
        return contract.Branch(name, head, can_push=self._writable())

    def _writable(self) -> bool:
        """A local repository's permission is the filesystem's."""
        return all(os.access(self.path / folder, os.W_OK) for folder in ("objects", "refs/heads"))

    def _head(self, name: str) -> str | None:
        with self._repo() as repo:
            value = repo.refs.as_dict(gitobjects.HEADS).get(Ref(name.encode()))
        return value.decode() if value else None

    def _create_branch_once(self, name: str, from_sha: str) -> contract.Branch:
        """Create `name` at `from_sha`; clashes with branch folders are refused before the
        ref is written (a ref file where a folder should be would break the repository)."""
        existing = [b.name for b in self.branches()]
        clash = branch_clash(name, existing)
        if clash:
            raise branch_clash_error(name, clash)
        with self._repo() as repo:
            self._commit_object(repo, from_sha)
            if not repo.refs.add_if_new(gitobjects.branch_ref(name), gitobjects.oid(from_sha)):
                msg = f"The branch '{name}' already exists"
                raise AlreadyExists(msg)
        return contract.Branch(name, from_sha)

    @contextmanager
    def archive(self, ref: str, path: str = "") -> Iterator[contract.Snapshot]:
        """Stream the tree at a commit or branch straight from the object store."""
        sha = ref if is_sha(ref) else self.branch(ref).head
        with self._repo() as repo:
            tree = self._commit_object(repo, sha).tree
            objects = self._objects(repo)
            yield contract.Snapshot(sha, self._entries(objects, tree, path.strip("/")))

    @staticmethod
    def _objects(repo: Repo) -> gitobjects.ObjectDatabase:
        """libgit2's reader on the repository's objects, for this call only."""
        store = repo.object_store
        assert isinstance(store, DiskObjectStore)  # noqa: S101 - Repo() is always on disk
        return gitobjects.ObjectDatabase(store.path)

    @staticmethod
    def _entries(
        objects: gitobjects.ObjectDatabase, tree: ObjectID, folder: str
    ) -> Iterator[contract.ArchiveEntry]:
        """The files under `folder` (all when empty), with their repository paths."""
        prefix = ""
        if folder:
            found = gitobjects.lookup(objects, tree, folder)
            if found is None or found[0] != gitobjects.DIR_MODE:
                return
            tree, prefix = found[1], folder + "/"
        modes: dict[int, FileMode] = {}
        for path, mode, sha in gitobjects.walk(objects, tree, prefix):
            data = objects.blob(sha, path)
            kind = modes.get(mode) or modes.setdefault(mode, FileMode.parse(mode))
            yield contract.ArchiveEntry(path, kind, len(data), io.BytesIO(data))

    def read_file(self, sha: str, path: str) -> bytes:
        """One file's bytes at a commit."""
        check_repo_path(path)
        with self._repo() as repo:
            objects = self._objects(repo)
            found = gitobjects.lookup(objects, self._commit_object(repo, sha).tree, path)
            if found is None or found[0] == gitobjects.DIR_MODE:
                msg = f"{path} does not exist at {sha[:12]}"
                raise NotFound(msg)
            return objects.blob(found[1], path)

    def list_tree(self, sha: str) -> list[contract.TreeEntry]:
        """Every file at a commit with its blob id and size (from each object's header)."""
        with self._repo() as repo:
            objects = self._objects(repo)
            return [
                contract.TreeEntry(
                    path, FileMode.parse(mode), blob_id.decode(), objects.blob_size(blob_id, path)
                )
                for path, mode, blob_id in gitobjects.walk(
                    objects, self._commit_object(repo, sha).tree
                )
            ]

    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """Paths that differ between two commits."""
        with self._repo() as repo:
            return self._changed(repo, base_sha, head_sha)

    def _changed(self, repo: Repo, base_sha: str | None, head_sha: str) -> frozenset[str]:
        base = self._commit_object(repo, base_sha).tree if base_sha else None
        return gitobjects.changed_paths(
            repo.object_store, base, self._commit_object(repo, head_sha).tree
        )

    @staticmethod
    def _commit_object(repo: Repo, sha: str) -> Commit:
        if not is_sha(sha):
            msg = f"'{sha}' is not a commit SHA"
            raise InvalidRequest(msg)
        try:
            obj = repo.object_store[gitobjects.oid(sha)]
        except KeyError:
            msg = f"The commit {sha} does not exist in {repo.path}"
            raise NotFound(msg) from None
        if not isinstance(obj, Commit):
            msg = f"{sha} is not a commit"
            raise InvalidRequest(msg)
        return obj

    def _commit_once(self, draft: Draft, head: str | None) -> Attempt:
        """Build the commit on the current head, and swap the ref if it is still there."""
        with self._repo() as repo:
            current = self._current(repo, gitobjects.branch_ref(draft.branch))
            if current is None:
                return Missing()
            if head is not None and current != head:
                return Moved(head, current)
            return self._land(repo, draft, current, current)

    def _start_branch(self, draft: Draft, start: str | None) -> Attempt:
        """Build the commit on `start` and add the ref if nobody made it meanwhile."""
        with self._repo() as repo:
            return self._land(repo, draft, start, None)

    def _land(self, repo: Repo, draft: Draft, parent: str | None, old: str | None) -> Attempt:
        """Build the draft's commit on `parent` and swap the branch from `old` to it (None:
        create the branch); where the branch is when another writer got there first."""
        ref = gitobjects.branch_ref(draft.branch)
        new = self._build(repo, parent, draft)
        if self._swap(repo, ref, old, new):
            return Landed(new, parent)
        now = self._current(repo, ref)
        return Missing() if now is None else Moved(old, now)

    def _build(self, repo: Repo, parent: str | None, draft: Draft) -> str:
        """Write the blobs, tree and commit of the draft on `parent`; the new commit's id."""
        store = repo.object_store
        edits = [
            gitobjects.TreeEdit(
                c.path, c.mode, None if c.content is None else gitobjects.add_blob(store, c.content)
            )
            for c in draft.changes
        ]
        base_tree = self._commit_object(repo, parent).tree if parent else None
        tree = gitobjects.apply_edits(store, base_tree, edits)
        parents = [gitobjects.oid(parent)] if parent else []
        who = draft.author or self.default_author
        author = (who.name, who.email)
        return gitobjects.make_commit(store, tree, parents, draft.message, author).decode()

    def _default_branch(self) -> str:
        return self.repository().default_branch

    @staticmethod
    def _current(repo: Repo, ref: Ref) -> str | None:
        value = repo.refs.as_dict(gitobjects.HEADS).get(Ref(ref.removeprefix(b"refs/heads/")))
        return value.decode() if value else None

    @staticmethod
    def _swap(repo: Repo, ref: Ref, old: str | None, new: str | ObjectID) -> bool:
        """Move `ref` from `old` (None: create it) to `new`; False when another writer moved
        it first or holds its lock (the caller's retry waits, never this)."""
        try:
            if old is None:
                return bool(repo.refs.add_if_new(ref, gitobjects.oid(new)))
            return bool(repo.refs.set_if_equals(ref, gitobjects.oid(old), gitobjects.oid(new)))
        except FileLocked:
            return False

    def commit_meta(self, sha: str) -> contract.CommitMeta:
        """The commit object itself, and its fields."""
        with self._repo() as repo:
            commit = self._commit_object(repo, sha)
            return contract.CommitMeta(
                sha,
                tuple(p.decode() for p in commit.parents),
                _person(commit.author, commit.author_time, commit.author_timezone),
                _person(commit.committer, commit.commit_time, commit.commit_timezone),
                commit.message.decode("utf-8", "replace"),
                commit.tree.decode(),
                commit.gpgsig.decode("utf-8", "replace") if commit.gpgsig else None,
                commit.as_raw_string(),
            )

    def history(self, sha: str, limit: int) -> list[contract.CommitMeta]:
        """`git log` order from `sha`."""
        with self._repo() as repo:
            self._commit_object(repo, sha)
            walker = Walker(repo.object_store, [gitobjects.oid(sha)], max_entries=limit)
            shas = [entry.commit.id.decode() for entry in walker]
        return [self.commit_meta(s) for s in shas]

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """Counted by walking both sides past their merge base."""
        with self._repo() as repo:
            store = repo.object_store
            ahead = sum(1 for _ in Walker(store, [gitobjects.oid(head)], [gitobjects.oid(base)]))
            behind = sum(1 for _ in Walker(store, [gitobjects.oid(base)], [gitobjects.oid(head)]))
        return ahead, behind

    def _find_change_request(self, source: str, target: str) -> contract.ChangeRequest | None:
        """A bare repository has no change requests to find."""
        return None

    def _open_change_request_once(
        self, source: str, target: str, title: str, body: str
    ) -> contract.ChangeRequest:
        """A bare repository has no pull requests, so the promotion is applied at once: a
        fast-forward when `target` has no commits of its own, else a merge commit of a
        clean three-way merge. Files changed on both sides refuse with `Conflict`."""

        def attempt() -> contract.ChangeRequest:
            with self._repo() as repo:
                src = self._current(repo, gitobjects.branch_ref(source))
                dst = self._current(repo, gitobjects.branch_ref(target))
                if src is None or dst is None:
                    missing = source if src is None else target
                    msg = f"The branch '{missing}' does not exist"
                    raise NotFound(msg)
                outcome = self._promotion(repo, source, target, src, dst, f"{title}\n\n{body}")
            if outcome is None:
                raise LostRace  # the target moved while we merged: try again on its new head
            return contract.ChangeRequest(0, self.web_url, source, target, True, True, outcome)

        def gave_up() -> Unavailable:
            msg = f"The branch '{target}' is being updated too often to promote into"
            return Unavailable(msg, "Try again in a moment")

        return self._retrier.contend(
            attempt, tries=self.race_attempts, pause=self.race_pause, gave_up=gave_up
        )

    def _promotion(
        self, repo: Repo, source: str, target: str, src: str, dst: str, message: str
    ) -> str | None:
        """Move `target` to hold `source`; the detail, or None when `target` moved."""
        bases = find_merge_base(repo, [gitobjects.oid(dst), gitobjects.oid(src)])
        base = bases[0].decode() if bases else None
        if base == src:
            return f"'{target}' already holds every commit of '{source}'"
        ref = gitobjects.branch_ref(target)
        if base == dst:
            if not self._swap(repo, ref, dst, gitobjects.oid(src)):
                return None
            return f"fast-forwarded '{target}' from {dst[:12]} to {src[:12]}"
        tree, conflicts = three_way_merge(
            repo.object_store,
            self._commit_object(repo, base) if base else None,
            self._commit_object(repo, dst),
            self._commit_object(repo, src),
        )
        if conflicts:
            raise Conflict(
                (c.decode("utf-8", "surrogateescape") for c in conflicts),
                f"'{source}' and '{target}' both changed the same lines",
                f"Bring '{target}' into '{source}' first, settle the differences there, "
                "and promote again",
            )
        repo.object_store.add_object(tree)
        who = self.default_author
        new = gitobjects.make_commit(
            repo.object_store,
            tree.id,
            [gitobjects.oid(dst), gitobjects.oid(src)],
            message,
            (who.name, who.email),
        )
        if not self._swap(repo, ref, dst, new):
            return None
        return f"merged into '{target}' as {new.decode()[:12]}"

    def close(self) -> None:
        """Nothing is held open between calls."""
