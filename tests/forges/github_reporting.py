"""What a check reporter talks to on the GitHub double: commit statuses, issue comments on
pull requests, `pulls/get` and `pulls/files`, and the pull request's HTML page.

Statuses follow GitHub's: a status is created, never edited; reading lists them newest
first, and the combined status keeps the latest per context (contexts are
case-insensitive): `failure` if any is `error` or `failure`, `pending` if there are none
or any is `pending`, else `success`. A description over 140 characters, a state outside
the four and the 1000th status of a context answer GitHub's 422s. A fine-grained token
(or an installation token) without `statuses` or `issues`/`pull_requests` write gets
GitHub's 403, "Resource not accessible by personal access token" (or "by integration"),
with `x-accepted-github-permissions` naming what it lacks.

Each comment records its author: the login of the token that wrote it (`logins`, else the
owner's), or `APP_SLUG[bot]` (type Bot) for an installation token. `GET /user` answers the
token's user as GitHub does, and an installation token's 403 "Resource not accessible by
integration" there, as GitHub answers it.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dulwich.diff_tree import tree_changes

from tests.forges import gitdata, openapi
from tests.forges.pages import CommentBox, StatusLine, change_request_page
from tests.forges.server import Request, Response, paginate

if TYPE_CHECKING:
    from tests.forges.github import GitHubDouble

R = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
PAGE = r"/(?P<owner>[^/]+)/(?P<repo>[^/]+)/pull/(?P<number>\d+)"
STATES = ("error", "failure", "pending", "success")
DESCRIPTION_MAX = 140
STATUSES_PER_CONTEXT = 1000
COMMENT_MAX = 65536
_DOCS = "https://docs.github.com/rest"
DOCS_STATUS = f"{_DOCS}/commits/statuses#create-a-commit-status"
DOCS_COMMENT = f"{_DOCS}/issues/comments#create-an-issue-comment"
DOCS_UPDATE = f"{_DOCS}/issues/comments#update-an-issue-comment"
COMMENT_TEMPLATE = "/repos/{owner}/{repo}/issues/comments/{comment_id}"
DOCS_USER = f"{_DOCS}/users/users#get-the-authenticated-user"
SELF_LOGIN = "double-user"
"""The login of a token with no other (tests.forges.github.OWNER_LOGIN)."""
APP_SLUG = "meltano-forge-double"
"""The GitHub App an installation token belongs to; its comments are `APP_SLUG[bot]`'s."""


@dataclass(frozen=True)
class Grant:
    """A fine-grained token's repository permissions ('read' or 'write' by name:
    `statuses`, `issues`, `pull_requests`, `contents`); `integration` for a GitHub App's
    installation token, whose 403 says "by integration"."""

    permissions: dict[str, str] = field(default_factory=dict)
    integration: bool = False


