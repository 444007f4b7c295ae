"""A GitLab double: the `/api/v4` endpoints meltano-forge uses, over real git objects.

Projects are addressed by URL-encoded path (nested groups included) or numeric id. The
commits API follows `Files::MultiService`: actions apply in order on the start branch;
`update`, `move` and `delete` check `last_commit_id` the way GitLab does (the file's last
commit on the branch against its last commit as of `last_commit_id`) and answer 400 "The
file has changed since you started editing it: PATH"; creating an existing file or
touching a missing one answer GitLab's 400s. Archives honour `sha` and `path`.

Check reporting (tests/forges/gitlab_reporting.py): commit statuses, `merge_requests/:iid`,
MR notes, and the page `GET /{path}/-/merge_requests/{iid}` (no token needed). What tests
use: `double.open_merge_request(path, source, target, title) -> iid` (or the adapter's
`open_change_request`), `double.close_merge_request(path, iid)`,
`double.reporting.statuses_on(path, sha)`, `double.reporting.notes_on(path, iid)` (oldest
first, dicts with `id`, `body`, `user`), `double.reporting.add_note(path, iid, body, user)`,
`double.reporting.delete_note(path, note_id)`, and `double.scoped(token, role, "read_api")`
for a token without the `api` scope.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, ClassVar

from dulwich.object_store import BaseObjectStore, MemoryObjectStore
from dulwich.objects import ObjectID, ShaFile, Tree
from dulwich.repo import Repo

from providers import gitobjects
from providers.contract import FileMode
from providers.errors import InvalidRequest
from tests.forges import gitdata, gitlab_files
from tests.forges.gitlab_reporting import PAGE as REPORTING_PAGE
from tests.forges.gitlab_reporting import GitLabReporting
from tests.forges.ratelimit import ArchiveLimit
from tests.forges.server import ForgeDouble, Request, Response, paginate

API = "/api/v4"
P = r"/projects/(?P<id>[^/]+)"
USER = ("Double User", "double-user@forge.invalid")


def error(status: int, message: Any) -> Response:
    """GitLab's error body."""
    return Response.json(status, {"message": message})


class ActionError(Exception):
    """A commit action GitLab would refuse with 400."""


class _Scratch(MemoryObjectStore):
    """New objects in memory over a repository's store; `flush` writes those a tree
    reaches (trees in between are never written: git would drop them as garbage)."""

    def __init__(self, base: BaseObjectStore) -> None:
        super().__init__()
        self.base = base
        self._read: dict[bytes, ShaFile] = {}

    def __getitem__(self, sha: ObjectID | bytes) -> ShaFile:
        if MemoryObjectStore.__contains__(self, ObjectID(sha)):
            return super().__getitem__(ObjectID(sha))
        obj = self._read.get(sha)
        if obj is None:  # objects never change: each is read once per request
            obj = self._read[sha] = gitobjects.load(self.base, sha, "")
        return obj

    def __contains__(self, sha: object) -> bool:
        return MemoryObjectStore.__contains__(self, sha) or sha in self.base  # type: ignore[operator]

    def flush(self, tree: bytes) -> None:
        """Write every object `tree` reaches that only lives here."""
        pending = [ObjectID(tree)]
        while pending:
            sha = pending.pop()
            if not MemoryObjectStore.__contains__(self, sha):
                continue
            obj = super().__getitem__(sha)
            if isinstance(obj, Tree):
                pending += [ObjectID(item.sha) for item in obj.iteritems()]
            self.base.add_object(obj)


