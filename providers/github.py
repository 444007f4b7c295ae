"""GitHub (and GitHub Enterprise) through PyGithub.

Commits go through the Git Data API: text inline in the tree, blobs only for binary or
large files, a tree on `base_tree`, a commit, then a non-forced ref update, which is
GitHub's compare-and-swap: "Update is not a fast forward" means the branch moved, and we
check which paths moved before rebasing or raising `Conflict`. With `graphql_commits`,
change sets without mode or symlink changes go through `createCommitOnBranch` instead
(one mutation, `expectedHeadOid` as the guard, signed by GitHub). An empty repository
refuses the Git Data API with 409, so its first commit starts with the contents API.

PyGithub's own retries and throttling are switched off: `Retrier` owns back-off for every
call, and reads the branch before retrying a write whose response was lost. The commit
policy (validation, missing branches, the race with a moving head) is `ForgeBase`'s; this
module only says how GitHub makes one attempt.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import github
import httpx
import requests
from github import Auth, Github, GithubException, InputGitAuthor, InputGitTreeElement
from github.GitBlob import GitBlob
from github.GitCommit import GitCommit
from github.Repository import Repository

from providers import contract
from providers.base import Attempt, Draft, ForgeBase, Landed, Missing, Moved
from providers.config import ForgeConfig
from providers.contract import FileMode
from providers.errors import (
    AlreadyExists,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
    Refused,
    Unavailable,
    from_status,
    unanswered,
)
from providers.names import check_branch_name, check_repo_path

T = TypeVar("T")
log = logging.getLogger(__name__)

_GITHUB = "GitHub"
INLINE_LIMIT = 512 * 1024
"""Text files up to this size go inline in the tree request; larger ones become blobs."""
COMPARE_FILE_CAP = 300
"""GitHub's compare lists at most 300 files; at the cap we diff the trees instead."""

GRAPHQL_MAX_BYTES = 20 * 1024**2
"""Change sets over this go through the Git Data API (blobs) rather than one mutation."""
TARBALL_URL_LIFE = 120.0
"""Seconds a GraphQL `tarballUrl` is trusted (GitHub says private links last five minutes)."""
_PUSHERS = ("ADMIN", "MAINTAIN", "WRITE")
_FACTS_QUERY = """
query($owner: String!, $name: String!, $ref: String!) {
  repository(owner: $owner, name: $name) {
    viewerPermission
    ref(qualifiedName: $ref) {
      refUpdateRule { viewerCanPush }
      target { oid ... on Commit { tarballUrl } }
    }
  }
}
"""
_COMMIT_MUTATION = """
mutation($input: CreateCommitOnBranchInput!) {
  createCommitOnBranch(input: $input) { commit { oid url } }
}
"""


class _EmptyRepository(InvalidRequest):
    """GitHub's 409 "Git Repository is empty." from the Git Data API."""


def _forge_message(exc: GithubException) -> str:
    data = exc.data if isinstance(exc.data, dict) else {}
    message = str(data.get("message") or exc.message or "")
    details = [
        str(e.get("message") or e.get("code") or "")
        for e in data.get("errors") or []
        if isinstance(e, dict)
    ]
    return "; ".join(filter(None, [message, *details]))


@contextmanager
def map_github_errors(
    action: str, token_set: bool = True, permission: str | None = None
) -> Iterator[None]:
    """Translate PyGithub, requests and httpx errors into the provider error tree.
    `permission` is what a 403 tells the person to grant, for calls that need more than
    the contents permission every other call needs."""
    try:
        yield
    except ProviderError:
        raise
    except GithubException as exc:
        error = _translate(exc, action, token_set)
        if permission is not None and type(error) is PermissionDenied:
            error = PermissionDenied(error.reason, permission)
        raise error from exc
    except (requests.RequestException, httpx.TransportError) as exc:
        raise unanswered(_GITHUB, action, exc) from exc
    except httpx.HTTPStatusError as exc:
        raise from_status(
            exc.response.status_code,
            forge=_GITHUB,
            action=action,
            detail=exc.response.reason_phrase,
            headers=dict(exc.response.headers),
            token_set=token_set,
        ) from exc