def _user_json(site: str, login: str, kind: str) -> dict[str, Any]:
    """A user as GitHub shows one (simple-user); the id is stable per login."""
    api, uid = f"{site}/api/v3/users/{login}", sum(login.encode()) * 7919 % 10**7
    return {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"{site}/avatars/{login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{site}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "type": kind,
        "site_admin": False,
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class GitHubReporting:
    """The routes and state; `double.reporting` on every GitHub double."""

    def __init__(self, double: GitHubDouble) -> None:
        self.double = double
        self.statuses: dict[str, list[dict[str, Any]]] = {}
        """Per repository, every status ever created, oldest first."""
        self.comments: dict[str, list[dict[str, Any]]] = {}
        """Per repository, the issue comments that still exist, oldest first."""
        self.grants: dict[str, Grant] = {}
        """Fine-grained tokens and what each may do (others act by their role alone)."""
        self.logins: dict[str, str] = {}
        """Per token, the login of its user (others are `SELF_LOGIN`'s)."""
        self._ids = itertools.count(1_000_001)

    def register(self) -> None:
        """Add the routes to the double."""
        api = "/api/v3"
        self.double.route("GET", api + "/user", self.get_user)
        for method, pattern, handler in (
            ("POST", R + "/statuses/(?P<sha>[^/]+)", self.create_status),
            ("GET", R + "/commits/(?P<ref>.+)/statuses", self.list_statuses),
            ("GET", R + "/commits/(?P<ref>.+)/status", self.combined_status),
            ("GET", R + r"/issues/(?P<number>\d+)/comments", self.list_comments),
            ("POST", R + r"/issues/(?P<number>\d+)/comments", self.create_comment),
            ("GET", R + r"/issues/comments/(?P<comment_id>\d+)", self.get_comment),
            ("PATCH", R + r"/issues/comments/(?P<comment_id>\d+)", self.update_comment),
            ("GET", R + r"/pulls/(?P<number>\d+)", self.get_pull),
            ("GET", R + r"/pulls/(?P<number>\d+)/files", self.pull_files),
        ):
            self.double.route(method, api + pattern, handler)
        self.double.route("GET", PAGE, self.pull_page)

    # ---- test controls ---------------------------------------------------------------
    def statuses_on(self, full_name: str, sha: str) -> list[dict[str, Any]]:
        """Every status created on a commit, newest first (as the API lists them)."""
        return [s for s in reversed(self.statuses.get(full_name, [])) if s["sha"] == sha]

    def comments_on(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """The comments on PR `number`, oldest first."""
        return [c for c in self.comments.get(full_name, []) if c["number"] == number]

    def delete_comment(self, full_name: str, comment_id: int) -> None:
        """Remove a comment, as a person deleting it on the page does."""
        self.comments[full_name] = [
            c for c in self.comments.get(full_name, []) if c["id"] != comment_id
        ]

    def add_comment(
        self, full_name: str, number: int, body: str, user: str = "someone", kind: str = "User"
    ) -> int:
        """A comment by someone else (a reviewer; `kind` "Bot" for an app), without a
        request; returns its id."""
        comment = self._new_comment(number, body, (user, kind))
        self.comments.setdefault(full_name, []).append(comment)
        return int(comment["id"])

    # ---- users -----------------------------------------------------------------------
    def author(self, request: Request) -> tuple[str, str]:
        """The login and type (User or Bot) of whoever the presented token acts as."""
        token = self.double.presented_token(request) or ""
        grant = self.grants.get(token)
        if grant is not None and grant.integration:
            return f"{APP_SLUG}[bot]", "Bot"
        return self.logins.get(token, SELF_LOGIN), "User"

    def get_user(self, request: Request) -> Response:
        """users/get-authenticated: the token's user; an installation token has none."""
        login, kind = self.author(request)
        if kind == "Bot":
            return self.double.error(403, "Resource not accessible by integration", docs=DOCS_USER)
        return self.double.ok(request, 200, _user_json(self.double.url, login, kind))

    # ---- permissions -----------------------------------------------------------------
    def denied(self, request: Request, needs: tuple[str, ...], docs: str) -> Response | None:
        """GitHub's 403 when the token may not write with any of `needs`."""
        grant = self.grants.get(self.double.presented_token(request) or "")
        if grant is None:
            if request.role == "read":
                return self.double.error(
                    403, "Resource not accessible by personal access token", docs=docs
                )
            return None
        if any(grant.permissions.get(p) in ("write", "admin") for p in needs):
            return None
        who = "integration" if grant.integration else "personal access token"
        refused = self.double.error(403, f"Resource not accessible by {who}", docs=docs)
        refused.headers["x-accepted-github-permissions"] = "; ".join(f"{p}=write" for p in needs)
        return refused

    # ---- commit statuses -------------------------------------------------------------
    def _status_json(self, request: Request, status: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"{self.double.repo_url(request)}/statuses/{status['sha']}",
            "avatar_url": None,
            "id": status["id"],
            "node_id": f"SC_{status['id']}",
            "state": status["state"],
            "description": status["description"],
            "target_url": status["target_url"],
            "context": status["context"],
            "created_at": status["created_at"],
            "updated_at": status["created_at"],
            "creator": {"login": status["creator"], "id": 1, "type": "User"},
        }

    def create_status(self, request: Request) -> Response:
        refused = self.denied(request, ("statuses",), DOCS_STATUS)
        if refused:
            return refused
        name, sha, body = self.double.full_name(request), request.params["sha"], request.json()
        with self.double.open_repo(name) as repo:
            if repo is None:
                return self.double.not_found()
            if gitdata.commit(repo, sha) is None:
                return self.double.error(422, f"No commit found for SHA: {sha}", docs=DOCS_STATUS)
        state, context = body.get("state"), str(body.get("context") or "default")
        description = body.get("description")
        problem = (
            {"field": "state", "message": "state is not included in the list"}
            if state not in STATES
            else {
                "field": "description",
                "message": f"description is too long (maximum is {DESCRIPTION_MAX} characters)",
            }
            if isinstance(description, str) and len(description) > DESCRIPTION_MAX
            else None
        )
        if problem:
            return self.double.error(
                422,
                "Validation Failed",
                [{"resource": "Status", "code": "custom", **problem}],
                docs=DOCS_STATUS,
            )
        with self.double.write_lock(name):
            listed = self.statuses.setdefault(name, [])
            same = [
                s for s in listed if s["sha"] == sha and s["context"].lower() == context.lower()
            ]
            if len(same) >= STATUSES_PER_CONTEXT:
                return self.double.error(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "Status",
                            "code": "custom",
                            "message": "This SHA and context has reached the maximum number of statuses.",  # noqa: E501 - the forge's own words
                        }
                    ],
                    docs=DOCS_STATUS,
                )
            status = {
                "id": next(self._ids),
                "sha": sha,
                "state": state,
                "description": description,
                "target_url": body.get("target_url"),
                "context": context,
                "created_at": _now(),
                "creator": "double-user",
            }
            listed.append(status)
        return self.double.ok(request, 201, self._status_json(request, status))

    def _resolved(self, request: Request) -> tuple[Response | None, str]:
        with self.double.open_repo(self.double.full_name(request)) as repo:
            if repo is None:
                return self.double.not_found(), ""
            sha = gitdata.resolve(repo, request.params["ref"])
        if sha is None:
            return self.double.error(404, f"No commit found for SHA: {request.params['ref']}"), ""
        return None, sha

    def list_statuses(self, request: Request) -> Response:
        problem, sha = self._resolved(request)
        if problem:
            return problem
        items = [
            self._status_json(request, s)
            for s in self.statuses_on(self.double.full_name(request), sha)
        ]
        page, link, _, _ = paginate(items, request, 30, self.double.url)
        return self.double.ok(request, 200, page, link)

    def latest(self, full_name: str, sha: str) -> list[dict[str, Any]]:
        """The newest status of each context (case-insensitive), newest first."""
        seen: set[str] = set()
        out = []
        for status in self.statuses_on(full_name, sha):
            if status["context"].lower() not in seen:
                seen.add(status["context"].lower())
                out.append(status)
        return out

    @staticmethod
    def combined_state(latest: list[dict[str, Any]]) -> str:
        """GitHub's rule for the combined state of a commit."""
        states = {s["state"] for s in latest}
        if states & {"error", "failure"}:
            return "failure"
        if not states or "pending" in states:
            return "pending"
        return "success"

    def combined_status(self, request: Request) -> Response:
        problem, sha = self._resolved(request)
        if problem:
            return problem
        name = self.double.full_name(request)
        latest = self.latest(name, sha)
        page, link, _, _ = paginate(
            [self._status_json(request, s) for s in latest], request, 100, self.double.url
        )
        owner = request.params["owner"]
        body = {
            "state": self.combined_state(latest),
            "statuses": page,
            "sha": sha,
            "total_count": len(latest),
            "repository": {
                "id": abs(hash(name)) % 10**8,
                "name": request.params["repo"],
                "full_name": name,
                "owner": {"login": owner, "id": 1, "type": "User"},
                "private": True,
                "html_url": f"{self.double.url}/{name}",
                "url": self.double.repo_url(request),
            },
            "commit_url": f"{self.double.repo_url(request)}/commits/{sha}",
            "url": f"{self.double.repo_url(request)}/commits/{sha}/status",
        }
        return self.double.ok(request, 200, body, link)

    # ---- issue comments --------------------------------------------------------------
    def _new_comment(self, number: int, body: str, author: tuple[str, str]) -> dict[str, Any]:
        now = _now()
        return {
            "id": next(self._ids),
            "number": number,
            "body": body,
            "user": author[0],
            "user_type": author[1],
            "created_at": now,
            "updated_at": now,
        }

    def _comment_json(self, request: Request, comment: dict[str, Any]) -> dict[str, Any]:
        repo_url, name = self.double.repo_url(request), self.double.full_name(request)
        number, cid = comment["number"], comment["id"]
        body = {
            "id": cid,
            "node_id": f"IC_{cid}",
            "url": f"{repo_url}/issues/comments/{cid}",
            "html_url": f"{self.double.url}/{name}/pull/{number}#issuecomment-{cid}",
            "issue_url": f"{repo_url}/issues/{number}",
            "body": comment["body"],
            "user": _user_json(self.double.url, comment["user"], comment["user_type"]),
            "author_association": "OWNER" if comment["user"] == SELF_LOGIN else "CONTRIBUTOR",
            "created_at": comment["created_at"],
            "updated_at": comment["updated_at"],
        }
        # One shape for every read of a comment, the operation the subset leaves out too.
        filled: dict[str, Any] = openapi.conform("PATCH", COMMENT_TEMPLATE, 200, body)
        return filled

    def _pull(self, request: Request) -> dict[str, Any] | None:
        number = int(request.params["number"])
        pulls = self.double.pulls.get(self.double.full_name(request), [])
        return next((p for p in pulls if p["number"] == number), None)

    def _body_problem(self, body: Any, docs: str) -> Response | None:
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return self.double.error(
                422,
                "Validation Failed",
                [{"resource": "IssueComment", "code": "missing_field", "field": "body"}],
                docs=docs,
            )
        if len(text) > COMMENT_MAX:
            return self.double.error(
                422,
                "Validation Failed",
                [
                    {
                        "resource": "IssueComment",
                        "code": "custom",
                        "field": "body",
                        "message": f"body is too long (maximum is {COMMENT_MAX} characters)",
                    }
                ],
                docs=docs,
            )
        return None

    def list_comments(self, request: Request) -> Response:
        if self._pull(request) is None:
            return self.double.not_found()
        name, number = self.double.full_name(request), int(request.params["number"])
        items = [self._comment_json(request, c) for c in self.comments_on(name, number)]
        page, link, _, _ = paginate(items, request, 30, self.double.url)
        return self.double.ok(request, 200, page, link)

    def create_comment(self, request: Request) -> Response:
        refused = self.denied(request, ("issues", "pull_requests"), DOCS_COMMENT)
        if refused:
            return refused
        if self._pull(request) is None:
            return self.double.not_found()
        body = request.json()
        problem = self._body_problem(body, DOCS_COMMENT)
        if problem:
            return problem
        name = self.double.full_name(request)
        comment = self._new_comment(
            int(request.params["number"]), body["body"], self.author(request)
        )
        with self.double.write_lock(name):
            self.comments.setdefault(name, []).append(comment)
        return self.double.ok(request, 201, self._comment_json(request, comment))

    def _comment(self, request: Request) -> dict[str, Any] | None:
        wanted = int(request.params["comment_id"])
        listed = self.comments.get(self.double.full_name(request), [])
        return next((c for c in listed if c["id"] == wanted), None)

    def get_comment(self, request: Request) -> Response:
        comment = self._comment(request)
        if comment is None:
            return self.double.not_found()
        return Response.json(200, self._comment_json(request, comment))

    def update_comment(self, request: Request) -> Response:
        refused = self.denied(request, ("issues", "pull_requests"), DOCS_UPDATE)
        if refused:
            return refused
        body = request.json()
        problem = self._body_problem(body, DOCS_UPDATE)
        if problem:
            return problem
        with self.double.write_lock(self.double.full_name(request)):
            comment = self._comment(request)
            if comment is None:
                return self.double.not_found()
            comment["body"], comment["updated_at"] = body["body"], _now()
        return self.double.ok(request, 200, self._comment_json(request, comment))

    # ---- pull requests ---------------------------------------------------------------
    def refresh(self, full_name: str, pr: dict[str, Any]) -> dict[str, Any]:
        """An open PR's head follows its branch, as GitHub's does on every push."""
        if pr["state"] == "open":
            with self.double.open_repo(full_name) as repo:
                if repo is not None:
                    heads = gitdata.heads(repo)
                    pr["head_sha"] = heads.get(pr["head_ref"], pr["head_sha"])
                    pr["base_sha"] = heads.get(pr["base_ref"], pr["base_sha"])
        return pr

    def get_pull(self, request: Request) -> Response:
        pr = self._pull(request)
        if pr is None:
            return self.double.not_found()
        self.refresh(self.double.full_name(request), pr)
        return self.double.ok(request, 200, self.double.pull_json(request, pr))

    def pull_files(self, request: Request) -> Response:
        pr = self._pull(request)
        if pr is None:
            return self.double.not_found()
        name = self.double.full_name(request)
        self.refresh(name, pr)
        files = []
        with self.double.open_repo(name) as repo:
            assert repo is not None
            head, base = pr["head_sha"], pr["base_sha"]
            start = gitdata.merge_base(repo, base, head) or base
            for change in tree_changes(
                repo.object_store, gitdata.tree_of(repo, start), gitdata.tree_of(repo, head)
            ):
                entry = change.new if change.new is not None and change.new.path else change.old
                assert entry is not None
                assert entry.path is not None
                path = entry.path.decode()
                blob = f"{self.double.url}/{name}/blob/{head}/{path}"
                contents = f"{self.double.repo_url(request)}/contents/{path}?ref={head}"
                files.append(
                    {
                        "sha": (entry.sha or b"").decode(),
                        "filename": path,
                        "status": {"add": "added", "delete": "removed"}.get(
                            change.type, "modified"
                        ),
                        "additions": 0,
                        "deletions": 0,
                        "changes": 0,
                        "blob_url": blob,
                        "raw_url": blob.replace("/blob/", "/raw/"),
                        "contents_url": contents,
                    }
                )
        page, link, _, _ = paginate(files[:3000], request, 30, self.double.url)
        return self.double.ok(request, 200, page, link)

    def pull_page(self, request: Request) -> Response:
        """`/{owner}/{repo}/pull/{number}`: the PR as a person sees it."""
        pr = self._pull(request)
        if pr is None:
            return Response(404, b"<h1>404</h1>", content_type="text/html; charset=utf-8")
        name = self.double.full_name(request)
        self.refresh(name, pr)
        statuses = [
            StatusLine(s["context"], s["state"], s["description"], s["target_url"])
            for s in self.latest(name, pr["head_sha"])
        ]
        comments = [
            CommentBox(c["user"], c["created_at"], c["body"])
            for c in self.comments_on(name, pr["number"])
        ]
        page = change_request_page(
            forge="GitHub",
            title=str(pr.get("title") or ""),
            number=f"#{pr['number']}",
            open_=pr["state"] == "open",
            source=pr["head_ref"],
            target=pr["base_ref"],
            head_sha=pr["head_sha"],
            statuses=statuses,
            comments=comments,
        )
        return Response(200, page, content_type="text/html; charset=utf-8")
