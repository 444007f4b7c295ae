"""What a check reporter talks to on the GitLab double: commit statuses, merge request
notes, `merge_requests/:iid`, and the merge request's HTML page.

Statuses follow GitLab's `Ci::CreateCommitStatusService`: a status is a job of an external
pipeline for the commit and its ref (the request's `ref`, else the first branch holding
the commit). A post finds the job of that name that is still pending or running and moves
it (`enqueue!`, `run!`, `success!`, `drop!`, `cancel!`), else starts a new one, and the
older jobs of that name become `retried`; listing shows the others unless `all=true`. A
move the state machine refuses answers 400, "Cannot transition status via :enqueue from
:pending (Reason(s): Status cannot transition via "enqueue")". Statuses need the
Developer role; any write needs the `api` scope (a `read_api` token gets GitLab's 403
`insufficient_scope`). Notes list newest first unless `sort=asc`, as GitLab's do.

Each note records its author: the user of the token that wrote it (`users`, else
`double-user`, id 1). `GET /user` answers the token's user, and editing another user's
note answers GitLab's 403 "403 Forbidden" (`Notes::UpdateService` checks `admin_note`,
which only the author has).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import TYPE_CHECKING, Any

from tests.forges import gitdata
from tests.forges.pages import CommentBox, StatusLine, change_request_page
from tests.forges.server import Request, Response

if TYPE_CHECKING:
    from tests.forges.gitlab import GitLabDouble

P = r"/projects/(?P<id>[^/]+)"
MR = P + r"/merge_requests/(?P<iid>\d+)"
PAGE = r"/(?P<path>.+)/-/merge_requests/(?P<iid>\d+)"
STATES = ("pending", "running", "success", "failed", "canceled")
NOTE_MAX = 1_000_000
AUTHOR = {
    "id": 1,
    "username": "double-user",
    "name": "Double User",
    "state": "active",
    "avatar_url": None,
    "web_url": "https://gitlab.invalid/double-user",
}
_EVENTS = {"pending": "enqueue", "running": "run", "success": "success"}
_FROM = {
    "enqueue": {"created"},
    "run": {"created", "pending"},
    "success": {"created", "pending", "running"},
    "drop": {"created", "pending", "running"},
    "cancel": {"created", "pending", "running"},
}
"""Which states each event of GitLab's commit status state machine leaves (in part)."""


_clock = {"last": dt.datetime.min.replace(tzinfo=dt.UTC)}


def _now() -> str:
    """GitLab's timestamp, in milliseconds, strictly increasing (events a millisecond
    apart still read in the order they happened)."""
    now = max(dt.datetime.now(dt.UTC), _clock["last"] + dt.timedelta(milliseconds=1))
    _clock["last"] = now
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: Any) -> Response:
    return Response.json(status, {"message": message})


