"""A shallow `.git` beside the workspace's files (opt-in), for people who do have git.

Written through dulwich, never by a git binary: HEAD on the workspace's branch, `origin`
pointing at the forge (no credentials in it), the base commit and its trees and blobs marked
shallow, and an index whose stat data are the files' own, so `git status` is clean right
after a pull and `git diff` shows what `meltano-forge diff` shows. It follows every
manifest change: pull, commit, checkout, restore.

The forges' APIs give a commit's fields, not its object, so the object is rebuilt and must
hash to the very same id: GitHub gives times in UTC only, so the timezone is searched among
the world's offsets; a signed commit comes back whole from its verification payload. A
commit that cannot be rebuilt exactly leaves the `.git` as it was, with a warning.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from dulwich.index import Index, IndexEntry, index_entry_from_stat
from dulwich.objects import Blob, Commit, ShaFile
from dulwich.refs import Ref
from dulwich.repo import Repo

from client.manifest import STATE_DIR, FileRecord, Manifest
from providers import gitobjects
from providers.contract import CommitMeta, FileMode, Forge, Person
from providers.errors import ProviderError

log = logging.getLogger(__name__)
OFFSETS = sorted({h * 60 + m for h in range(-12, 15) for m in (0, 15, 30, 45)}, key=abs)
"""Every UTC offset in use (minutes), nearest to UTC first."""


def _stamp(person: Person, offset: int) -> bytes:
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset), 60)
    return f"{person.name} <{person.email}> {person.time} {sign}{hours:02}{minutes:02}".encode()


def _candidates(meta: CommitMeta, tree: str) -> Iterator[bytes]:
    if meta.raw is not None:
        yield meta.raw
        return
    head = f"tree {tree}\n".encode() + b"".join(f"parent {p}\n".encode() for p in meta.parents)
    authors = [meta.author.offset] if meta.author.offset is not None else OFFSETS
    committers = [meta.committer.offset] if meta.committer.offset is not None else OFFSETS
    messages = dict.fromkeys([meta.message, meta.message + "\n", meta.message.rstrip("\n") + "\n"])
    for message, encoding in itertools.product(messages, (b"", b"encoding UTF-8\n")):
        body = message.encode()
        for author, committer in itertools.product(authors, committers):
            yield (
                head
                + b"author "
                + _stamp(meta.author, author)
                + b"\ncommitter "
                + _stamp(meta.committer, committer)
                + b"\n"
                + encoding
                + b"\n"
                + body
            )


def rebuild(meta: CommitMeta, tree: str) -> bytes | None:
    """The commit object with exactly the id `meta.sha`, or None when it cannot be found."""
    for raw in _candidates(meta, tree):
        digest = hashlib.sha1(b"commit %d\x00" % len(raw) + raw, usedforsecurity=False)
        if digest.hexdigest() == meta.sha:
            return raw
    return None


class GitMirror:
    """The `.git` of one workspace."""

    def __init__(self, root: Path, forge: Forge, remote: str) -> None:
        self.root = root
        self.forge = forge
        self.remote = remote

    def sync(self, manifest: Manifest, unchanged: set[str]) -> None:
        """Make `.git` agree with the manifest; `unchanged` lists the files still as
        recorded (their stat data go into the index; the others are left for git to hash)."""
        git = self.root / ".git"
        repo = Repo(str(self.root)) if git.is_dir() else Repo.init(str(self.root))
        exclude = Path(repo.controldir()) / "info" / "exclude"
        rule = f"/{STATE_DIR}/"
        known = exclude.read_text() if exclude.exists() else ""
        if rule not in known.splitlines():  # meltano-forge's own state is nobody's change
            exclude.parent.mkdir(exist_ok=True)
            exclude.write_text(
                known + ("" if known.endswith("\n") or not known else "\n") + rule + "\n"
            )
        try:
            if not self._commit(repo, manifest, unchanged):
                return
            self._refs(repo, manifest)
            self._index(repo, manifest, unchanged)
        finally:
            repo.close()

    def _commit(self, repo: Repo, manifest: Manifest, unchanged: set[str]) -> bool:
        store = repo.object_store
        sha = gitobjects.oid(manifest.base_sha)
        if sha in store:
            return True
        edits = []
        for rel, record in manifest.files.items():
            blob = gitobjects.oid(record.sha)
            if blob not in store:
                store.add_object(Blob.from_string(self._blob(manifest, rel, record, unchanged)))
            edits.append(gitobjects.TreeEdit(rel, record.file_mode, blob))
        tree = gitobjects.apply_edits(store, None, edits).decode()
        try:
            meta = self.forge.commit_meta(manifest.base_sha)
        except ProviderError as exc:
            log.warning("the .git folder was not updated: %s", exc)
            return False
        if meta.tree is not None and meta.tree != tree:
            log.warning(
                "the .git folder was not updated: the forge's tree of %s is not the files "
                "it served (export-ignore in .gitattributes?)",
                manifest.base_sha[:12],
            )
            return False
        raw = rebuild(meta, tree)
        if raw is None:
            log.warning(
                "the .git folder was not updated: commit %s could not be rebuilt exactly",
                manifest.base_sha[:12],
            )
            return False
        store.add_object(ShaFile.from_raw_string(Commit.type_num, raw))
        (Path(repo.controldir()) / "shallow").write_text(manifest.base_sha + "\n")
        return True

    def _blob(self, manifest: Manifest, rel: str, record: FileRecord, unchanged: set[str]) -> bytes:
        if rel in unchanged:
            path = self.root / rel
            if record.file_mode is FileMode.SYMLINK:
                return os.readlink(path).encode("utf-8", "surrogateescape")
            return path.read_bytes()
        return self.forge.read_file(manifest.base_sha, manifest.repo_path(rel))

    def _refs(self, repo: Repo, manifest: Manifest) -> None:
        branch = gitobjects.branch_ref(manifest.branch)
        sha = gitobjects.oid(manifest.base_sha)
        repo.refs[branch] = sha
        repo.refs[Ref(f"refs/remotes/origin/{manifest.branch}".encode())] = sha
        repo.refs.set_symbolic_ref(Ref(b"HEAD"), branch)
        config = repo.get_config()
        config.set((b"remote", b"origin"), b"url", self.remote.encode())
        config.set((b"remote", b"origin"), b"fetch", b"+refs/heads/*:refs/remotes/origin/*")
        section = (b"branch", manifest.branch.encode())
        config.set(section, b"remote", b"origin")
        config.set(section, b"merge", branch)
        config.write_to_path()

    def _index(self, repo: Repo, manifest: Manifest, unchanged: set[str]) -> None:
        index = Index(repo.index_path(), read=False)
        for rel, record in sorted(manifest.files.items()):
            sha = gitobjects.oid(record.sha)
            if rel in unchanged:
                entry = index_entry_from_stat(os.lstat(self.root / rel), sha, record.mode)
            else:  # stat data that never match, so git hashes the file and sees the edit
                entry = IndexEntry(0, 0, 0, 0, record.mode, 0, 0, 0, sha)
            index[rel.encode("utf-8", "surrogateescape")] = entry
        index.write()