def _translate(exc: GithubException, action: str, token_set: bool) -> ProviderError:
    message = _forge_message(exc)
    headers = dict(exc.headers or {})
    data = exc.data if isinstance(exc.data, dict) else {}
    errors = data.get("errors")
    if (
        exc.status == 400
        and isinstance(errors, list)
        and errors
        and isinstance(errors[0], dict)
        and "type" in errors[0]
    ):  # a GraphQL error: GitHub answers 200 and names the kind in `type`
        kind, text = str(errors[0]["type"]), str(errors[0].get("message", ""))
        status = _GRAPHQL_STATUS.get(kind)
        if status is not None:
            return from_status(status, forge=_GITHUB, action=action, detail=text, headers=headers)
        return Refused(400, text, f"GitHub refused the request (400): {text}", kind=kind)
    if exc.status == 409 and "empty" in message.lower():
        return _EmptyRepository("The repository is empty")
    return from_status(
        exc.status,
        forge=_GITHUB,
        action=action,
        detail=message,
        headers=headers,
        token_set=token_set,
    )


_GRAPHQL_STATUS = {"FORBIDDEN": 403, "RATE_LIMITED": 429}
"""GraphQL errors come with status 200 and a `type`; these two are the statuses' own."""


def _github_person(data: dict[str, Any]) -> contract.Person:
    when = dt.datetime.fromisoformat(str(data["date"]).replace("Z", "+00:00"))
    return contract.Person(str(data["name"]), str(data["email"]), int(when.timestamp()), None)


def signed_commit(payload: str, signature: str) -> bytes:
    """The commit object of a signed commit: GitHub's payload (the object without its
    signature) with the `gpgsig` header put back before the message."""
    headers, _, message = payload.partition("\n\n")
    folded = signature.rstrip("\n").replace("\n", "\n ")
    return f"{headers}\ngpgsig {folded}\n\n{message}".encode()


