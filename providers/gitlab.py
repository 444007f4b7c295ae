"""GitLab (gitlab.com and self-managed, nested groups included) through python-gitlab.

A commit is one `POST /projects/:id/repository/commits` with create, update, delete and
chmod actions. Every update and delete carries `last_commit_id` = the expected head:
GitLab refuses the whole commit when that file's last change differs between the branch
and that commit, and otherwise applies the actions on the branch's current head. That is
exactly "rebase when disjoint, conflict when overlapping", in one request. Creating a
file that appeared upstream fails too, and also becomes a `Conflict`.

python-gitlab retries 429s and, when asked, POSTs by itself; both are switched off so the
`Retrier` decides, and a commit whose response was lost is looked for on the branch
before it is sent again. The commit policy is `ForgeBase`'s; this module only says how
GitLab makes one attempt.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import itertools
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, ClassVar, TypeVar

import gitlab
import requests
from gitlab.exceptions import GitlabAuthenticationError, GitlabError

from providers import changeset, contract, same_origin, tree_snapshot
from providers.base import Attempt, Draft, ForgeBase, Landed, Missing
from providers.config import ForgeConfig
from providers.contract import FileMode
from providers.errors import (
    AlreadyExists,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    RateLimited,
    Refused,
    from_status,
    token_refused,
    unanswered,
)
from providers.names import check_branch_name, check_repo_path, is_sha

T = TypeVar("T")
_GITLAB = "GitLab"
log = logging.getLogger(__name__)

_STALE_MESSAGES = (
    "has changed since you started editing it",
    "a file with this name already exists",
    "a file with this name doesn't exist",
)


class _Gitlab(gitlab.Gitlab):
    """python-gitlab with its own retry loop off (the adapter's `Retrier` decides), and
    its token sent to the configured API only: a `Link: rel="next"` to another host is
    refused before anything is sent, and a redirect elsewhere loses the token."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, session=same_origin.SameOriginSession(), keep_base_url=True, **kwargs)

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> requests.Response:
        same_origin.check(self._build_url(path), self._url)
        kwargs["obey_rate_limit"] = False
        kwargs["retry_transient_errors"] = False
        kwargs["max_retries"] = 0
        return super().http_request(verb, path, *args, **kwargs)


class _LastHeaders(threading.local):
    headers: dict[str, str]

    def __init__(self) -> None:
        self.headers = {}


@contextmanager
def map_gitlab_errors(action: str, last: _LastHeaders, token_set: bool = True) -> Iterator[None]:
    """Translate python-gitlab and requests errors into the provider error tree.
    python-gitlab drops response headers from its exceptions, so the last response's
    headers (for Retry-After) come from a session hook."""
    try:
        yield
    except ProviderError:
        raise
    except GitlabAuthenticationError as exc:
        raise token_refused(_GITLAB, action, token_set) from exc
    except GitlabError as exc:
        raise _translate(exc, action, last.headers, token_set) from exc
    except requests.RequestException as exc:
        raise unanswered(_GITLAB, action, exc) from exc


def _translate(
    exc: GitlabError, action: str, headers: dict[str, str], token_set: bool
) -> ProviderError:
    return from_status(
        exc.response_code or 0,
        forge=_GITLAB,
        action=action,
        detail=str(exc.error_message),
        headers=headers,
        token_set=token_set,
    )


def _gitlab_person(name: str, email: str, date: str) -> contract.Person:
    when = dt.datetime.fromisoformat(date.replace("Z", "+00:00"))
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else None
    return contract.Person(name, email, int(when.timestamp()), minutes)


class GitLabForge(ForgeBase):
    """A project on gitlab.com or a self-managed GitLab."""

    capabilities = contract.Capabilities(
        symlinks=False, executable_bit=True, verified_commits=False, change_requests=True
    )
    """The commits API has `chmod` for the execute bit, but no way to write a symlink."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__(config)
        token = self._token()
        base = config.location.api_url.removesuffix("/api/v4")
        self._gl = _Gitlab(
            base,
            private_token=token,
            timeout=config.timeout,
            user_agent=config.user_agent,
            per_page=100,
        )
        self._last = _LastHeaders()
        self._gl.session.hooks["response"].append(self._remember_headers)
        self._path = config.location.path
        self._project = self._gl.projects.get(self._path, lazy=True)
        self._user_id: int | None = None

    def _remember_headers(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._last.headers = dict(response.headers)

    def _call(
        self, action: str, fn: Callable[[], T], verify: Callable[[], T | None] | None = None
    ) -> T:
        return self._retrier.mapped(
            lambda: map_gitlab_errors(action, self._last, self._token_set), fn, verify
        )

    # ---- reads -----------------------------------------------------------------------
    def repository(self) -> contract.RepositoryInfo:
        """Project defaults plus protected branch names when the token may read them."""
        project = self._call("read the project", lambda: self._gl.projects.get(self._path))
        try:
            protected = tuple(
                p.name
                for p in self._call(
                    "read protected branches",
                    lambda: self._project.protectedbranches.list(get_all=True),
                )
            )
        except (PermissionDenied, NotFound):
            protected = None
        return contract.RepositoryInfo(
            project.default_branch or "main",
            project.web_url,
            bool(project.empty_repo),
            protected,
            _at_least(getattr(project, "permissions", None), DEVELOPER),
            _at_least(getattr(project, "permissions", None), MAINTAINER),
        )

    def branches(self) -> list[contract.Branch]:
        """Every branch (100 a page)."""
        return self._call(
            "list branches",
            lambda: [
                contract.Branch(b.name, b.commit["id"], bool(b.protected))
                for b in self._project.branches.list(iterator=True)
            ],
        )

    def branch(self, name: str) -> contract.Branch:
        """One branch, in one request, with GitLab's own `can_push` for this token."""
        check_branch_name(name)
        b = self._call(f"read branch '{name}'", lambda: self._project.branches.get(name))
        can_push = getattr(b, "can_push", None)
        return contract.Branch(
            b.name, b.commit["id"], bool(b.protected), None if can_push is None else bool(can_push)
        )

    def _create_branch_once(self, name: str, from_sha: str) -> contract.Branch:
        """POST /repository/branches."""
        try:
            self._call(
                f"create branch '{name}'",
                lambda: self._project.branches.create({"branch": name, "ref": from_sha}),
            )
        except Refused as exc:
            if "already exists" in exc.message.lower():
                msg = f"The branch '{name}' already exists"
                raise AlreadyExists(msg) from exc
            raise
        return contract.Branch(name, from_sha)

    # ---- the archive, and the same snapshot file by file when it is rate limited ----
    fallback_after: ClassVar[float] = 5.0
    """Seconds of `Retry-After` worth waiting for an archive; past them the snapshot is read
    file by file (gitlab.com allows 5 archive downloads a minute per user and project, and
    answers the sixth with a wait of up to a minute)."""
    fallback_max_files: ClassVar[int] = 400
    """Most blobs read file by file; a larger tree waits for the archive instead. The
    break-even of a fleet: gitlab.com allows 2,000 API requests a minute per user, and 15
    runners refused together reading 400 files each need about the 6,000 requests that
    the 3 minutes of waiting for the archive (5 a minute) would allow."""
    fallback_workers: ClassVar[int] = 8
    """Blob requests in flight at once while reading file by file."""
    archive_route = ""
    """How the last snapshot was read: 'archive', or 'files' (the tree and its blobs)."""

    @contextmanager
    def archive(self, ref: str, path: str = "") -> Iterator[contract.Snapshot]:
        """One archive request by SHA or branch; `path` narrows it on the server. The pax
        header pins the SHA. When GitLab's archive limit asks for a wait longer than
        `fallback_after`, the same snapshot comes from the tree and blob APIs instead."""
        folder = path.strip("/")
        limited: _ArchiveLimited | None = None
        try:
            chunks = self._archive_request(ref, folder, fall_back=True)
        except _ArchiveLimited as exc:
            limited = exc
        if limited is not None:
            listed = self._fallback_listing(ref, folder, limited)
            if listed is not None:
                sha, files = listed
                entries = tree_snapshot.blob_entries(
                    files,
                    self._blob,
                    limits=self.config.archive_limits,
                    workers=self.fallback_workers,
                )
                self.archive_route = "files"
                try:
                    yield contract.Snapshot(sha, entries)
                finally:
                    entries.close()
                return
            chunks = self._archive_request(ref, folder, fall_back=False)
        self.archive_route = "archive"
        try:
            with self._snapshot(ref, self._body(chunks), folder) as snapshot:
                yield snapshot
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _archive_request(self, ref: str, folder: str, *, fall_back: bool) -> Iterator[bytes]:
        """GET /repository/archive.tar.gz, streamed. With `fall_back`, a 429 asking for a
        longer wait than `fallback_after` (or for none) raises `_ArchiveLimited` at once."""
        action = f"download the archive of {ref}"
        kwargs: dict[str, Any] = {"path": folder} if folder else {}

        def attempt() -> Iterator[bytes]:
            try:
                with map_gitlab_errors(action, self._last, self._token_set):
                    chunks: Iterator[bytes] = self._project.repository_archive(
                        sha=ref,
                        streamed=True,
                        iterator=True,
                        chunk_size=64 * 1024,
                        format="tar.gz",
                        **kwargs,
                    )
                    return chunks
            except RateLimited as exc:
                wait = None if exc.retry_at is None else exc.retry_at.timestamp() - time.time()
                if fall_back and (wait is None or wait > self.fallback_after):
                    raise _ArchiveLimited(exc, wait) from exc
                raise

        return self._call(action, attempt)

    def _fallback_listing(
        self, ref: str, folder: str, limited: _ArchiveLimited
    ) -> tuple[str, list[contract.TreeEntry]] | None:
        """The commit and its files under `folder`, when reading them one by one fits
        `fallback_max_files`; None sends the caller back to wait for the archive."""
        sha = ref if is_sha(ref) else self._resolve(ref)
        files = self._keyset_tree(sha, folder)
        blobs = len({f.sha for f in files} - {tree_snapshot.EMPTY_BLOB})
        wait = "" if limited.wait is None else f" (the next is allowed in {limited.wait:.0f}s)"
        if blobs > self.fallback_max_files:
            log.info(
                "GitLab's archive download limit was reached%s; %d files are too many to "
                "read one by one, so waiting for the archive",
                wait,
                blobs,
            )
            return None
        log.info(
            "GitLab's archive download limit was reached%s: reading the %d files of %s "
            "one by one instead",
            wait,
            len(files),
            sha[:12],
        )
        return sha, files

    def _resolve(self, ref: str) -> str:
        """A branch or tag's commit (GET /repository/commits/:ref)."""
        commit = self._call(f"read {ref}", lambda: self._project.commits.get(ref))
        return str(commit.id)

    def _keyset_tree(self, sha: str, folder: str) -> list[contract.TreeEntry]:
        """The recursive tree's files, 100 entries a page with keyset pagination (only the
        next page's token is taken from the `Link` header, never its host; a GitLab that
        answers with page numbers instead is followed by `x-next-page`)."""
        path = f"/projects/{self._project.encoded_id}/repository/tree"
        query: dict[str, Any] = {
            "ref": sha,
            "recursive": "true",
            "per_page": 100,
            "pagination": "keyset",
        }
        if folder:
            query["path"] = folder
        files: list[contract.TreeEntry] = []
        while True:
            response = self._call(
                "list the tree",
                functools.partial(self._gl.http_request, "get", path, query_data=dict(query)),
            )
            files += [
                contract.TreeEntry(i["path"], FileMode.parse(i["mode"]), i["id"], -1)
                for i in response.json()
                if i.get("type") == "blob"
            ]
            following = _next_page(response)
            if following is None:
                return files
            query.update(following)

    def _blob(self, sha: str, path: str) -> IO[bytes]:
        """GET /repository/blobs/:sha/raw, checked against `sha` (retried whole)."""
        url = f"/projects/{self._project.encoded_id}/repository/blobs/{sha}/raw"
        action = f"read {path}"

        def once() -> IO[bytes]:
            response = self._gl.http_request("get", url, streamed=True)
            try:
                with map_gitlab_errors(action, self._last, self._token_set):
                    return tree_snapshot.spool(
                        response.iter_content(64 * 1024), sha, path, self.config.archive_limits
                    )
            finally:
                response.close()

        return self._call(action, once)

    def _body(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        with map_gitlab_errors("download the archive", self._last, self._token_set):
            yield from chunks

    def read_file(self, sha: str, path: str) -> bytes:
        """The raw file endpoint."""
        check_repo_path(path)
        data = self._call(f"read {path}", lambda: self._project.files.raw(file_path=path, ref=sha))
        assert isinstance(data, bytes)  # noqa: S101 - raw() without streaming returns bytes
        return data

    def list_tree(self, sha: str) -> list[contract.TreeEntry]:
        """The recursive tree, 100 entries a page. GitLab's listing has no sizes (-1)."""
        items = self._call(
            "list the tree",
            lambda: list(self._project.repository_tree(ref=sha, recursive=True, iterator=True)),
        )
        return [
            contract.TreeEntry(i["path"], FileMode.parse(i["mode"]), i["id"], -1)
            for i in items
            if i["type"] == "blob"
        ]

    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """From the compare API (both sides of renames)."""
        result: Any = self._call(
            "compare commits", lambda: self._project.repository_compare(base_sha, head_sha)
        )
        return frozenset(p for d in result["diffs"] for p in (d["old_path"], d["new_path"]) if p)

    # ---- commits ---------------------------------------------------------------------
    def _commit_once(self, draft: Draft, head: str | None) -> Attempt:
        """One commits-API request; GitLab itself checks each file against `head` and
        applies the actions on the branch's current head, so it rebases by itself and
        refuses overlaps, which become `Conflict` here."""
        try:
            created = self._post_commit(draft, self._actions(draft.changes, head))
        except Refused as exc:
            lowered = exc.message.lower()
            if "only create or edit files when you are on a branch" in lowered:
                return Missing()
            if not any(m in lowered for m in _STALE_MESSAGES):
                raise
            current = self.branch(draft.branch).head
            touched = changeset.paths(draft.changes)
            raise Conflict(touched & self._changed_since(head, current) or touched) from exc
        parents = list(created.parent_ids or [])
        return Landed(created.id, parents[0] if parents else None)

    def _start_branch(self, draft: Draft, start: str | None) -> Attempt:
        """The same request, with GitLab's `start_sha`: the branch and its commit at once."""
        created = self._post_commit(draft, self._actions(draft.changes, None), start)
        parents = list(created.parent_ids or [])
        return Landed(created.id, parents[0] if parents else None)

    def _post_commit(
        self, draft: Draft, actions: list[dict[str, Any]], start: str | None = None
    ) -> Any:
        """POST /repository/commits (with `start_sha` for a new branch); after a lost
        response, the branch is looked at before anything is sent again."""
        payload: dict[str, Any] = {
            "branch": draft.branch,
            "commit_message": draft.message,
            "actions": actions,
        }
        if draft.author:
            payload.update(author_name=draft.author.name, author_email=draft.author.email)
        if start is not None:
            payload["start_sha"] = start
        return self._call(
            f"commit to '{draft.branch}'",
            lambda: self._project.commits.create(payload),
            verify=lambda: self._find_landed(draft),
        )

    def _default_branch(self) -> str:
        return self.repository().default_branch

    def _actions(
        self, changes: Sequence[contract.FileChange], expected_head: str | None
    ) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = []
        for change in changes:
            if FileMode.SYMLINK in (change.mode, change.base_mode) and not change.is_delete:
                msg = f"{change.path}: GitLab's commits API cannot create or change symlinks"
                raise InvalidRequest(
                    msg,
                    "Replace the symlink with a regular file, or use GitHub or a local repository",
                )
            guard = {"last_commit_id": expected_head} if expected_head else {}
            if change.content is None:
                actions.append({"action": "delete", "file_path": change.path, **guard})
                continue
            kind = "create" if change.base_mode is None else "update"
            actions.append(
                {
                    "action": kind,
                    "file_path": change.path,
                    "encoding": "base64",
                    "content": base64.b64encode(change.content).decode(),
                    **(guard if kind == "update" else {}),
                }
            )
            was_exec = change.base_mode is FileMode.EXECUTABLE
            if (change.mode is FileMode.EXECUTABLE) != was_exec:
                actions.append(
                    {
                        "action": "chmod",
                        "file_path": change.path,
                        "execute_filemode": change.mode is FileMode.EXECUTABLE,
                    }
                )
        return actions

    def _find_landed(self, draft: Draft) -> Any:
        """After a lost response: the recent commit on the branch with our message and
        exactly our paths, if there is one (then the write landed and must not repeat)."""
        recent = self._project.commits.list(ref_name=draft.branch, per_page=20, get_all=False)
        wanted = changeset.paths(draft.changes)
        for commit in recent:
            if commit.message.strip() != draft.message.strip():
                continue
            diff = self._project.commits.get(commit.id, lazy=True).diff(get_all=True)
            if (
                frozenset(d["new_path"] for d in diff) | frozenset(d["old_path"] for d in diff)
                == wanted
            ):
                return self._project.commits.get(commit.id)
        return None

    def close(self) -> None:
        """Close python-gitlab's connection pool."""
        self._gl.session.close()

    def commit_meta(self, sha: str) -> contract.CommitMeta:
        """From the commits API (one request); GitLab gives times with their offsets, but
        not the tree (a workspace computes it from the files)."""
        commit = self._call("read a commit", lambda: self._project.commits.get(sha))
        return contract.CommitMeta(
            sha,
            tuple(commit.parent_ids or ()),
            _gitlab_person(commit.author_name, commit.author_email, commit.authored_date),
            _gitlab_person(commit.committer_name, commit.committer_email, commit.committed_date),
            str(commit.message or ""),
        )

    def history(self, sha: str, limit: int) -> list[contract.CommitMeta]:
        """GET /repository/commits?ref_name= (one page of up to 100)."""
        items = self._call(
            "list commits",
            lambda: self._project.commits.list(
                ref_name=sha, per_page=min(max(limit, 1), 100), get_all=False
            ),
        )
        return [
            contract.CommitMeta(
                c.id,
                tuple(c.parent_ids or ()),
                _gitlab_person(c.author_name, c.author_email, c.authored_date),
                _gitlab_person(c.committer_name, c.committer_email, c.committed_date),
                str(c.message or ""),
            )
            for c in list(items)[:limit]
        ]

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """Two compare requests (GitLab's compare counts one direction)."""
        ahead: Any = self._call(
            "compare commits", lambda: self._project.repository_compare(base, head)
        )
        behind: Any = self._call(
            "compare commits", lambda: self._project.repository_compare(head, base)
        )
        return len(ahead["commits"]), len(behind["commits"])

    # ---- change requests -------------------------------------------------------------
    def _open_change_request_once(
        self, source: str, target: str, title: str, body: str
    ) -> contract.ChangeRequest:
        """POST /merge_requests."""
        mr = self._call(
            "open a merge request",
            lambda: self._project.mergerequests.create(
                {
                    "source_branch": source,
                    "target_branch": target,
                    "title": title,
                    "description": body,
                }
            ),
        )
        return contract.ChangeRequest(mr.iid, mr.web_url, source, target, created=True)

    def _find_change_request(self, source: str, target: str) -> contract.ChangeRequest | None:
        mrs = self._call(
            "list merge requests",
            lambda: self._project.mergerequests.list(
                state="opened", source_branch=source, target_branch=target, get_all=True
            ),
        )
        if not mrs:
            return None
        return contract.ChangeRequest(mrs[0].iid, mrs[0].web_url, source, target, created=False)

    # ---- check reporting (contract.CheckReporter) ------------------------------------
    @contextmanager
    def _reporting_errors(self, action: str, permission: str) -> Iterator[None]:
        """The adapter's error mapping, with a 403 saying what the token lacks."""
        try:
            with map_gitlab_errors(action, self._last, self._token_set):
                yield
        except PermissionDenied as exc:
            raise PermissionDenied(exc.reason, permission) from exc

    def _report(
        self,
        action: str,
        permission: str,
        fn: Callable[[], T],
        verify: Callable[[], T | None] | None = None,
    ) -> T:
        return self._retrier.mapped(lambda: self._reporting_errors(action, permission), fn, verify)

    def set_commit_status(self, sha: str, status: contract.CommitStatus) -> None:
        """POST /statuses/:sha, one request (`failure` and `error` are GitLab's `failed`).
        GitLab moves the pending or running job of that name, so asking again for the
        state it is already in (a resent `pending`) is refused with "Cannot transition
        status via :enqueue from :pending": that status is already there, and is kept."""
        state = _GITLAB_STATES[status.state]
        payload = {"state": state, "name": status.context, "description": status.description}
        if status.target_url:
            payload["target_url"] = status.target_url
        statuses = self._project.commits.get(sha, lazy=True).statuses
        try:
            self._report(
                f"set the commit status '{status.context}' on {sha[:12]}",
                _DEVELOPER_API,
                lambda: statuses.create(payload),
            )
        except Refused as exc:
            if f"from :{state} " not in exc.message:
                raise

    def commit_statuses(self, sha: str) -> list[contract.CommitStatus]:
        """GET /repository/commits/:sha/statuses (jobs not retried, 100 a page): the
        newest of each name, the last moved first."""
        statuses = self._project.commits.get(sha, lazy=True).statuses
        jobs = self._report(
            f"read the commit statuses of {sha[:12]}",
            _REPORTER_API,
            lambda: [s.attributes for s in statuses.list(iterator=True)],
        )
        seen: set[str] = set()
        out = []
        for job in sorted(jobs, key=_last_moved, reverse=True):
            if job["name"] in seen:
                continue
            seen.add(job["name"])
            out.append(
                contract.CommitStatus(
                    _FROM_GITLAB.get(str(job["status"]), contract.StatusState.PENDING),
                    str(job["name"]),
                    str(job.get("description") or ""),
                    job.get("target_url"),
                )
            )
        return out

    def change_request_head(self, number: int) -> contract.ChangeRequestHead:
        """GET /merge_requests/:iid, one request."""
        mr = self._report(
            f"read merge request !{number}",
            _REPORTER_API,
            lambda: self._project.mergerequests.get(number),
        )
        return contract.ChangeRequestHead(
            int(mr.iid),
            str(mr.sha),
            str(mr.source_branch),
            str(mr.target_branch),
            mr.state == "opened",
            str(mr.web_url),
        )

    def upsert_comment(self, number: int, marker: str, body: str, known_id: int | None) -> int:
        """The one note carrying `marker` on MR `number` that the token's own user wrote:
        `known_id` read back (one request; GitLab scopes a note to its MR) and edited when
        it is still that; else the MR's notes scanned, oldest first, 100 a page and at
        most NOTE_PAGES pages; else a new note. Anyone on an MR may post the marker, and
        GitLab refuses to edit another user's note, so a note by someone else is never
        taken. Who the token is costs one request per adapter (GET /user). An unchanged
        body is not sent again, and a note whose creation lost its response is looked for
        before it is sent again."""
        if marker not in body:
            msg = "The comment's body does not carry its marker"
            raise InvalidRequest(msg, "Put the marker (a hidden HTML comment) in the body")
        notes = self._project.mergerequests.get(number, lazy=True).notes
        me = self._own_user_id()
        if known_id is not None:
            try:
                note = self._report(
                    f"read note {known_id}", _REPORTER_API, lambda: notes.get(known_id)
                )
            except NotFound:
                note = None
            if note is not None and _author_id(note) != me:
                note = None
            current = str(note.body or "") if note is not None else ""
            if note is not None and current == body:
                return known_id
            if marker in current and self._edit_note(number, known_id, body):
                return known_id

        def find() -> int | None:
            listed = notes.list(sort="asc", order_by="created_at", per_page=100, iterator=True)
            return next(
                (
                    int(n.id)
                    for n in itertools.islice(listed, NOTE_PAGES * 100)
                    if not n.system and _author_id(n) == me and marker in (n.body or "")
                ),
                None,
            )

        found = self._report(f"read the notes on merge request !{number}", _REPORTER_API, find)
        if found is not None and self._edit_note(number, found, body):
            return found
        created = self._report(
            f"comment on merge request !{number}",
            _REPORTER_API,
            lambda: int(notes.create({"body": body}).id),
            verify=find,
        )
        return int(created)

    def _own_user_id(self) -> int:
        """The id of the token's user (a project or group token's bot user too): GET /user
        once per adapter."""
        if self._user_id is None:
            user = self._report(
                "read the token's user", _REPORTER_API, lambda: self._gl.http_get("/user")
            )
            self._user_id = int(user["id"]) if isinstance(user, dict) else -1
        return self._user_id

    def _edit_note(self, number: int, note_id: int, body: str) -> bool:
        """PUT the note; False when it was deleted meanwhile."""
        notes = self._project.mergerequests.get(number, lazy=True).notes
        try:
            self._report(
                f"edit note {note_id}", _REPORTER_API, lambda: notes.update(note_id, {"body": body})
            )
        except NotFound:
            return False
        return True


NOTE_PAGES = 10
"""Pages of 100 notes scanned at most for the check's own (it is among an MR's first:
posted on the first check); past them, a new note is posted."""


def _author_id(note: Any) -> int | None:
    """The id of a note's author."""
    author = getattr(note, "author", None)
    return int(author["id"]) if isinstance(author, dict) and "id" in author else None


_GITLAB_STATES = {
    contract.StatusState.PENDING: "pending",
    contract.StatusState.SUCCESS: "success",
    contract.StatusState.FAILURE: "failed",
    contract.StatusState.ERROR: "failed",
}
_FROM_GITLAB = {
    "success": contract.StatusState.SUCCESS,
    "failed": contract.StatusState.FAILURE,
    "canceled": contract.StatusState.ERROR,
    "skipped": contract.StatusState.ERROR,
}
"""GitLab's job states read back; the rest (created, pending, running, manual) is pending."""


def _last_moved(job: dict[str, Any]) -> tuple[str, int]:
    """When a job last changed state (GitLab moves a pending job in place), then its id."""
    times = [str(job.get(k) or "") for k in ("finished_at", "started_at", "created_at")]
    return max(times), int(job["id"])


_DEVELOPER_API = "Give the token the api scope, and the Developer role (or higher) in the project"
_REPORTER_API = (
    "Give the token the api scope, and the Reporter role (or higher; Developer to set "
    "commit statuses) in the project"
)


class _ArchiveLimited(Exception):
    """The archive is rate limited for longer than is worth waiting (never retried)."""

    def __init__(self, error: RateLimited, wait: float | None) -> None:
        super().__init__(error.reason)
        self.error = error
        self.wait = wait


def _next_page(response: requests.Response) -> dict[str, str] | None:
    """The next tree page's parameters: the keyset `page_token` from `Link`, else the
    page number GitLab's offset pagination gives; None on the last page."""
    link = response.links.get("next", {}).get("url")
    if link:
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query).get("page_token")
        if token:
            return {"page_token": token[0]}
    number = response.headers.get("x-next-page", "")
    return {"page": number} if number.isdigit() else None


DEVELOPER = 30
"""GitLab's Developer access level: the lowest that may push to unprotected branches."""


MAINTAINER = 40
"""GitLab's Maintainer access level: the lowest that administers a project's branches."""


def _at_least(permissions: object, level: int) -> bool | None:
    """From a project's `permissions`: whether the token's best project or group access
    level reaches `level` (None when GitLab does not say)."""
    if not isinstance(permissions, dict):
        return None
    levels = [
        access.get("access_level")
        for access in (permissions.get("project_access"), permissions.get("group_access"))
        if isinstance(access, dict)
    ]
    known = [level for level in levels if isinstance(level, int)]
    return max(known) >= level if known else None
