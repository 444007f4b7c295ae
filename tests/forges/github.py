"""A GitHub double: the REST endpoints meltano-forge uses (`/api/v3`), GraphQL
`createCommitOnBranch` (`/api/graphql`) and codeload-style tarballs, over real git objects.

Status codes and error bodies follow GitHub's: 401 "Bad credentials", 404 "Not Found",
409 "Git Repository is empty.", 422 "Update is not a fast forward", "Reference already
exists", "Reference update failed" and "Validation Failed". Every response is filled to
and checked against the published OpenAPI description in tests/contracts.

Check reporting (tests/forges/github_reporting.py): commit statuses, issue comments on PRs,
`pulls/get`, `pulls/files`, and the page `GET /{owner}/{repo}/pull/{number}` (no token
needed). What tests use:
- `double.open_pull(full_name, head, base, title) -> number` opens a PR without a request
  (or open one through the adapter, `forge.open_change_request`); `double.close_pull`;
- `double.reporting.statuses_on(full_name, sha)` (newest first),
  `double.reporting.comments_on(full_name, number)` (oldest first, dicts with `id`,
  `body`, `user`), `double.reporting.add_comment(full_name, number, body, user)`,
  `double.reporting.delete_comment(full_name, comment_id)`;
- `double.fine_grained(token, statuses="read", pull_requests="write", ...)` accepts a
  fine-grained token (`integration=True`: a GitHub App's) that gets GitHub's 403 where it
  lacks a permission.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import threading
import time
import urllib.parse
from typing import Any

from dulwich.objects import Tree
from dulwich.repo import Repo

from providers import gitobjects
from providers.contract import FileMode
from providers.errors import InvalidRequest
from tests.forges import gitdata, openapi
from tests.forges.github_reporting import PAGE, GitHubReporting, Grant
from tests.forges.graphql import GraphQLEndpoint
from tests.forges.server import ForgeDouble, Request, Response, paginate

API = "/api/v3"
DOCS = "https://docs.github.com/rest"
OWNER_LOGIN = "double-user"
OWNER_EMAIL = "double-user@users.noreply.forge.invalid"
R = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


def error(
    status: int, message: str, errors: list[dict[str, Any]] | None = None, docs: str = DOCS
) -> Response:
    """GitHub's error body (`docs`: the operation's page, as GitHub links it)."""
    body: dict[str, Any] = {"message": message, "documentation_url": docs, "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return Response.json(status, body)


class GitHubDouble(ForgeDouble):
    """Serves every bare repository at `DIR/OWNER/NAME.git`."""

    name = "github"

    def __init__(self, *args: Any, validate: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.validate = validate
        self.pulls: dict[str, list[dict[str, Any]]] = {}
        self.protected: dict[str, set[str]] = {}
        self._ids = itertools.count(1)
        self._remaining = 5000
        self._codeload_tokens: set[str] = set()
        self._lock2 = threading.Lock()
        self.graphql = GraphQLEndpoint(self)
        self.api = self.url + API
        for method, pattern, handler in (
            ("GET", "/rate_limit", self.rate_limit),
            ("GET", R, self.get_repo),
            ("GET", R + "/branches", self.list_branches),
            ("GET", R + "/branches/(?P<branch>.+)/protection", self.get_protection),
            ("GET", R + "/branches/(?P<branch>.+)", self.get_branch),
            ("GET", R + "/git/ref/(?P<ref>.+)", self.get_ref),
            ("GET", R + "/git/matching-refs/(?P<ref>.*)", self.matching_refs),
            ("POST", R + "/git/refs", self.create_ref),
            ("PATCH", R + "/git/refs/(?P<ref>.+)", self.update_ref),
            ("DELETE", R + "/git/refs/(?P<ref>.+)", self.delete_ref),
            ("POST", R + "/git/blobs", self.create_blob),
            ("GET", R + "/git/blobs/(?P<sha>[0-9a-f]{40})", self.get_blob),
            ("POST", R + "/git/trees", self.create_tree),
            ("GET", R + "/git/trees/(?P<sha>.+)", self.get_tree),
            ("POST", R + "/git/commits", self.create_commit),
            ("GET", R + "/git/commits/(?P<sha>[0-9a-f]{40})", self.get_git_commit),
            ("GET", R + r"/compare/(?P<base>.+)\.\.\.(?P<head>.+)", self.compare),
            ("GET", R + "/commits", self.list_commits),
            ("GET", R + "/contents/(?P<path>.+)", self.get_contents),
            ("PUT", R + "/contents/(?P<path>.+)", self.put_contents),
            ("GET", R + "/pulls", self.list_pulls),
            ("POST", R + "/pulls", self.create_pull),
            ("GET", R + "/tarball/(?P<ref>.+)", self.tarball),
        ):
            self.route(method, API + pattern, handler)
        self.route(
            "GET",
            r"/_codeload/(?P<owner>[^/]+)/(?P<repo>[^/]+)/legacy\.tar\.gz/(?P<sha>[0-9a-f]{40})",
            self.codeload,
        )
        self.route("POST", "/api/graphql", self.graphql.handle)
        self.reporting = GitHubReporting(self)
        self.reporting.register()

    # ---- forge-wide behaviour --------------------------------------------------------
    def presented_token(self, request: Request) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return value if scheme.lower() in ("token", "bearer") else None

    def authorized(self, request: Request) -> bool:
        if request.path.startswith("/_codeload/"):
            return request.query.get("token") in self._codeload_tokens
        if re.fullmatch(PAGE, request.path):  # a browser shows the PR page without a token
            return True
        return super().authorized(request)

    def error(
        self,
        status: int,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        docs: str = DOCS,
    ) -> Response:
        """GitHub's error body, for the routes that live outside this module."""
        return error(status, message, errors, docs)

    def forbidden(self, request: Request) -> Response | None:
        """GitHub's 403 for a write with a token that may only read."""
        if request.role == "read":
            return error(403, "Resource not accessible by personal access token")
        return None

    def unauthorized(self) -> Response:
        return error(401, "Bad credentials")

    def not_found(self) -> Response:
        return error(404, "Not Found")

    def decorate(self, request: Request, response: Response) -> None:
        with self._lock2:
            self._remaining = max(self._remaining - 1, 0)
            remaining = self._remaining
        response.headers.setdefault("x-ratelimit-limit", "5000")
        response.headers.setdefault("x-ratelimit-remaining", str(remaining))
        response.headers.setdefault("x-ratelimit-reset", str(int(time.time()) + 3600))
        response.headers.setdefault("x-ratelimit-used", str(5000 - remaining))
        response.headers.setdefault("x-ratelimit-resource", "core")
        response.headers.setdefault("x-github-request-id", f"DOUBLE:{next(self._ids)}")

    def check(self, request: Request, response: Response) -> None:
        if not self.validate or response.injected or not request.path.startswith(API):
            return
        path = request.path[len(API) :]
        problems = openapi.validate_request(request.method, path, request.body)
        if response.content_type.startswith("application/json"):
            problems += openapi.validate_response(
                request.method, path, response.status, response.body
            )
        if problems:
            with self._lock:
                self.validation_errors.extend(problems)

    def ok(
        self, request: Request, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> Response:
        """A success response, filled up to the schema of the operation."""
        template = openapi.template_for(request.method, request.path[len(API) :])
        if template is not None:
            body = openapi.conform(request.method, template, status, body)
        return Response.json(status, body, headers)

    def full_name(self, request: Request) -> str:
        return f"{request.params['owner']}/{request.params['repo']}"

    def repo_url(self, request: Request) -> str:
        return f"{self.api}/repos/{self.full_name(request)}"

    # ---- repositories and branches ---------------------------------------------------
    def rate_limit(self, request: Request) -> Response:
        core = {
            "limit": 5000,
            "remaining": self._remaining,
            "reset": int(time.time()) + 3600,
            "used": 5000 - self._remaining,
        }
        return self.ok(request, 200, {"resources": {"core": core}, "rate": core})

    def get_repo(self, request: Request) -> Response:
        name = self.full_name(request)
        with self.open_repo(name) as repo:
            if repo is None:
                return self.not_found()
            owner, short = name.split("/")
            return self.ok(
                request,
                200,
                {
                    "id": abs(hash(name)) % 10**8,
                    "name": short,
                    "full_name": name,
                    "default_branch": gitdata.default_branch(repo),
                    "html_url": f"{self.url}/{name}",
                    "url": self.repo_url(request),
                    "private": True,
                    "visibility": "private",
                    "size": 0 if not gitdata.heads(repo) else 1,
                    "owner": {"login": owner, "id": 1, "type": "User"},
                    "permissions": {
                        "admin": request.role == "admin",
                        "maintain": request.role == "admin",
                        "push": request.role in ("write", "admin"),
                        "triage": request.role in ("write", "admin"),
                        "pull": True,
                    },
                },
            )

    def is_protected(self, full_name: str, branch: str) -> bool:
        """Whether a branch protection rule covers the branch."""
        return branch in self.protected.get(full_name, set())

    def _branch_json(self, request: Request, name: str, sha: str) -> dict[str, Any]:
        protected = self.is_protected(self.full_name(request), name)
        return {
            "name": name,
            "commit": {"sha": sha, "url": f"{self.repo_url(request)}/commits/{sha}"},
            "protected": protected,
        }

    def list_branches(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            items = [
                self._branch_json(request, n, s) for n, s in sorted(gitdata.heads(repo).items())
            ]
        if request.query.get("protected") == "true":
            items = [b for b in items if b["protected"]]
        page, link, _, _ = paginate(items, request, 30, self.url)
        return self.ok(request, 200, page, link)

    def get_branch(self, request: Request) -> Response:
        name = request.params["branch"]
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            sha = gitdata.heads(repo).get(name)
            if sha is None:
                return error(404, "Branch not found")
            body = self._branch_json(request, name, sha)
            body["commit"] = self._commit_json(request, repo, sha)
            body["_links"] = {
                "self": f"{self.repo_url(request)}/branches/{name}",
                "html": f"{self.url}/{self.full_name(request)}/tree/{name}",
            }
            body["protection_url"] = f"{self.repo_url(request)}/branches/{name}/protection"
        return self.ok(request, 200, body)

    def get_protection(self, request: Request) -> Response:
        if request.params["branch"] not in self.protected.get(self.full_name(request), set()):
            return error(404, "Branch not protected")
        return self.ok(
            request,
            200,
            {
                "url": f"{self.repo_url(request)}/branches/{request.params['branch']}/protection",
                "enabled": True,
            },
        )

    def _commit_json(self, request: Request, repo: Repo, sha: str) -> dict[str, Any]:
        obj = gitdata.commit(repo, sha)
        assert obj is not None
        return {
            "sha": sha,
            "url": f"{self.repo_url(request)}/commits/{sha}",
            "html_url": f"{self.url}/{self.full_name(request)}/commit/{sha}",
            "commit": self._git_commit_json(request, repo, sha),
            "parents": [
                {"sha": p.decode(), "url": f"{self.repo_url(request)}/commits/{p.decode()}"}
                for p in obj.parents
            ],
        }

    def list_commits(self, request: Request) -> Response:
        """GET /commits?sha=: git log order (newest first), paginated like GitHub."""
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            ref = request.query.get("sha") or gitdata.default_branch(repo)
            head = gitdata.resolve(repo, ref)
            if head is None:
                return error(404, f"No commit found for SHA: {ref}")
            ordered = sorted(
                gitdata.ancestors(repo, head, limit=1000).items(), key=lambda kv: kv[1]
            )
            items = [self._commit_json(request, repo, sha) for sha, _ in ordered]
        page, link, _, _ = paginate(items, request, 30, self.url)
        return self.ok(request, 200, page, link)

    def _git_commit_json(self, request: Request, repo: Repo, sha: str) -> dict[str, Any]:
        obj = gitdata.commit(repo, sha)
        assert obj is not None

        def person(raw: bytes, when: int) -> dict[str, str]:
            name, _, email = raw.decode().partition(" <")
            return {
                "name": name,
                "email": email.rstrip(">"),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            }

        return {
            "sha": sha,
            "url": f"{self.repo_url(request)}/git/commits/{sha}",
            "html_url": f"{self.url}/{self.full_name(request)}/commit/{sha}",
            "message": obj.message.decode(),
            "author": person(obj.author, obj.author_time),
            "committer": person(obj.committer, obj.commit_time),
            "tree": {
                "sha": obj.tree.decode(),
                "url": f"{self.repo_url(request)}/git/trees/{obj.tree.decode()}",
            },
            "parents": [
                {
                    "sha": p.decode(),
                    "url": f"{self.repo_url(request)}/git/commits/{p.decode()}",
                    "html_url": f"{self.url}/{self.full_name(request)}/commit/{p.decode()}",
                }
                for p in obj.parents
            ],
            "verification": {
                "verified": False,
                "reason": "unsigned",
                "signature": None,
                "payload": None,
                "verified_at": None,
            },
        }

    # ---- refs ------------------------------------------------------------------------
    def _ref_json(self, request: Request, name: str, sha: str) -> dict[str, Any]:
        return {
            "ref": f"refs/heads/{name}",
            "node_id": f"REF_{name}",
            "url": f"{self.repo_url(request)}/git/refs/heads/{name}",
            "object": {
                "sha": sha,
                "type": "commit",
                "url": f"{self.repo_url(request)}/git/commits/{sha}",
            },
        }

    def get_ref(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            all_heads = gitdata.heads(repo)
            if not all_heads:
                return error(409, "Git Repository is empty.")
            ref = request.params["ref"]
            sha = all_heads.get(ref.removeprefix("heads/")) if ref.startswith("heads/") else None
            if sha is None:
                return self.not_found()
            return self.ok(request, 200, self._ref_json(request, ref.removeprefix("heads/"), sha))

    def matching_refs(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            prefix = request.params["ref"].removeprefix("heads/")
            items = [
                self._ref_json(request, n, s)
                for n, s in sorted(gitdata.heads(repo).items())
                if n.startswith(prefix)
            ]
        return self.ok(request, 200, items)

    def create_ref(self, request: Request) -> Response:
        refused = self.forbidden(request)
        if refused:
            return refused
        body = request.json()
        ref, sha = body.get("ref", ""), body.get("sha", "")
        if not ref.startswith("refs/") or ref.count("/") < 2:
            return error(
                422, "Reference name must start with 'refs/' and have at least two slashes"
            )
        name = ref.removeprefix("refs/heads/")
        with (
            self.write_lock(self.full_name(request)),
            self.open_repo(self.full_name(request)) as repo,
        ):
            if repo is None:
                return self.not_found()
            existing = gitdata.heads(repo)
            if not existing:
                return error(409, "Git Repository is empty.")
            if gitdata.commit(repo, sha) is None:
                return error(422, "Object does not exist")
            if name in existing:
                return error(422, "Reference already exists")
            if any(name.startswith(o + "/") or o.startswith(name + "/") for o in existing):
                return error(422, "Reference update failed")
            gitdata.set_head(repo, name, None, sha)
            return self.ok(request, 201, self._ref_json(request, name, sha))

    def update_ref(self, request: Request) -> Response:
        refused = self.forbidden(request)
        if refused:
            return refused
        body = request.json()
        name = request.params["ref"].removeprefix("heads/")
        if self.is_protected(self.full_name(request), name) and request.role != "admin":
            return error(422, f"Protected branch update failed for refs/heads/{name}.")
        sha, force = body.get("sha", ""), bool(body.get("force", False))
        with (
            self.write_lock(self.full_name(request)),
            self.open_repo(self.full_name(request)) as repo,
        ):
            if repo is None:
                return self.not_found()
            current = gitdata.heads(repo).get(name)
            if current is None:
                return error(422, "Reference does not exist")
            if gitdata.commit(repo, sha) is None:
                return error(422, "Object does not exist")
            if not force and not gitdata.is_ancestor(repo, current, sha):
                return error(422, "Update is not a fast forward")
            gitdata.set_head(repo, name, current, sha)
            return self.ok(request, 200, self._ref_json(request, name, sha))

    def delete_ref(self, request: Request) -> Response:
        refused = self.forbidden(request)
        if refused:
            return refused
        name = request.params["ref"].removeprefix("heads/")
        with (
            self.write_lock(self.full_name(request)),
            self.open_repo(self.full_name(request)) as repo,
        ):
            if repo is None or name not in gitdata.heads(repo):
                return error(422, "Reference does not exist")
            repo.refs.remove_if_equals(gitobjects.branch_ref(name), None)
        return Response(204)

    # ---- git data --------------------------------------------------------------------
    def _writable(self, request: Request) -> tuple[Response | None, str]:
        name = self.full_name(request)
        refused = self.forbidden(request)
        if refused:
            return refused, name
        with self.open_repo(name) as repo:
            if repo is None:
                return self.not_found(), name
            if not gitdata.heads(repo):
                return error(409, "Git Repository is empty."), name
        return None, name

    def create_blob(self, request: Request) -> Response:
        refusal, name = self._writable(request)
        if refusal:
            return refusal
        body = request.json()
        if "content" not in body:
            return error(422, 'Invalid request.\n\n"content" wasn\'t supplied.')
        try:
            data = (
                base64.b64decode(body["content"], validate=True)
                if body.get("encoding") == "base64"
                else body["content"].encode()
            )
        except (binascii.Error, ValueError):
            return error(422, "Invalid request.\n\nInvalid base64 content.")
        with self.open_repo(name) as repo:
            assert repo is not None
            sha = gitobjects.add_blob(repo.object_store, data).decode()
        return self.ok(
            request, 201, {"sha": sha, "url": f"{self.repo_url(request)}/git/blobs/{sha}"}
        )

    def get_blob(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            try:
                data = gitdata.blob(repo, request.params["sha"].encode())
            except (KeyError, AssertionError):
                return self.not_found()
        sha = request.params["sha"]
        return self.ok(
            request,
            200,
            {
                "sha": sha,
                "size": len(data),
                "content": base64.b64encode(data).decode(),
                "encoding": "base64",
                "url": f"{self.repo_url(request)}/git/blobs/{sha}",
                "node_id": f"B_{sha}",
            },
        )

    def create_tree(self, request: Request) -> Response:
        refusal, name = self._writable(request)
        if refusal:
            return refusal
        body = request.json()
        entries = body.get("tree")
        if not isinstance(entries, list):
            return error(422, 'Invalid request.\n\n"tree" wasn\'t supplied.')
        with self.open_repo(name) as repo:
            assert repo is not None
            store = repo.object_store
            base = None
            if body.get("base_tree"):
                base = gitdata.tree_id(repo, body["base_tree"])
                if base is None:
                    return error(422, "Invalid request.\n\nbase_tree is not a valid tree oid")
            edits = []
            for entry in entries:
                path, mode = entry.get("path", ""), entry.get("mode", "")
                if mode not in ("100644", "100755", "120000"):
                    return error(
                        422, f"Invalid request.\n\nmode {mode!r} is not supported by this double"
                    )
                if "content" in entry:
                    sha: bytes | None = gitobjects.add_blob(store, entry["content"].encode())
                elif entry.get("sha") is None:
                    sha = None
                else:
                    sha = gitobjects.oid(entry["sha"])
                    if not store.contains_loose(sha) and sha not in store:
                        return error(422, "Invalid request.\n\nsha not found")
                edits.append(gitobjects.TreeEdit(path, FileMode.parse(mode), sha))
            try:
                tree = gitobjects.apply_edits(store, base, edits).decode()
            except InvalidRequest as exc:
                return error(422, f"GitRPC::BadObjectState: {exc.reason}")
            listing = [
                {"path": p, "mode": f"{m:o}", "type": "blob", "sha": s.decode()}
                for p, m, s in gitobjects.walk(store, tree.encode())
            ][:100]
        return self.ok(
            request,
            201,
            {
                "sha": tree,
                "url": f"{self.repo_url(request)}/git/trees/{tree}",
                "tree": listing,
                "truncated": False,
            },
        )

    def get_tree(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            if not gitdata.heads(repo):
                return error(409, "Git Repository is empty.")
            tree = gitdata.tree_id(repo, request.params["sha"])
            if tree is None:
                return self.not_found()
            items = []
            if request.query.get("recursive") not in (None, "", "0", "false"):
                for path, mode, sha in gitobjects.walk(repo.object_store, tree):
                    size = len(gitdata.blob(repo, sha))
                    items.append(
                        {
                            "path": path,
                            "mode": f"{mode:o}",
                            "type": "blob",
                            "sha": sha.decode(),
                            "size": size,
                            "url": f"{self.repo_url(request)}/git/blobs/{sha.decode()}",
                        }
                    )
            else:
                listing = repo.object_store[tree]
                assert isinstance(listing, Tree)
                for item in listing.iteritems():
                    kind = "tree" if item.mode == gitobjects.DIR_MODE else "blob"
                    items.append(
                        {
                            "path": item.path.decode(),
                            "mode": f"{item.mode:o}".zfill(6),
                            "type": kind,
                            "sha": item.sha.decode(),
                        }
                    )
        return self.ok(
            request,
            200,
            {
                "sha": tree.decode(),
                "url": f"{self.repo_url(request)}/git/trees/{tree.decode()}",
                "tree": items,
                "truncated": False,
            },
        )

    def create_commit(self, request: Request) -> Response:
        refusal, name = self._writable(request)
        if refusal:
            return refusal
        body = request.json()
        if not body.get("message") or not body.get("tree"):
            return error(422, 'Invalid request.\n\n"message" and "tree" are required.')
        with self.open_repo(name) as repo:
            assert repo is not None
            if gitdata.tree_id(repo, body["tree"]) is None:
                return error(422, "Tree SHA does not exist")
            parents = body.get("parents", [])
            if any(gitdata.commit(repo, p) is None for p in parents):
                return error(422, "Parent SHA does not exist or is not a commit object")
            author = body.get("author") or {"name": OWNER_LOGIN, "email": OWNER_EMAIL}
            sha = gitobjects.make_commit(
                repo.object_store,
                body["tree"].encode(),
                [p.encode() for p in parents],
                body["message"],
                (author["name"], author["email"]),
                (OWNER_LOGIN, OWNER_EMAIL),
            ).decode()
            return self.ok(request, 201, self._git_commit_json(request, repo, sha))

    def get_git_commit(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None or gitdata.commit(repo, request.params["sha"]) is None:
                return self.not_found()
            return self.ok(
                request, 200, self._git_commit_json(request, repo, request.params["sha"])
            )

    def compare(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            base, head = (
                gitdata.resolve(repo, request.params["base"]),
                gitdata.resolve(repo, request.params["head"]),
            )
            if base is None or head is None:
                return self.not_found()
            mb = gitdata.merge_base(repo, base, head) or base
            ahead = gitdata.commits_between(repo, mb, head)
            behind = gitdata.commits_between(repo, mb, base)
            files = []
            from dulwich.diff_tree import tree_changes

            for change in tree_changes(
                repo.object_store, gitdata.tree_of(repo, mb), gitdata.tree_of(repo, head)
            ):
                old, new = change.old, change.new
                entry = new if new is not None and new.path else old
                assert entry is not None
                assert entry.path is not None
                status = {"add": "added", "delete": "removed", "modify": "modified"}.get(
                    change.type, "changed"
                )
                files.append(
                    {
                        "sha": (entry.sha or b"").decode(),
                        "filename": entry.path.decode(),
                        "status": status,
                        "additions": 0,
                        "deletions": 0,
                        "changes": 0,
                    }
                )
            status = (
                "identical"
                if base == head
                else "ahead"
                if not behind
                else "behind"
                if not ahead
                else "diverged"
            )
            body = {
                "url": f"{self.repo_url(request)}/compare/{base}...{head}",
                "status": status,
                "ahead_by": len(ahead),
                "behind_by": len(behind),
                "total_commits": len(ahead),
                "base_commit": self._commit_json(request, repo, base),
                "merge_base_commit": self._commit_json(request, repo, mb),
                "commits": [self._commit_json(request, repo, c) for c in ahead[-250:]],
                "files": files[:300],
            }
        return self.ok(request, 200, body)

    # ---- contents --------------------------------------------------------------------
    def get_contents(self, request: Request) -> Response:
        path = request.params["path"]
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            sha = gitdata.resolve(repo, request.query.get("ref") or gitdata.default_branch(repo))
            if sha is None:
                return self.not_found()
            found = gitobjects.lookup(repo.object_store, gitdata.tree_of(repo, sha), path)
            if found is None or found[0] == gitobjects.DIR_MODE:
                return self.not_found()
            data = gitdata.blob(repo, found[1])
        big = len(data) > 1024 * 1024
        blob_sha = found[1].decode()
        return self.ok(
            request,
            200,
            {
                "type": "file",
                "encoding": "none" if big else "base64",
                "size": len(data),
                "name": path.rsplit("/", 1)[-1],
                "path": path,
                "content": "" if big else base64.b64encode(data).decode(),
                "sha": blob_sha,
                "url": f"{self.repo_url(request)}/contents/{path}",
                "git_url": f"{self.repo_url(request)}/git/blobs/{blob_sha}",
                "html_url": f"{self.url}/{self.full_name(request)}/blob/{sha}/{path}",
                "download_url": None,
                "_links": {
                    "self": f"{self.repo_url(request)}/contents/{path}",
                    "git": None,
                    "html": None,
                },
            },
        )

    def put_contents(self, request: Request) -> Response:
        """Create or update one file; on an empty repository this makes the first commit."""
        refused = self.forbidden(request)
        if refused:
            return refused
        body = request.json()
        path = request.params["path"]
        name = self.full_name(request)
        with self.write_lock(name), self.open_repo(name) as repo:
            if repo is None:
                return self.not_found()
            if "message" not in body or "content" not in body:
                return error(422, 'Invalid request.\n\n"message" and "content" are required.')
            branch = body.get("branch") or gitdata.default_branch(repo)
            head = gitdata.heads(repo).get(branch)
            if head is None and gitdata.heads(repo):
                return error(404, f"Branch {branch} not found")
            store = repo.object_store
            base = gitdata.tree_of(repo, head) if head else None
            existing = gitobjects.lookup(store, base, path)
            if existing and body.get("sha") != existing[1].decode():
                return error(409, f"{path} does not match {body.get('sha') or 'nothing'}")
            blob_id = gitobjects.add_blob(store, base64.b64decode(body["content"]))
            tree = gitobjects.apply_edits(
                store, base, [gitobjects.TreeEdit(path, FileMode.REGULAR, blob_id)]
            )
            author = body.get("author") or {"name": OWNER_LOGIN, "email": OWNER_EMAIL}
            sha = gitobjects.make_commit(
                store,
                tree,
                [head.encode()] if head else [],
                body["message"],
                (author["name"], author["email"]),
                (OWNER_LOGIN, OWNER_EMAIL),
            )
            if head is None:
                gitdata.set_head(repo, branch, None, sha)
            else:
                gitdata.set_head(repo, branch, head, sha)
            return Response.json(
                201,
                {
                    "content": {
                        "name": path.rsplit("/", 1)[-1],
                        "path": path,
                        "sha": blob_id.decode(),
                    },
                    "commit": self._git_commit_json(request, repo, sha.decode()),
                },
            )

    # ---- pull requests ---------------------------------------------------------------
    def pull_json(self, request: Request, pr: dict[str, Any]) -> dict[str, Any]:
        owner = request.params["owner"]
        return {
            **pr,
            "url": f"{self.repo_url(request)}/pulls/{pr['number']}",
            "html_url": f"{self.url}/{self.full_name(request)}/pull/{pr['number']}",
            "head": {
                "ref": pr["head_ref"],
                "label": f"{owner}:{pr['head_ref']}",
                "sha": pr["head_sha"],
            },
            "base": {
                "ref": pr["base_ref"],
                "label": f"{owner}:{pr['base_ref']}",
                "sha": pr["base_sha"],
            },
        }

    def list_pulls(self, request: Request) -> Response:
        pulls = self.pulls.get(self.full_name(request), [])
        state = request.query.get("state", "open")
        head = request.query.get("head", "")
        base = request.query.get("base")
        items = [
            self.pull_json(request, p)
            for p in pulls
            if (state == "all" or p["state"] == state)
            and (not head or f"{request.params['owner']}:{p['head_ref']}" == head)
            and (base is None or p["base_ref"] == base)
        ]
        page, link, _, _ = paginate(items, request, 30, self.url)
        return self.ok(request, 200, page, link)

    def create_pull(self, request: Request) -> Response:
        refused = self.forbidden(request)
        if refused:
            return refused
        body = request.json()
        name = self.full_name(request)
        head_ref = body.get("head", "").rpartition(":")[2]
        base_ref = body.get("base", "")
        with self.write_lock(name), self.open_repo(name) as repo:
            if repo is None:
                return self.not_found()
            branches = gitdata.heads(repo)
            if head_ref not in branches or base_ref not in branches:
                field = "head" if head_ref not in branches else "base"
                return error(
                    422,
                    "Validation Failed",
                    [{"resource": "PullRequest", "field": field, "code": "invalid"}],
                )
            if any(
                p["state"] == "open" and p["head_ref"] == head_ref and p["base_ref"] == base_ref
                for p in self.pulls.get(name, [])
            ):
                return error(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {request.params['owner']}:{head_ref}.",  # noqa: E501 - the forge's own words
                        }
                    ],
                )
            if gitdata.is_ancestor(repo, branches[head_ref], branches[base_ref]):
                return error(
                    422,
                    "Validation Failed",
                    [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"No commits between {base_ref} and {head_ref}",
                        }
                    ],
                )
            pulls = self.pulls.setdefault(name, [])
            pr = {
                "number": len(pulls) + 1,
                "state": "open",
                "title": body.get("title", ""),
                "body": body.get("body"),
                "head_ref": head_ref,
                "base_ref": base_ref,
                "head_sha": branches[head_ref],
                "base_sha": branches[base_ref],
            }
            pulls.append(pr)
        return self.ok(request, 201, self.pull_json(request, pr))

    # ---- test controls for pull requests ---------------------------------------------
    def open_pull(self, full_name: str, head: str, base: str, title: str = "A change") -> int:
        """Open a PR straight in the double (no request, no checks); returns its number."""
        with self.open_repo(full_name) as repo:
            assert repo is not None
            branches = gitdata.heads(repo)
        pulls = self.pulls.setdefault(full_name, [])
        pulls.append(
            {
                "number": len(pulls) + 1,
                "state": "open",
                "title": title,
                "body": None,
                "head_ref": head,
                "base_ref": base,
                "head_sha": branches[head],
                "base_sha": branches[base],
            }
        )
        return len(pulls)

    def close_pull(self, full_name: str, number: int) -> None:
        """Close a PR, as a person on the page does."""
        for pr in self.pulls.get(full_name, []):
            if pr["number"] == number:
                pr["state"] = "closed"

    def fine_grained(self, token: str, *, integration: bool = False, **permissions: str) -> None:
        """Accept `token` as a fine-grained token (or, with `integration`, a GitHub App's
        installation token) holding exactly `permissions` (`statuses="read"`, ...); its
        role is 'write' when it may write contents."""
        self.add_token(token, "write" if permissions.get("contents") == "write" else "read")
        self.reporting.grants[token] = Grant(dict(permissions), integration)

    # ---- archives --------------------------------------------------------------------
    def tarball(self, request: Request) -> Response:
        with self.open_repo(self.full_name(request)) as repo:
            if repo is None:
                return self.not_found()
            sha = gitdata.resolve(repo, urllib.parse.unquote(request.params["ref"]))
            if sha is None:
                return self.not_found()
        location = self.codeload_url(request, self.full_name(request), sha)
        return Response(302, b"", {"Location": location}, content_type="text/html")

    def codeload_url(self, request: Request, full_name: str, sha: str) -> str:
        """A short-lived codeload download link, as the tarball redirect and GraphQL's
        `Commit.tarballUrl` give: an absolute URL on the host the client used (so a proxy
        in front of the double also carries the download), with a one-off token."""
        token = hashlib.sha256(f"{sha}{time.time()}{id(request)}".encode()).hexdigest()[:20]
        with self._lock:
            self._codeload_tokens.add(token)
        host = request.headers.get("host") or f"{self.host}:{self.port}"
        return f"http://{host}/_codeload/{full_name}/legacy.tar.gz/{sha}?token={token}"

    def codeload(self, request: Request) -> Response:
        owner, name, sha = request.params["owner"], request.params["repo"], request.params["sha"]
        with self.open_repo(f"{owner}/{name}") as repo:
            if repo is None or gitdata.commit(repo, sha) is None:
                return Response(404, b"404: Not Found", content_type="text/plain")
            data = self.archive_bytes(repo, sha, f"{owner}-{name}-{sha[:7]}/")
        return Response(
            200,
            data,
            {"Content-Disposition": f"attachment; filename={owner}-{name}-{sha[:7]}.tar.gz"},
            content_type="application/x-gzip",
        )