class GitHubForge(ForgeBase):
    """A repository on github.com or a GitHub Enterprise server."""

    capabilities = contract.Capabilities(
        symlinks=True, executable_bit=True, verified_commits=False, change_requests=True
    )
    """The Git Data API carries modes and links; with GraphQL commits, GitHub signs them."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__(config)
        token = self._token()
        self._gh = Github(
            base_url=config.location.api_url,
            auth=Auth.Token(token) if token else None,
            timeout=int(config.timeout),
            user_agent=config.user_agent,
            per_page=100,
            retry=None,
            seconds_between_requests=None,
            seconds_between_writes=config.seconds_between_writes or None,
        )
        self._full_name = config.location.path
        self._owner, self._name = self._full_name.split("/")
        self._tarballs: dict[str, tuple[str, float]] = {}
        """Commit SHA -> (tarball URL, when it was handed out): GitHub's links to private
        archives expire after five minutes, so one is used once, soon, or not at all."""
        # A partially initialised Repository costs no request, but with an eager requester:
        # a lazy one would defer every method's request to attribute access, outside
        # map_github_errors (a 404 would escape as an SDK exception).
        self._repo = Repository(
            self._gh.requester,
            url=f"{config.location.api_url}/repos/{self._full_name}",
            completed=False,
        )
        self._http = httpx.Client(timeout=config.timeout, headers={"User-Agent": config.user_agent})
        self._commits: dict[str, GitCommit] = {}
        self._record: Repository | None = None
        self._author: _CommentAuthor | None = None
        if config.graphql_commits:
            self.capabilities = contract.Capabilities(
                symlinks=True, executable_bit=True, verified_commits=True, change_requests=True
            )

    def _call(
        self, action: str, fn: Callable[[], T], verify: Callable[[], T | None] | None = None
    ) -> T:
        return self._retrier.mapped(lambda: map_github_errors(action, self._token_set), fn, verify)

    # ---- reads -----------------------------------------------------------------------
    def _repository(self) -> Repository:
        """The repository's own record (read once per adapter: one run)."""
        if self._record is None:
            self._record = self._call(
                "read the repository", lambda: self._gh.get_repo(self._full_name)
            )
        return self._record

    def repository(self) -> contract.RepositoryInfo:
        """Default branch and web URL; protections come from the branch list."""
        repo = self._repository()
        branches = self.branches()
        protected = tuple(b.name for b in branches if b.protected)
        permissions = repo.raw_data.get("permissions") or {}
        may_push = permissions.get("push") if isinstance(permissions, dict) else None
        may_admin = permissions.get("admin") if isinstance(permissions, dict) else None
        return contract.RepositoryInfo(
            repo.default_branch,
            repo.html_url,
            not branches,
            protected,
            may_push if isinstance(may_push, bool) else None,
            may_admin if isinstance(may_admin, bool) else None,
        )

    def branches(self) -> list[contract.Branch]:
        """Every branch (paginated, 100 a page)."""
        return self._call(
            "list branches",
            lambda: [
                contract.Branch(b.name, b.commit.sha, b.protected)
                for b in self._repo.get_branches()
            ],
        )

    def branch(self, name: str) -> contract.Branch:
        """One branch, its protection and whether this token may push to it, in one GraphQL
        query that also yields the commit's short-lived tarball URL: a run's download then
        costs a single request, and permissions are known before anything is written."""
        check_branch_name(name)
        variables = {"owner": self._owner, "name": self._name, "ref": f"refs/heads/{name}"}
        _, data = self._call(
            f"read branch '{name}'",
            lambda: self._gh.requester.graphql_query(_FACTS_QUERY, variables),
        )
        repository = data["data"]["repository"]
        permission = repository.get("viewerPermission")
        may_write = None if permission is None else permission in _PUSHERS
        ref = repository.get("ref")
        if ref is None:
            msg = f"GitHub found no branch '{name}'"
            raise NotFound(msg)
        sha = str(ref["target"]["oid"])
        if ref["target"].get("tarballUrl"):
            self._tarballs[sha] = (str(ref["target"]["tarballUrl"]), time.monotonic())
        rule = ref.get("refUpdateRule")
        can_push = bool(rule["viewerCanPush"]) if rule else may_write
        return contract.Branch(name, sha, rule is not None, can_push)

    def _create_branch_once(self, name: str, from_sha: str) -> contract.Branch:
        """POST /git/refs (GitHub's bare 422 for a folder clash is explained by the base)."""
        try:
            self._call(
                f"create branch '{name}'",
                lambda: self._repo.create_git_ref(f"refs/heads/{name}", from_sha),
            )
        except Refused as exc:
            if "already exists" in exc.message:
                msg = f"The branch '{name}' already exists"
                raise AlreadyExists(msg) from exc
            raise
        return contract.Branch(name, from_sha)

    @contextmanager
    def archive(self, ref: str, path: str = "") -> Iterator[contract.Snapshot]:
        """The tarball of a SHA or branch: one API request (302) plus the download hop.
        The pax header pins the SHA, so a branch name needs no separate lookup. GitHub
        cannot narrow a tarball to a folder, so `path` filters while streaming."""
        response = self._call(f"download the archive of {ref}", lambda: self._open_tarball(ref))
        try:
            with self._snapshot(ref, self._body(response), path) as snapshot:
                yield snapshot
        finally:
            response.close()

    def _open_tarball(self, ref: str) -> httpx.Response:
        cached = self._tarballs.pop(ref, None)
        fresh = cached is not None and time.monotonic() - cached[1] < TARBALL_URL_LIFE
        link = cached[0] if cached and fresh else self._repo.get_archive_link("tarball", ref)
        response = self._http.send(self._http.build_request("GET", link), stream=True)
        if response.status_code >= 400:
            response.close()
            response.raise_for_status()
        return response

    def _body(self, response: httpx.Response) -> Iterator[bytes]:
        with map_github_errors("download the archive", self._token_set):
            yield from response.iter_raw(64 * 1024)

    def read_file(self, sha: str, path: str) -> bytes:
        """Contents API; files over 1 MB come from the blob API."""
        check_repo_path(path)
        content = self._call(f"read {path}", lambda: self._repo.get_contents(path, ref=sha))
        if isinstance(content, list):
            msg = f"{path} is a folder, not a file"
            raise NotFound(msg)
        if content.encoding == "base64" and (content.content or content.size == 0):
            return content.decoded_content
        blob = self._call(f"read {path}", lambda: self._repo.get_git_blob(content.sha))
        return base64.b64decode(blob.content)

    def list_tree(self, sha: str) -> list[contract.TreeEntry]:
        """The recursive tree in one request."""
        tree = self._call("list the tree", lambda: self._repo.get_git_tree(sha, recursive=True))
        if tree.raw_data.get("truncated"):
            msg = "GitHub truncated the tree listing (over 100,000 files)"
            raise Unavailable(
                msg,
                "Narrow MELTANO_FORGE_PROJECT_PATH to the Meltano project's folder",
            )
        return [
            contract.TreeEntry(e.path, FileMode.parse(e.mode), e.sha, e.size or 0)
            for e in tree.tree
            if e.type == "blob"
        ]

    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """From the compare API, or from both trees when compare hits its 300-file cap."""
        comparison = self._call("compare commits", lambda: self._repo.compare(base_sha, head_sha))
        files = comparison.files
        if len(files) < COMPARE_FILE_CAP:
            return frozenset(p for f in files for p in (f.filename, f.previous_filename) if p)
        old = {e.path: (e.mode, e.sha) for e in self.list_tree(base_sha)}
        new = {e.path: (e.mode, e.sha) for e in self.list_tree(head_sha)}
        return frozenset(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))

    # ---- commits ---------------------------------------------------------------------
    def _commit_once(self, draft: Draft, head: str | None) -> Attempt:
        """One commit on `head` (read first when None): GraphQL's `expectedHeadOid` or the
        non-forced ref update is the compare-and-swap."""
        if head is None:
            try:
                head = self.branch(draft.branch).head  # a plain commit on the head
            except NotFound:
                return Missing()
        use_graphql = self._use_graphql(draft)
        try:
            if use_graphql:
                return Landed(self._graphql_commit(draft, head), head)
            return Landed(self._rest_commit(draft, head), head)
        except NotFound:
            if not use_graphql:
                raise
            return Missing()
        except Refused as exc:
            lowered = exc.message.lower()
            if exc.kind == "NOT_FOUND" or "reference does not exist" in lowered:
                return Missing()
            if not (exc.kind == "STALE_DATA" or "not a fast forward" in lowered):
                raise
        return Moved(head, self.branch(draft.branch).head)

    def _start_branch(self, draft: Draft, start: str | None) -> Attempt:
        """Commit on `start` and create the ref at the new commit; in an empty repository,
        the first commit through the contents API."""
        if start is None:
            return self._root_commit(draft)
        return Landed(self._rest_commit(draft, start, create=True), start)

    def _default_branch(self) -> str:
        return self._repository().default_branch

    def _use_graphql(self, draft: Draft) -> bool:
        """One `createCommitOnBranch` (signed by GitHub) unless the change set needs what
        only the Git Data API carries: an author other than the token's owner, file modes
        or symlinks (the mutation writes every file as 100644), or more bytes than one
        GraphQL request should hold."""
        if not self.config.graphql_commits:
            return False
        changes, author = draft.changes, draft.author
        size = sum(len(c.content or b"") for c in changes)
        reason = (
            "an author is set"
            if author is not None
            else "the change set has modes or symlinks"
            if not all(
                c.is_delete
                or (c.mode is FileMode.REGULAR and c.base_mode in (None, FileMode.REGULAR))
                for c in changes
            )
            else f"the change set holds {size:,} bytes"
            if size > GRAPHQL_MAX_BYTES
            else ""
        )
        if reason:
            log.debug("committing through the Git Data API: %s", reason)
        return not reason

    def _git_commit(self, sha: str) -> GitCommit:
        if sha not in self._commits:
            self._commits[sha] = self._call("read a commit", lambda: self._repo.get_git_commit(sha))
        return self._commits[sha]

    def _tree_elements(self, changes: Sequence[contract.FileChange]) -> list[InputGitTreeElement]:
        elements = []
        for change in changes:
            if change.content is None:
                elements.append(InputGitTreeElement(change.path, change.mode.git, "blob", sha=None))
                continue
            text = _as_inline_text(change.content)
            if text is not None:
                elements.append(
                    InputGitTreeElement(change.path, change.mode.git, "blob", content=text)
                )
            else:
                blob = self._upload(change.path, base64.b64encode(change.content).decode())
                elements.append(
                    InputGitTreeElement(change.path, change.mode.git, "blob", sha=blob.sha)
                )
        return elements

    def _upload(self, path: str, data: str) -> GitBlob:
        return self._call(f"upload {path}", lambda: self._repo.create_git_blob(data, "base64"))

    def _rest_commit(self, draft: Draft, parent: str | None, *, create: bool = False) -> str:
        branch, message, author = draft.branch, draft.message, draft.author
        elements = self._tree_elements(draft.changes)
        parents = [self._git_commit(parent)] if parent else []
        if parents:
            tree = self._call(
                "write the tree",
                lambda: self._repo.create_git_tree(elements, base_tree=parents[0].tree),
            )
        else:
            tree = self._call("write the tree", lambda: self._repo.create_git_tree(elements))
        who = InputGitAuthor(author.name, author.email) if author else github.GithubObject.NotSet
        new = self._call(
            "write the commit",
            lambda: self._repo.create_git_commit(message, tree, parents, author=who),
        )
        self._commits[new.sha] = new
        if parent is None or create:
            self._call(
                f"create branch '{branch}'",
                lambda: self._repo.create_git_ref(f"refs/heads/{branch}", new.sha),
                verify=lambda: self._landed(branch, new.sha),
            )
            return new.sha
        url = f"{self._repo.url}/git/refs/heads/{urllib.parse.quote(branch, safe='')}"
        self._call(
            f"move branch '{branch}'",
            lambda: self._repo._requester.requestJsonAndCheck(
                "PATCH", url, input={"sha": new.sha, "force": False}
            ),
            verify=lambda: self._landed(branch, new.sha),
        )
        return new.sha

    def _landed(self, branch: str, sha: str) -> Any:
        try:
            return True if self.branch(branch).head == sha else None
        except NotFound:
            return None

    def _graphql_commit(self, draft: Draft, head: str) -> str:
        branch, changes, message = draft.branch, draft.changes, draft.message
        headline, _, body = message.partition("\n")
        variables = {
            "input": {
                "branch": {"repositoryNameWithOwner": self._full_name, "branchName": branch},
                "expectedHeadOid": head,
                "message": {"headline": headline, "body": body.strip("\n")},
                "fileChanges": {
                    "additions": [
                        {"path": c.path, "contents": base64.b64encode(c.content).decode()}
                        for c in changes
                        if c.content is not None
                    ],
                    "deletions": [{"path": c.path} for c in changes if c.content is None],
                },
            }
        }

        def mutate() -> str:
            _, data = self._repo._requester.graphql_query(_COMMIT_MUTATION, variables)
            return str(data["data"]["createCommitOnBranch"]["commit"]["oid"])

        def verify() -> str | None:
            current = self.branch(branch).head
            if current == head:
                return None
            landed = self._repo.get_git_commit(current)
            ours = [p.sha for p in landed.parents] == [
                head
            ] and landed.message.strip() == message.strip()
            return current if ours else None

        return self._call(f"commit to '{branch}'", mutate, verify=verify)

    def _root_commit(self, draft: Draft) -> Landed:
        """The first commit of an empty repository: GitHub refuses the Git Data API there
        (409), so the contents API makes it with one file and the rest follows on top."""
        branch, changes, message, author = draft.branch, draft.changes, draft.message, draft.author
        first = next(
            (c for c in changes if c.content is not None and c.mode is FileMode.REGULAR),
            None,
        )
        if first is None or first.content is None:
            msg = "The first commit of an empty GitHub repository needs a regular file"
            raise InvalidRequest(msg)
        content = first.content
        who = InputGitAuthor(author.name, author.email) if author else github.GithubObject.NotSet
        result = self._call(
            "make the first commit",
            lambda: self._repo.create_file(first.path, message, content, branch=branch, author=who),
            verify=lambda: True if self._exists(branch) else None,
        )
        head = result["commit"].sha if isinstance(result, dict) else self.branch(branch).head
        rest = [c for c in changes if c is not first]
        if not rest:
            return Landed(head, None)
        return Landed(self._rest_commit(dataclasses.replace(draft, changes=rest), head), None)

    def _exists(self, branch: str) -> bool:
        try:
            self.branch(branch)
        except NotFound:
            return False
        return True

    def close(self) -> None:
        """Close PyGithub's and the download client's connection pools."""
        self._gh.close()
        self._http.close()

    def commit_meta(self, sha: str) -> contract.CommitMeta:
        """From the Git Data API (one request). GitHub gives times in UTC only; a signed
        commit's verification payload and signature are the object itself."""
        data = self._git_commit(sha).raw_data
        verification = data.get("verification") or {}
        payload, signature = verification.get("payload"), verification.get("signature")
        return contract.CommitMeta(
            sha,
            tuple(str(p["sha"]) for p in data.get("parents") or []),
            _github_person(data["author"]),
            _github_person(data["committer"]),
            str(data.get("message") or ""),
            str(data["tree"]["sha"]),
            str(signature) if signature else None,
            signed_commit(str(payload), str(signature)) if payload and signature else None,
        )

    def history(self, sha: str, limit: int) -> list[contract.CommitMeta]:
        """GET /commits?sha= in one request (up to 100)."""

        def listed() -> list[Any]:
            _, data = self._repo._requester.requestJsonAndCheck(
                "GET",
                f"{self._repo.url}/commits",
                parameters={"sha": sha, "per_page": min(max(limit, 1), 100)},
            )
            return list(data)

        return [
            contract.CommitMeta(
                str(item["sha"]),
                tuple(str(p["sha"]) for p in item.get("parents") or []),
                _github_person(item["commit"]["author"]),
                _github_person(item["commit"]["committer"]),
                str(item["commit"].get("message") or ""),
                str(item["commit"]["tree"]["sha"]),
            )
            for item in self._call("list commits", listed)[:limit]
        ]

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """One compare request."""
        comparison = self._call("compare commits", lambda: self._repo.compare(base, head))
        return int(comparison.ahead_by), int(comparison.behind_by)

    # ---- change requests -------------------------------------------------------------
    def _open_change_request_once(
        self, source: str, target: str, title: str, body: str
    ) -> contract.ChangeRequest:
        """POST /pulls; GitHub's "no commits between" is worded for a person."""
        try:
            pr = self._call(
                "open a pull request",
                lambda: self._repo.create_pull(base=target, head=source, title=title, body=body),
            )
        except Refused as exc:
            if "no commits between" in exc.message.lower():
                msg = f"'{source}' has nothing that '{target}' lacks"
                raise Refused(exc.status, exc.message, msg, "Commit changes first") from exc
            raise
        return contract.ChangeRequest(pr.number, pr.html_url, source, target, created=True)

    def _find_change_request(self, source: str, target: str) -> contract.ChangeRequest | None:
        pulls = self._call(
            "list pull requests",
            lambda: list(
                self._repo.get_pulls(state="open", head=f"{self._owner}:{source}", base=target)
            ),
        )
        if not pulls:
            return None
        return contract.ChangeRequest(
            pulls[0].number, pulls[0].html_url, source, target, created=False
        )

    # ---- check reporting (contract.CheckReporter) ------------------------------------
    def _report(
        self,
        action: str,
        permission: str,
        fn: Callable[[], T],
        verify: Callable[[], T | None] | None = None,
    ) -> T:
        """`_call`, with a 403 saying which permission the token lacks."""
        return self._retrier.mapped(
            lambda: map_github_errors(action, self._token_set, permission), fn, verify
        )

    def set_commit_status(self, sha: str, status: contract.CommitStatus) -> None:
        """POST /statuses/{sha}, one request; the description is cut to GitHub's 140
        characters. Sending it twice after a lost response is harmless: the newest status
        of a context is the one that counts, and both say the same."""
        payload: dict[str, Any] = {
            "state": status.state.value,
            "context": status.context,
            "description": _cut(status.description, STATUS_DESCRIPTION_MAX),
        }
        if status.target_url:
            payload["target_url"] = status.target_url
        self._report(
            f"set the commit status '{status.context}' on {sha[:12]}",
            _STATUSES_WRITE,
            lambda: self._repo._requester.requestJsonAndCheck(
                "POST", f"{self._repo.url}/statuses/{sha}", input=payload
            ),
        )

    def commit_statuses(self, sha: str) -> list[contract.CommitStatus]:
        """The newest status of each context, newest first, from the combined status
        (GET /commits/{sha}/status: one request for up to 100 contexts), the way GitHub
        weighs them on a pull request."""

        def combined() -> list[dict[str, Any]]:
            statuses: list[dict[str, Any]] = []
            for page in range(1, STATUS_PAGES + 1):
                _, data = self._repo._requester.requestJsonAndCheck(
                    "GET",
                    f"{self._repo.url}/commits/{sha}/status",
                    parameters={"per_page": 100, "page": page},
                )
                statuses += data.get("statuses") or []
                if len(statuses) >= int(data.get("total_count") or 0) or not data.get("statuses"):
                    break
            return statuses

        listed = self._report(f"read the commit statuses of {sha[:12]}", _STATUSES_READ, combined)
        return [
            contract.CommitStatus(
                contract.StatusState(str(s["state"])),
                str(s["context"]),
                str(s.get("description") or ""),
                s.get("target_url"),
            )
            for s in sorted(listed, key=lambda s: int(s["id"]), reverse=True)
        ]

    def change_request_head(self, number: int) -> contract.ChangeRequestHead:
        """GET /pulls/{number}, one request."""
        pr = self._report(
            f"read pull request #{number}", _PULLS_READ, lambda: self._repo.get_pull(number)
        )
        return contract.ChangeRequestHead(
            pr.number, pr.head.sha, pr.head.ref, pr.base.ref, pr.state == "open", pr.html_url
        )

    def upsert_comment(self, number: int, marker: str, body: str, known_id: int | None) -> int:
        """The one comment carrying `marker` on PR `number` that the token's own user
        wrote: `known_id` read back (one request) and edited when it is still that, on this
        PR; else the PR's comments scanned, oldest first, 100 a page and at most
        COMMENT_PAGES pages, for it; else a new comment. Anyone on a PR may post the
        marker, so a comment by someone else is never taken (nor edited: the author could
        edit it again to say anything). Who the token is costs one request per adapter
        (`_comment_author`). An unchanged body is not sent again (every edit counts
        against GitHub's limit on content-creating requests), and a comment whose
        creation lost its response is looked for before it is sent again."""
        if marker not in body:
            msg = "The comment's body does not carry its marker"
            raise InvalidRequest(msg, "Put the marker (a hidden HTML comment) in the body")
        if known_id is not None:
            current = self._marked_comment_body(number, known_id, marker)
            if current == body:
                return known_id
            if current is not None and self._edit_comment(known_id, body):
                return known_id
        found = self._find_marked_comment(number, marker)
        if found is not None and self._edit_comment(found, body):
            return found
        _, data = self._report(
            f"comment on pull request #{number}",
            _COMMENTS_WRITE,
            lambda: self._repo._requester.requestJsonAndCheck(
                "POST", f"{self._repo.url}/issues/{number}/comments", input={"body": body}
            ),
            verify=lambda: self._landed_comment(number, marker),
        )
        self._comment_author().learn(data.get("user"))
        return int(data["id"])

    def _comment_author(self) -> _CommentAuthor:
        """Who the token writes comments as: GET /user once per adapter. An installation
        token of a GitHub App has no user (403, or 404 on some servers); see
        `_CommentAuthor`."""
        if self._author is None:
            try:
                _, data = self._report(
                    "read the token's user",
                    _PULLS_READ,
                    lambda: self._repo._requester.requestJsonAndCheck("GET", "/user"),
                )
            except (PermissionDenied, NotFound):
                self._author = _CommentAuthor(None)
            else:
                self._author = _CommentAuthor(str(data["login"]))
        return self._author

    def _marked_comment_body(self, number: int, comment_id: int, marker: str) -> str | None:
        """The body of comment `comment_id` if it is on PR `number` and carries `marker`."""
        try:
            _, data = self._report(
                f"read comment {comment_id}",
                _PULLS_READ,
                lambda: self._repo._requester.requestJsonAndCheck(
                    "GET", f"{self._repo.url}/issues/comments/{comment_id}"
                ),
            )
        except NotFound:
            return None
        text = str(data.get("body") or "")
        on_this_pr = str(data.get("issue_url", "")).endswith(f"/issues/{number}")
        ours = self._comment_author().wrote(data.get("user"))
        return text if on_this_pr and ours and marker in text else None

    def _find_marked_comment(self, number: int, marker: str) -> int | None:
        """The oldest comment by the token's user carrying `marker`, among the first
        COMMENT_PAGES pages of 100."""
        author = self._comment_author()

        def scan() -> int | None:
            for page in range(1, COMMENT_PAGES + 1):
                headers, data = self._repo._requester.requestJsonAndCheck(
                    "GET",
                    f"{self._repo.url}/issues/{number}/comments",
                    parameters={"per_page": 100, "page": page},
                )
                for comment in data or []:
                    if author.wrote(comment.get("user")) and marker in str(
                        comment.get("body") or ""
                    ):
                        return int(comment["id"])
                if 'rel="next"' not in str(headers.get("link") or ""):
                    break
            return None

        return self._report(f"read the comments on pull request #{number}", _PULLS_READ, scan)

    def _landed_comment(self, number: int, marker: str) -> tuple[dict[str, Any], Any] | None:
        found = self._find_marked_comment(number, marker)
        return None if found is None else ({}, {"id": found})

    def _edit_comment(self, comment_id: int, body: str) -> bool:
        """PATCH the comment; False when it was deleted meanwhile."""
        try:
            self._report(
                f"edit comment {comment_id}",
                _COMMENTS_WRITE,
                lambda: self._repo._requester.requestJsonAndCheck(
                    "PATCH",
                    f"{self._repo.url}/issues/comments/{comment_id}",
                    input={"body": body},
                ),
            )
        except NotFound:
            return False
        return True