class GitLabDouble(ForgeDouble):
    """Serves every bare repository under DIR, nested groups included."""

    name = "gitlab"

    def __init__(
        self, *args: Any, archive_rate_limit: int | ArchiveLimit | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.url + API
        self.archive_limit = (
            ArchiveLimit(archive_rate_limit)
            if isinstance(archive_rate_limit, int)
            else archive_rate_limit
        )
        """gitlab.com's archive limit (5 a minute per user), when asked (`ratelimit`)."""
        self.merge_requests: dict[str, list[dict[str, Any]]] = {}
        self.protected: dict[str, set[str]] = {}
        self._ids: dict[str, int] = {}
        self._counter = itertools.count(1)
        self._remaining = 2000
        self._rl_lock = threading.Lock()
        self.commit_calls = 0
        self._facts: dict[tuple[str, str], tuple[str | None, bytes]] = {}
        for method, pattern, handler in (
            ("GET", P, self.get_project),
            ("GET", P + "/repository/branches", self.list_branches),
            ("GET", P + "/repository/branches/(?P<branch>.+)", self.get_branch),
            ("POST", P + "/repository/branches", self.create_branch),
            ("GET", P + "/protected_branches", self.list_protected),
            ("GET", P + r"/repository/archive(?:\.(?P<fmt>[a-z0-9.]+))?", self.archive),
            ("GET", P + "/repository/files/(?P<path>.+)/raw", self.raw_file),
            ("GET", P + "/repository/tree", self.tree),
            (
                "GET",
                P + "/repository/blobs/(?P<sha>[0-9a-f]{40})/raw",
                lambda request, path: gitlab_files.raw_blob(self, request, path),
            ),
            ("GET", P + "/repository/compare", self.compare),
            ("GET", P + "/repository/commits", self.list_commits),
            ("GET", P + "/repository/commits/(?P<sha>[0-9a-f]{40})/diff", self.commit_diff),
            ("GET", P + "/repository/commits/(?P<sha>[^/]+)", self.get_commit),
            ("POST", P + "/repository/commits", self.create_commit),
            ("GET", P + "/merge_requests", self.list_mrs),
            ("POST", P + "/merge_requests", self.create_mr),
        ):
            self.route(method, API + pattern, self._in_project(handler))
        self._add_reporting()

    # ---- forge-wide behaviour --------------------------------------------------------
    LEVELS: ClassVar[dict[str, int]] = {"read": 20, "write": 30, "admin": 40}
    """GitLab access levels: Reporter, Developer, Maintainer."""

    def presented_token(self, request: Request) -> str | None:
        bearer = request.headers.get("authorization", "")
        return request.headers.get("private-token") or bearer.removeprefix("Bearer ") or None

    def forbidden(self, request: Request, path: str, branch: str | None = None) -> Response | None:
        """GitLab's 403 for a Reporter's write, or a Developer's push to a protected branch."""
        if not self.can_push(request, path, branch):
            return error(403, "403 Forbidden")
        return None

    def can_push(self, request: Request, path: str, branch: str | None) -> bool:
        """What the branches API reports as `can_push` for this token."""
        level = self.LEVELS[request.role]
        if branch is not None and branch in self.protected.get(path, set()):
            return level >= self.LEVELS["admin"]
        return level >= self.LEVELS["write"]

    def unauthorized(self) -> Response:
        return error(401, "401 Unauthorized")

    def not_found(self) -> Response:
        return error(404, "404 Not Found")

    def decorate(self, request: Request, response: Response) -> None:
        with self._rl_lock:
            self._remaining = max(self._remaining - 1, 0)
            remaining = self._remaining
        reset = int(time.time()) + 60
        response.headers.setdefault("RateLimit-Limit", "2000")
        response.headers.setdefault("RateLimit-Observed", str(2000 - remaining))
        response.headers.setdefault("RateLimit-Remaining", str(remaining))
        response.headers.setdefault("RateLimit-Reset", str(reset))
        response.headers.setdefault(
            "RateLimit-ResetTime", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(reset))
        )
        response.headers.setdefault("X-Request-Id", f"double-{next(self._counter)}")

    def project_path(self, request: Request) -> str | None:
        """The project's full path from an encoded path or a numeric id."""
        ident = request.params["id"]
        if ident.isdigit():
            return next((p for p, i in self._ids.items() if str(i) == ident), None)
        path = urllib.parse.unquote(ident)
        return path if self.repo_path(path).joinpath("HEAD").exists() else None

    def _in_project(
        self, handler: Callable[[Request, str], Response]
    ) -> Callable[[Request], Response]:
        """A route that needs the project: GitLab's 404 when there is none."""

        def route(request: Request) -> Response:
            path = self.project_path(request)
            if path is None:
                return error(404, "404 Project Not Found")
            return handler(request, path)

        return route

    def _project_id(self, path: str) -> int:
        with self._lock:
            return self._ids.setdefault(path, len(self._ids) + 1)

    def _paged(self, request: Request, items: list[Any]) -> Response:
        chunk, link, page, pages = paginate(items, request, 20, self.url)
        per_page = min(int(request.query.get("per_page", 20) or 20), 100)
        headers = {
            **link,
            "x-page": str(page),
            "x-per-page": str(per_page),
            "x-total": str(len(items)),
            "x-total-pages": str(pages),
            "x-next-page": str(page + 1) if page < pages else "",
            "x-prev-page": str(page - 1) if page > 1 else "",
        }
        return Response.json(200, chunk, headers)

    # ---- project and branches --------------------------------------------------------
    def get_project(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            return Response.json(
                200,
                {
                    "id": self._project_id(path),
                    "name": path.rsplit("/", 1)[-1],
                    "path": path.rsplit("/", 1)[-1],
                    "path_with_namespace": path,
                    "default_branch": gitdata.default_branch(repo),
                    "web_url": f"{self.url}/{path}",
                    "empty_repo": not gitdata.heads(repo),
                    "visibility": "private",
                    "permissions": {
                        "project_access": {
                            "access_level": self.LEVELS[request.role],
                            "notification_level": 3,
                        },
                        "group_access": None,
                    },
                },
            )

    def _commit_json(self, repo: Repo, sha: str, path: str) -> dict[str, Any]:
        obj = gitdata.commit(repo, sha)
        assert obj is not None
        author, _, email = obj.author.decode().partition(" <")
        committer, _, committer_email = obj.committer.decode().partition(" <")

        def when(seconds: int, offset: int) -> str:
            zone = dt.timezone(dt.timedelta(seconds=offset))
            return dt.datetime.fromtimestamp(seconds, tz=zone).isoformat(timespec="milliseconds")

        message = obj.message.decode()
        authored = when(obj.author_time, obj.author_timezone)
        committed = when(obj.commit_time, obj.commit_timezone)
        return {
            "id": sha,
            "short_id": sha[:8],
            "title": message.split("\n", 1)[0],
            "message": message,
            "parent_ids": [p.decode() for p in obj.parents],
            "author_name": author,
            "author_email": email.rstrip(">"),
            "authored_date": authored,
            "committer_name": committer,
            "committer_email": committer_email.rstrip(">"),
            "committed_date": committed,
            "created_at": committed,
            "web_url": f"{self.url}/{path}/-/commit/{sha}",
        }

    def _branch_json(
        self, request: Request, repo: Repo, path: str, name: str, sha: str
    ) -> dict[str, Any]:
        return {
            "name": name,
            "commit": self._commit_json(repo, sha, path),
            "merged": False,
            "protected": name in self.protected.get(path, set()),
            "default": name == gitdata.default_branch(repo),
            "developers_can_push": False,
            "developers_can_merge": False,
            "can_push": self.can_push(request, path, name),
            "web_url": f"{self.url}/{path}/-/tree/{name}",
        }

    def list_branches(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            items = [
                self._branch_json(request, repo, path, n, s)
                for n, s in sorted(gitdata.heads(repo).items())
            ]
        return self._paged(request, items)

    def get_branch(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            sha = gitdata.heads(repo).get(request.params["branch"])
            if sha is None:
                return error(404, "404 Branch Not Found")
            return Response.json(
                200, self._branch_json(request, repo, path, request.params["branch"], sha)
            )

    def _form(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = dict(request.query)
        if request.body:
            content_type = request.headers.get("content-type", "")
            if "json" in content_type:
                data.update(request.json())
            else:
                data.update(urllib.parse.parse_qsl(request.body.decode()))
        return data

    def create_branch(self, request: Request, path: str) -> Response:
        refused = self.forbidden(request, path)
        if refused:
            return refused
        form = self._form(request)
        name, ref = form.get("branch", ""), form.get("ref", "")
        with self.write_lock(path), self.open_repo(path) as repo:
            assert repo is not None
            existing = gitdata.heads(repo)
            sha = gitdata.resolve(repo, ref)
            if not name or ".." in name or name.startswith("-") or " " in name:
                return error(400, "Branch name is invalid")
            if sha is None:
                return error(400, "Invalid reference name: " + ref)
            if name in existing:
                return error(400, "Branch already exists")
            clash = next(
                (o for o in existing if name.startswith(o + "/") or o.startswith(name + "/")), None
            )
            if clash:
                return error(
                    400,
                    f"Failed to create branch '{name}': 'refs/heads/{clash}' exists; cannot create 'refs/heads/{name}'",  # noqa: E501 - the forge's own words
                )
            gitdata.set_head(repo, name, None, sha)
            return Response.json(201, self._branch_json(request, repo, path, name, sha))

    def list_protected(self, request: Request, path: str) -> Response:
        items = [
            {"id": i + 1, "name": n, "push_access_levels": [{"access_level": 40}]}
            for i, n in enumerate(sorted(self.protected.get(path, set())))
        ]
        return self._paged(request, items)

    # ---- reads -----------------------------------------------------------------------
    def archive(self, request: Request, path: str) -> Response:
        if self.archive_limit is not None:
            limited = self.archive_limit.refuse(request, path, self.presented_token(request))
            if limited is not None:
                return limited
        fmt = request.params.get("fmt") or "tar.gz"
        if fmt not in ("tar.gz", "tgz"):
            return error(400, "this double serves tar.gz archives only")
        with self.open_repo(path) as repo:
            assert repo is not None
            ref = request.query.get("sha") or gitdata.default_branch(repo)
            sha = gitdata.resolve(repo, ref)
            if sha is None:
                return error(404, "404 File Not Found")
            sub = request.query.get("path", "").strip("/")
            name = path.rsplit("/", 1)[-1]
            prefix = (
                f"{name}-{ref.replace('/', '-')}-{sha}"
                + (f"-{sub.replace('/', '-')}" if sub else "")
                + "/"
            )
            data = self.archive_bytes(repo, sha, prefix, sub)
        return Response(
            200,
            data,
            {"Content-Disposition": f'attachment; filename="{prefix.rstrip("/")}.tar.gz"'},
            content_type="application/octet-stream",
        )

    def raw_file(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            sha = gitdata.resolve(repo, request.query.get("ref") or gitdata.default_branch(repo))
            found = (
                gitobjects.lookup(
                    repo.object_store, gitdata.tree_of(repo, sha), request.params["path"]
                )
                if sha
                else None
            )
            if found is None or found[0] == gitobjects.DIR_MODE:
                return error(404, "404 File Not Found")
            return Response(
                200, gitdata.blob(repo, found[1]), content_type="text/plain; charset=utf-8"
            )

    def tree(self, request: Request, path: str) -> Response:
        if request.query.get("pagination") == "keyset":
            return gitlab_files.keyset_tree(self, request, path)
        with self.open_repo(path) as repo:
            assert repo is not None
            sha = gitdata.resolve(repo, request.query.get("ref") or gitdata.default_branch(repo))
            if sha is None:
                return error(404, "404 Tree Not Found")
            items = [
                {
                    "id": s.decode(),
                    "name": p.rsplit("/", 1)[-1],
                    "type": "blob",
                    "path": p,
                    "mode": f"{m:o}",
                }
                for p, m, s in gitobjects.walk(repo.object_store, gitdata.tree_of(repo, sha))
            ]
        return self._paged(request, items)

    def compare(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            base, head = (
                gitdata.resolve(repo, request.query.get("from", "")),
                gitdata.resolve(repo, request.query.get("to", "")),
            )
            if base is None or head is None:
                return error(404, "404 Ref Not Found")
            if request.query.get("straight") != "true":
                base = gitdata.merge_base(repo, base, head) or base
            diffs = []
            from dulwich.diff_tree import tree_changes

            for change in tree_changes(
                repo.object_store, gitdata.tree_of(repo, base), gitdata.tree_of(repo, head)
            ):
                old = change.old.path.decode() if change.old and change.old.path else None
                new = change.new.path.decode() if change.new and change.new.path else None
                diffs.append(
                    {
                        "old_path": old or new,
                        "new_path": new or old,
                        "a_mode": f"{change.old.mode:o}" if change.old and change.old.mode else "0",
                        "b_mode": f"{change.new.mode:o}" if change.new and change.new.mode else "0",
                        "new_file": old is None,
                        "renamed_file": False,
                        "deleted_file": new is None,
                        "diff": "",
                    }
                )
            commits = [
                self._commit_json(repo, c, path) for c in gitdata.commits_between(repo, base, head)
            ]
            return Response.json(
                200,
                {
                    "commit": commits[-1] if commits else None,
                    "commits": commits,
                    "diffs": diffs,
                    "compare_timeout": False,
                    "compare_same_ref": base == head,
                    "web_url": f"{self.url}/{path}/-/compare/{base}...{head}",
                },
            )

    def list_commits(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            head = gitdata.resolve(
                repo, request.query.get("ref_name") or gitdata.default_branch(repo)
            )
            if head is None:
                return self._paged(request, [])
            shas = sorted(gitdata.ancestors(repo, head, limit=500).items(), key=lambda kv: kv[1])
            items = [self._commit_json(repo, s, path) for s, _ in shas[:100]]
        return self._paged(request, items)

    def get_commit(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            sha = gitdata.resolve(repo, request.params["sha"])
            if sha is None:
                return error(404, "404 Commit Not Found")
            return Response.json(200, self._commit_json(repo, sha, path))

    def commit_diff(self, request: Request, path: str) -> Response:
        with self.open_repo(path) as repo:
            assert repo is not None
            obj = gitdata.commit(repo, request.params["sha"])
            if obj is None:
                return error(404, "404 Commit Not Found")
            parent = gitdata.tree_of(repo, obj.parents[0].decode()) if obj.parents else None
            paths = gitobjects.changed_paths(repo.object_store, parent, obj.tree)
        return self._paged(
            request, [{"old_path": p, "new_path": p, "diff": ""} for p in sorted(paths)]
        )

    # ---- the commits API -------------------------------------------------------------
    def _last_commit_for(
        self, repo: Repo, head: str, path: str, store: BaseObjectStore | None = None
    ) -> str | None:
        """`git log -1 --format=%H HEAD -- PATH` along first parents."""
        store = store or repo.object_store
        current: str | None = head
        while current:
            parent, tree = self._commit_facts(repo, current)
            mine = gitobjects.lookup(store, tree, path)
            theirs = (
                gitobjects.lookup(store, self._commit_facts(repo, parent)[1], path)
                if parent
                else None
            )
            if mine != theirs:
                return current
            current = parent
        return None

    def _commit_facts(self, repo: Repo, sha: str) -> tuple[str | None, bytes]:
        """A commit's first parent and tree (a commit never changes: remembered)."""
        key = (str(repo.path), sha)
        facts = self._facts.get(key)
        if facts is None:
            obj = gitdata.commit(repo, sha)
            assert obj is not None
            facts = (obj.parents[0].decode() if obj.parents else None, bytes(obj.tree))
            with self._lock:
                self._facts[key] = facts
        return facts

    def _file_has_changed(
        self,
        repo: Repo,
        head: str,
        path: str,
        commit_id: str | None,
        store: BaseObjectStore | None = None,
    ) -> bool:
        if not commit_id:
            return False
        on_branch = self._last_commit_for(repo, head, path, store)
        if on_branch is None or gitdata.commit(repo, commit_id) is None:
            return False
        as_of = self._last_commit_for(repo, commit_id, path, store)
        return as_of is not None and on_branch != as_of

    def create_commit(self, request: Request, path: str) -> Response:
        body = self._form(request)
        branch, message, actions = (
            body.get("branch"),
            body.get("commit_message"),
            body.get("actions"),
        )
        if not branch or not message or not isinstance(actions, list) or not actions:
            return error(400, "branch, commit_message, actions are missing")
        refused = self.forbidden(request, path, str(branch))
        if refused:
            return refused
        with self.write_lock(path), self.open_repo(path) as repo:
            assert repo is not None
            self.commit_calls += 1
            all_heads = gitdata.heads(repo)
            starts = body.get("start_branch") or body.get("start_sha")
            if starts and branch in all_heads and body.get("start_branch") != branch:
                return error(
                    400,
                    f"A branch called '{branch}' already exists. Switch to that branch in order "
                    "to make changes",
                )
            start = (
                body.get("start_sha")
                or (all_heads.get(body["start_branch"]) if body.get("start_branch") else None)
                or all_heads.get(branch)
            )
            if start is None and all_heads and branch not in all_heads:
                return error(400, "You can only create or edit files when you are on a branch")
            try:
                tree = self._apply_actions(repo, start, actions)
            except ActionError as exc:
                return error(400, str(exc))
            author = (body.get("author_name") or USER[0], body.get("author_email") or USER[1])
            sha = gitobjects.make_commit(
                repo.object_store, tree, [start.encode()] if start else [], message, author, USER
            )
            current = all_heads.get(branch)
            if current is None:
                gitdata.set_head(repo, branch, None, sha)
            else:
                gitdata.set_head(repo, branch, current, sha)
            return Response.json(201, self._commit_json(repo, sha.decode(), path))

    def _apply_actions(self, repo: Repo, start: str | None, actions: list[dict[str, Any]]) -> bytes:
        """Each action applies to the tree the previous ones left (GitLab's order and
        checks); the trees in between live in memory, and only the final tree's new
        objects reach the repository (a 100-file commit writes ~100 objects, not ~600)."""
        scratch = _Scratch(repo.object_store)
        tree = self._apply_in(repo, scratch, start, actions)
        scratch.flush(tree)
        return tree

    def _apply_in(
        self, repo: Repo, store: BaseObjectStore, start: str | None, actions: list[dict[str, Any]]
    ) -> bytes:
        tree: bytes | None = gitdata.tree_of(repo, start) if start else None
        for action in actions:
            kind, file_path = action.get("action"), action.get("file_path", "")
            if kind not in ("create", "update", "delete", "move", "chmod"):
                raise ActionError(f"Unknown action '{kind}'")
            if ".." in file_path.split("/") or file_path.startswith("/"):
                raise ActionError(
                    f"Your changes could not be committed, because the file name, `{file_path}` cannot include directory traversal."  # noqa: E501 - the forge's own words
                )
            previous = action.get("previous_path") if kind == "move" else None
            check = previous or file_path
            if (
                start
                and kind in ("update", "move", "delete")
                and self._file_has_changed(repo, start, check, action.get("last_commit_id"), store)
            ):
                raise ActionError(f"The file has changed since you started editing it: {check}")
            existing = gitobjects.lookup(store, tree, file_path)
            if kind in ("create", "move") and existing is not None:
                raise ActionError("A file with this name already exists")
            if kind in ("update", "delete", "chmod") and existing is None:
                raise ActionError("A file with this name doesn't exist")
            data = self._content(action)
            edits: list[gitobjects.TreeEdit] = []
            if kind == "create":
                edits.append(
                    gitobjects.TreeEdit(
                        file_path, FileMode.REGULAR, gitobjects.add_blob(store, data or b"")
                    )
                )
            elif kind == "update":
                assert existing is not None
                edits.append(
                    gitobjects.TreeEdit(
                        file_path,
                        FileMode.parse(existing[0]),
                        gitobjects.add_blob(store, data or b""),
                    )
                )
            elif kind == "delete":
                edits.append(gitobjects.TreeEdit(file_path, FileMode.REGULAR, None))
            elif kind == "chmod":
                assert existing is not None
                mode = (
                    FileMode.EXECUTABLE
                    if action.get("execute_filemode") in (True, "true")
                    else FileMode.REGULAR
                )
                edits.append(gitobjects.TreeEdit(file_path, mode, existing[1]))
            else:
                source = gitobjects.lookup(store, tree, previous or "")
                if source is None:
                    raise ActionError("A file with this name doesn't exist")
                blob_id = gitobjects.add_blob(store, data) if data is not None else source[1]
                edits += [
                    gitobjects.TreeEdit(previous or "", FileMode.REGULAR, None),
                    gitobjects.TreeEdit(file_path, FileMode.parse(source[0]), blob_id),
                ]
            try:
                tree = gitobjects.apply_edits(store, tree, edits)
            except InvalidRequest as exc:
                raise ActionError(exc.reason) from exc
        assert tree is not None
        return tree

    @staticmethod
    def _content(action: dict[str, Any]) -> bytes | None:
        content = action.get("content")
        if content is None:
            return None
        if action.get("encoding") == "base64":
            try:
                return base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ActionError("content is not valid base64") from exc
        return str(content).encode()

    # ---- merge requests --------------------------------------------------------------
    def _mr_json(self, path: str, mr: dict[str, Any]) -> dict[str, Any]:
        return {
            **mr,
            "project_id": self._project_id(path),
            "web_url": f"{self.url}/{path}/-/merge_requests/{mr['iid']}",
        }

    def list_mrs(self, request: Request, path: str) -> Response:
        q = request.query
        items = [
            self._mr_json(path, m)
            for m in self.merge_requests.get(path, [])
            if q.get("state", "all") in ("all", m["state"])
            and q.get("source_branch", m["source_branch"]) == m["source_branch"]
            and q.get("target_branch", m["target_branch"]) == m["target_branch"]
        ]
        return self._paged(request, items)

    def create_mr(self, request: Request, path: str) -> Response:
        refused = self.forbidden(request, path)
        if refused:
            return refused
        body = self._form(request)
        source, target = body.get("source_branch", ""), body.get("target_branch", "")
        with self.write_lock(path), self.open_repo(path) as repo:
            assert repo is not None
            branches = gitdata.heads(repo)
            if not body.get("title") or source not in branches or target not in branches:
                return error(
                    400,
                    {"source_branch": ["is invalid"]}
                    if source not in branches
                    else "title is missing",
                )
            mrs = self.merge_requests.setdefault(path, [])
            clash = next(
                (
                    m
                    for m in mrs
                    if m["state"] == "opened"
                    and m["source_branch"] == source
                    and m["target_branch"] == target
                ),
                None,
            )
            if clash:
                return error(
                    409,
                    [
                        f"Another open merge request already exists for this source branch: !{clash['iid']}"  # noqa: E501 - the forge's own words
                    ],
                )
            mr = {
                "id": next(self._counter),
                "iid": len(mrs) + 1,
                "state": "opened",
                "title": body["title"],
                "description": body.get("description"),
                "source_branch": source,
                "target_branch": target,
            }
            mrs.append(mr)
        return Response.json(201, self._mr_json(path, mr))

    # ---- check reporting (routes and state in tests/forges/gitlab_reporting.py) ------
    def _add_reporting(self) -> None:
        self.reporting = GitLabReporting(self)
        self.reporting.register()

    def authorized(self, request: Request) -> bool:
        if re.fullmatch(REPORTING_PAGE, request.path):  # a browser shows the MR page
            return True
        return super().authorized(request)

    def open_merge_request(
        self, path: str, source: str, target: str, title: str = "A change"
    ) -> int:
        """Open an MR straight in the double (no request, no checks); returns its iid."""
        mrs = self.merge_requests.setdefault(path, [])
        mrs.append(
            {
                "id": next(self._counter),
                "iid": len(mrs) + 1,
                "state": "opened",
                "title": title,
                "description": None,
                "source_branch": source,
                "target_branch": target,
            }
        )
        return len(mrs)

    def close_merge_request(self, path: str, iid: int) -> None:
        """Close an MR, as a person on the page does (its head stays where it was)."""
        for mr in self.merge_requests.get(path, []):
            if mr["iid"] == iid:
                self.reporting.head_of(path, mr)
                mr["state"] = "closed"

    def scoped(self, token: str, role: str, *scopes: str) -> None:
        """Accept `token` with a role and only these scopes (`read_api`: reads only)."""
        self.add_token(token, role)
        self.reporting.scopes[token] = set(scopes)