class GitLabReporting:
    """The routes and state; `double.reporting` on every GitLab double."""

    def __init__(self, double: GitLabDouble) -> None:
        self.double = double
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        """Per project, every commit status job, oldest first."""
        self.notes: dict[str, list[dict[str, Any]]] = {}
        """Per project, the merge request notes that still exist, oldest first."""
        self.scopes: dict[str, set[str]] = {}
        """Tokens with limited scopes (others have `api`)."""
        self.users: dict[str, str] = {}
        """Per token, the username of its user (others are `double-user`'s)."""
        self._user_ids: dict[str, int] = {str(AUTHOR["username"]): int(str(AUTHOR["id"]))}
        self._ids = itertools.count(500_001)

    def register(self) -> None:
        """Add the routes to the double."""
        api, inside = "/api/v4", self.double._in_project
        for method, pattern, handler in (
            ("POST", P + "/statuses/(?P<sha>[^/]+)", self.create_status),
            ("GET", P + "/repository/commits/(?P<sha>[^/]+)/statuses", self.list_statuses),
            ("GET", MR, self.get_mr),
            ("GET", MR + "/notes", self.list_notes),
            ("POST", MR + "/notes", self.create_note),
            ("GET", MR + r"/notes/(?P<note_id>\d+)", self.get_note),
            ("PUT", MR + r"/notes/(?P<note_id>\d+)", self.update_note),
        ):
            self.double.route(method, api + pattern, inside(handler))
        self.double.route("GET", api + "/user", self.get_user)
        self.double.route("GET", PAGE, self.mr_page)

    # ---- test controls ---------------------------------------------------------------
    def statuses_on(self, path: str, sha: str) -> list[dict[str, Any]]:
        """The jobs of a commit that are not retried, oldest first (as the API lists them)."""
        return [j for j in self.jobs.get(path, []) if j["sha"] == sha and not j["retried"]]

    def notes_on(self, path: str, iid: int) -> list[dict[str, Any]]:
        """The notes on MR `iid`, oldest first."""
        return [n for n in self.notes.get(path, []) if n["iid"] == iid]

    def delete_note(self, path: str, note_id: int) -> None:
        """Remove a note, as a person deleting it on the page does."""
        self.notes[path] = [n for n in self.notes.get(path, []) if n["id"] != note_id]

    def add_note(self, path: str, iid: int, body: str, user: str = "someone") -> int:
        """A note by someone else (a reviewer), without a request; returns its id."""
        note = self._new_note(iid, body, user)
        self.notes.setdefault(path, []).append(note)
        return int(note["id"])

    # ---- users -----------------------------------------------------------------------
    def username(self, request: Request) -> str:
        """Whom the presented token acts as."""
        return self.users.get(self.double.presented_token(request) or "", str(AUTHOR["username"]))

    def user_json(self, username: str) -> dict[str, Any]:
        """A user as GitLab shows one in a note's `author`; the id is stable per user."""
        uid = self._user_ids.setdefault(username, len(self._user_ids) + 1)
        return {
            **AUTHOR,
            "id": uid,
            "username": username,
            "name": username,
            "web_url": f"https://gitlab.invalid/{username}",
        }

    def get_user(self, request: Request) -> Response:
        """GET /user: the token's user."""
        return Response.json(
            200, {**self.user_json(self.username(request)), "bot": False, "locked": False}
        )

    # ---- permissions -----------------------------------------------------------------
    def refused(self, request: Request, path: str, developer: bool) -> Response | None:
        """GitLab's 403s: a token without the `api` scope, or (for statuses) below
        Developer."""
        scopes = self.scopes.get(self.double.presented_token(request) or "")
        if scopes is not None and "api" not in scopes:
            return Response.json(
                403,
                {
                    "error": "insufficient_scope",
                    "error_description": "The request requires higher privileges than "
                    "provided by the access token.",
                    "scope": "api",
                },
            )
        if developer:
            return self.double.forbidden(request, path)
        return None

    # ---- commit statuses -------------------------------------------------------------
    def _job_json(self, path: str, job: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": job["id"],
            "sha": job["sha"],
            "ref": job["ref"],
            "status": job["status"],
            "name": job["name"],
            "target_url": job["target_url"],
            "description": job["description"],
            "created_at": job["created_at"],
            "started_at": job["started_at"],
            "finished_at": job["finished_at"],
            "allow_failure": False,
            "coverage": None,
            "pipeline_id": job["pipeline_id"],
            "author": AUTHOR,
        }

    def create_status(self, request: Request, path: str) -> Response:
        refused = self.refused(request, path, developer=True)
        if refused:
            return refused
        form = self.double._form(request)
        state, sha = form.get("state"), request.params["sha"]
        if not state:
            return Response.json(400, {"error": "state is missing"})
        if state not in STATES:
            return Response.json(400, {"error": "state does not have a valid value"})
        with self.double.write_lock(path), self.double.open_repo(path) as repo:
            assert repo is not None
            if gitdata.commit(repo, sha) is None:
                return _error(404, "404 Commit Not Found")
            ref = form.get("ref") or next(
                (
                    name
                    for name, head in sorted(gitdata.heads(repo).items())
                    if head == sha or gitdata.is_ancestor(repo, sha, head)
                ),
                None,
            )
            if ref is None:
                return _error(404, "404 References for commit Not Found")
            name = str(form.get("name") or form.get("context") or "default")
            jobs = self.jobs.setdefault(path, [])
            job = next(
                (
                    j
                    for j in jobs
                    if (j["sha"], j["ref"], j["name"]) == (sha, ref, name)
                    and j["status"] in ("pending", "running")
                ),
                None,
            )
            if job is None:
                job = {
                    "id": next(self._ids),
                    "sha": sha,
                    "ref": ref,
                    "name": name,
                    "status": "created",
                    "created_at": _now(),
                    "started_at": None,
                    "finished_at": None,
                    "pipeline_id": self._pipeline(path, sha, ref),
                    "retried": False,
                    "target_url": None,
                    "description": None,
                }
                fresh = True
            else:
                fresh = False
            for key in ("target_url", "description"):
                if key in form:
                    job[key] = form[key]
            if state == "running" and job["status"] == "created":
                job["status"] = "pending"  # `enqueue`, which may fail quietly, then `run!`
            event = _EVENTS.get(state) or {"failed": "drop", "canceled": "cancel"}[state]
            if job["status"] not in _FROM[event]:
                return _error(
                    400,
                    f"Cannot transition status via :{event} from :{job['status']} "
                    f'(Reason(s): Status cannot transition via "{event}")',
                )
            job["status"] = state
            if state == "running":
                job["started_at"] = _now()
            if state in ("success", "failed", "canceled"):
                job["finished_at"] = _now()
            if fresh:
                jobs.append(job)
            for other in jobs:  # update_older_statuses_retried!
                if other is not job and (other["sha"], other["ref"], other["name"]) == (
                    sha,
                    ref,
                    name,
                ):
                    other["retried"] = True
        return Response.json(201, self._job_json(path, job))

    def _pipeline(self, path: str, sha: str, ref: str) -> int:
        known = next(
            (
                j["pipeline_id"]
                for j in self.jobs.get(path, [])
                if (j["sha"], j["ref"]) == (sha, ref)
            ),
            None,
        )
        return known if known is not None else next(self._ids)

    def list_statuses(self, request: Request, path: str) -> Response:
        sha = request.params["sha"]
        with self.double.open_repo(path) as repo:
            assert repo is not None
            if gitdata.resolve(repo, sha) is None:
                return _error(404, "404 Commit Not Found")
        q = request.query
        jobs = [
            j
            for j in self.jobs.get(path, [])
            if j["sha"] == sha
            and (q.get("all") == "true" or not j["retried"])
            and q.get("ref", j["ref"]) == j["ref"]
            and q.get("name", j["name"]) == j["name"]
        ]
        return self.double._paged(request, [self._job_json(path, j) for j in jobs])

    # ---- merge requests and their notes ----------------------------------------------
    def _mr(self, request: Request, path: str) -> dict[str, Any] | None:
        iid = int(request.params["iid"])
        return next((m for m in self.double.merge_requests.get(path, []) if m["iid"] == iid), None)

    def head_of(self, path: str, mr: dict[str, Any]) -> str:
        """An open MR's head follows its source branch; a closed one keeps its last."""
        if mr["state"] == "opened":
            with self.double.open_repo(path) as repo:
                assert repo is not None
                mr["sha"] = gitdata.heads(repo).get(mr["source_branch"], mr.get("sha"))
        return str(mr.get("sha") or "")

    def get_mr(self, request: Request, path: str) -> Response:
        mr = self._mr(request, path)
        if mr is None:
            return _error(404, "404 Not found")
        sha = self.head_of(path, mr)
        with self.double.open_repo(path) as repo:
            assert repo is not None
            target = gitdata.heads(repo).get(mr["target_branch"], "")
            base = gitdata.merge_base(repo, target, sha) if target and sha else None
        body = {
            **self.double._mr_json(path, mr),
            "sha": sha,
            "merge_commit_sha": None,
            "draft": False,
            "detailed_merge_status": "mergeable",
            "author": AUTHOR,
            "diff_refs": {"base_sha": base, "head_sha": sha, "start_sha": target or None},
        }
        return Response.json(200, body)

    def _new_note(self, iid: int, body: str, user: str = "double-user") -> dict[str, Any]:
        now = _now()
        return {
            "id": next(self._ids),
            "iid": iid,
            "body": body,
            "user": user,
            "created_at": now,
            "updated_at": now,
        }

    def _note_json(self, path: str, mr: dict[str, Any], note: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": note["id"],
            "type": None,
            "body": note["body"],
            "attachment": None,
            "author": self.user_json(note["user"]),
            "created_at": note["created_at"],
            "updated_at": note["updated_at"],
            "system": False,
            "noteable_id": mr["id"],
            "noteable_type": "MergeRequest",
            "project_id": self.double._project_id(path),
            "noteable_iid": mr["iid"],
            "resolvable": False,
            "confidential": False,
            "internal": False,
        }

    def list_notes(self, request: Request, path: str) -> Response:
        mr = self._mr(request, path)
        if mr is None:
            return _error(404, "404 Not found")
        notes = self.notes_on(path, mr["iid"])
        key = "updated_at" if request.query.get("order_by") == "updated_at" else "id"
        notes = sorted(notes, key=lambda n: (n[key], n["id"]))
        if request.query.get("sort", "desc") != "asc":
            notes.reverse()
        return self.double._paged(request, [self._note_json(path, mr, n) for n in notes])

    def _body_problem(self, form: dict[str, Any]) -> Response | None:
        body = form.get("body")
        if not body:
            return Response.json(400, {"error": "body is missing"})
        if len(str(body)) > NOTE_MAX:
            return _error(400, {"note": [f"is too long (maximum is {NOTE_MAX} characters)"]})
        return None

    def create_note(self, request: Request, path: str) -> Response:
        refused = self.refused(request, path, developer=False)
        if refused:
            return refused
        mr = self._mr(request, path)
        if mr is None:
            return _error(404, "404 Not found")
        form = self.double._form(request)
        problem = self._body_problem(form)
        if problem:
            return problem
        note = self._new_note(mr["iid"], str(form["body"]), self.username(request))
        with self.double.write_lock(path):
            self.notes.setdefault(path, []).append(note)
        return Response.json(201, self._note_json(path, mr, note))

    def _note(self, request: Request, path: str) -> tuple[dict[str, Any] | None, Any]:
        mr = self._mr(request, path)
        if mr is None:
            return None, _error(404, "404 Not found")
        wanted = int(request.params["note_id"])
        note = next((n for n in self.notes_on(path, mr["iid"]) if n["id"] == wanted), None)
        if note is None:
            return None, _error(404, "404 Note Not Found")
        return mr, note

    def get_note(self, request: Request, path: str) -> Response:
        mr, note = self._note(request, path)
        if mr is None:
            assert isinstance(note, Response)
            return note
        return Response.json(200, self._note_json(path, mr, note))

    def update_note(self, request: Request, path: str) -> Response:
        refused = self.refused(request, path, developer=False)
        if refused:
            return refused
        form = self.double._form(request)
        problem = self._body_problem(form)
        if problem:
            return problem
        with self.double.write_lock(path):
            mr, note = self._note(request, path)
            if mr is None:
                assert isinstance(note, Response)
                return note
            if note["user"] != self.username(request):
                return _error(403, "403 Forbidden")
            note["body"], note["updated_at"] = str(form["body"]), _now()
        return Response.json(200, self._note_json(path, mr, note))

    # ---- the page --------------------------------------------------------------------
    def mr_page(self, request: Request) -> Response:
        """`/{group}/{project}/-/merge_requests/{iid}`: the MR as a person sees it."""
        path, iid = request.params["path"], int(request.params["iid"])
        mr = next((m for m in self.double.merge_requests.get(path, []) if m["iid"] == iid), None)
        if mr is None:
            return Response(404, b"<h1>404</h1>", content_type="text/html; charset=utf-8")
        sha = self.head_of(path, mr)
        statuses = [
            StatusLine(j["name"], j["status"], j["description"], j["target_url"])
            for j in reversed(self.statuses_on(path, sha))
        ]
        comments = [
            CommentBox(n["user"], n["created_at"], n["body"]) for n in self.notes_on(path, iid)
        ]
        page = change_request_page(
            forge="GitLab",
            title=str(mr.get("title") or ""),
            number=f"!{iid}",
            open_=mr["state"] == "opened",
            source=mr["source_branch"],
            target=mr["target_branch"],
            head_sha=sha,
            statuses=statuses,
            comments=comments,
        )
        return Response(200, page, content_type="text/html; charset=utf-8")