STATUS_DESCRIPTION_MAX = 140
"""GitHub refuses a longer status description (422)."""
STATUS_PAGES = 10
"""Pages of 100 contexts read at most (a commit has a handful)."""
COMMENT_PAGES = 10
"""Pages of 100 comments scanned at most for the check's own (it is among a PR's first:
posted on the first check); past them, a new comment is posted."""


@dataclasses.dataclass
class _CommentAuthor:
    """Whose comments the adapter may take as its own. With a user's token (classic,
    fine-grained, OAuth) that is `login`, from GET /user. A GitHub App's installation
    token has no user: its comments are `<app-slug>[bot]`'s, a login it cannot read. Then
    only a comment by a Bot is taken (a person, a fork's author among them, cannot
    write as one), and once the adapter has created a comment, only its author's."""

    login: str | None

    def wrote(self, user: object) -> bool:
        """Whether `user` (a comment's `user` object) is the token's."""
        if not isinstance(user, dict):
            return False
        if self.login is not None:
            return bool(user.get("login") == self.login)
        return bool(user.get("type") == "Bot")

    def learn(self, user: object) -> None:
        """A comment this adapter created names the installation token's login."""
        if self.login is None and isinstance(user, dict) and user.get("login"):
            self.login = str(user["login"])


_STATUSES_WRITE = (
    'Give the token the "Commit statuses: write" repository permission (a fine-grained '
    "token or a GitHub App), or the repo:status scope (a classic token)"
)
_STATUSES_READ = (
    'Give the token the "Commit statuses: read" repository permission (a fine-grained '
    "token or a GitHub App), or the repo:status scope (a classic token)"
)
_COMMENTS_WRITE = (
    'Give the token the "Pull requests: write" repository permission (a fine-grained '
    "token or a GitHub App), or the repo scope (a classic token)"
)
_PULLS_READ = (
    'Give the token the "Pull requests: read" repository permission (a fine-grained '
    "token or a GitHub App), or the repo scope (a classic token)"
)


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _as_inline_text(data: bytes) -> str | None:
    """The contents as a str when they can travel inline in a tree request."""
    if len(data) > INLINE_LIMIT or b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None
