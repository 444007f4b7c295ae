"""The service provider: a runner talks to meltano-forge's own service with a service
token, never the forge's. Archives come from the service's cache, so a fleet of runners
costs the forge one archive request per commit. The service applies the branch policy
and the forge's guards itself, so a commit is one request; `ForgeBase` still checks the
change set against the configured limits before anything is sent."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urljoin

import httpx

from providers import contract, same_origin
from providers.base import Attempt, Draft, ForgeBase, Landed
from providers.blobs import blob_sha
from providers.config import ForgeConfig
from providers.contract import FileMode
from providers.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    ProviderError,
    Refused,
    UnsafeInput,
    from_status,
    unanswered,
)
from providers.names import check_branch_name, check_repo_path

T = TypeVar("T")


_SERVICE = "the meltano-forge service"
CHECK_FAILED = "Check failed"
"""The service's problem title for a promotion its check refused (422, with `check`)."""
_CHECK_INSTRUCTION = (
    "Fix what `meltano-forge check` lists on the source branch, or, as an administrator, "
    "promote it anyway with --override-check"
)
FORGE_RATE_LIMIT = "Forge rate limit"
"""The service's problem title for its forge's rate limit (it answers 503, with
`retry_at`): a rate limit here too, whatever the detail says."""


def _problem(response: httpx.Response, token_set: bool = True) -> ProviderError:
    """The provider error for an answer from the service, or from a proxy before it.

    The service's own problem types come first (they carry paths, or say what a 400 or
    422 was); every status then goes through the one table, so a proxy's bare 429 is a
    rate limit like any other."""
    try:
        answer: object = response.json()
    except ValueError:
        answer = None
    body: dict[str, Any] = answer if isinstance(answer, dict) else {}
    title = str(body.get("title") or "")
    detail = str(body.get("detail") or title or response.reason_phrase)
    status = response.status_code
    if status == 409:
        return Conflict(body.get("paths") or [], detail)
    if status == 422 and "unsafe" in title.lower():
        return UnsafeInput(detail)
    if status == 422 and title == CHECK_FAILED:
        return Refused(status, detail, detail, _CHECK_INSTRUCTION, kind="check")
    if status == 400 and "already exists" in detail:
        return AlreadyExists(detail)
    if title == FORGE_RATE_LIMIT:
        status = 429
    return from_status(
        status,
        forge=_SERVICE,
        action="answer",
        detail=detail,
        headers=dict(response.headers),
        token_set=token_set,
        reason=_REASONS.get(status, "{detail}").format(status=status, detail=detail),
        instruction=_INSTRUCTIONS.get(status),
    )


_REASONS = {
    401: "The service rejected the token: {detail}",
    **dict.fromkeys(range(500, 600), "The service answered {status}: {detail}"),
}
_INSTRUCTIONS = {
    401: "Set a valid service token in MELTANO_FORGE_TOKEN",
    403: "Use a token with the write role for this project, or another branch",
}


_CHUNK = 1 << 20


def _chunks(response: httpx.Response) -> Iterator[bytes]:
    """A streamed answer's bytes; a connection that breaks off is an `OSError`."""
    try:
        yield from response.iter_raw(_CHUNK)
    except httpx.HTTPError as exc:
        msg = f"the service's answer broke off ({type(exc).__name__})"
        raise OSError(msg) from None


def _meta(data: dict[str, Any]) -> contract.CommitMeta:
    def person(p: dict[str, Any]) -> contract.Person:
        return contract.Person(p["name"], p["email"], p["time"], p.get("offset"))

    return contract.CommitMeta(
        data["sha"],
        tuple(data["parents"]),
        person(data["author"]),
        person(data["committer"]),
        data["message"],
        data.get("tree"),
        data.get("signature"),
        base64.b64decode(data["raw_base64"]) if data.get("raw_base64") else None,
    )


class ServiceForge(ForgeBase):
    """A project behind `https://HOST/v1/projects/NAME`."""

    capabilities = contract.Capabilities(
        symlinks=True, executable_bit=True, verified_commits=False, change_requests=True
    )
    """The broadest forge's: where the service's own forge cannot do something (a symlink
    on GitLab), the service refuses the commit with its adapter's reason."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__(config)
        token = self._token()
        headers = {"User-Agent": config.user_agent}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base = f"{config.location.api_url}/v1/projects/{config.location.path}"
        self._http = httpx.Client(headers=headers, timeout=config.timeout)

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._answer(self._http.build_request(method, self.base + path, **kwargs))

    def _answer(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """Send one request; a problem (or no answer) becomes the provider error."""
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise unanswered(_SERVICE, "answer", exc) from exc
        if response.status_code >= 300:
            if stream:
                response.read()
                response.close()
            raise _problem(response, self._token_set)
        return response

    def _call(self, fn: Callable[[], T], verify: Callable[[], T | None] | None = None) -> T:
        return self._retrier.call(fn, verify=verify)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._call(lambda: self._send(method, path, **kwargs).json())

    def _all(self, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Every page of a list, following its `Link: rel="next"` headers."""
        items: list[Any] = []
        query = {**(params or {}), "limit": 1000}
        response = self._call(lambda: self._send("GET", path, params=query))
        while True:
            items += response.json()
            following: str | None = response.links.get("next", {}).get("url")
            if not following:
                return items
            following = urljoin(self.base, following)
            same_origin.check(following, self.base)  # the service token goes nowhere else
            response = self._call(partial(self._answer, self._http.build_request("GET", following)))

    def repository(self) -> contract.RepositoryInfo:
        """The project summary."""
        data = self._json("GET", "")
        branches = self.branches()
        return contract.RepositoryInfo(
            data["default_branch"], data["web_url"], not branches, tuple(data["protected_branches"])
        )

    def branches(self) -> list[contract.Branch]:
        """All branches."""
        return [
            contract.Branch(b["name"], b["head"], b["protected"], b.get("can_push"))
            for b in self._all("/branches")
        ]

    def branch(self, name: str) -> contract.Branch:
        """One branch."""
        data = self._json("GET", f"/branches/{quote(check_branch_name(name))}")
        return contract.Branch(
            data["name"],
            data["head"],
            data["protected"] or data["read_only"],
            data.get("can_push"),
        )

    def _create_branch_once(self, name: str, from_sha: str) -> contract.Branch:
        """POST /branches."""
        data = self._json("POST", "/branches", json={"name": name, "from_ref": from_sha})
        return contract.Branch(data["name"], data["head"], data["protected"])

    @contextmanager
    def archive(self, ref: str, path: str = "") -> Iterator[contract.Snapshot]:
        """The service's cached tar.gz of a commit."""

        request = self._http.build_request("GET", self.base + "/archive", params={"ref": ref})
        response = self._call(lambda: self._answer(request, stream=True))
        try:
            with self._snapshot(ref, response.iter_raw(64 * 1024), path) as snapshot:
                yield snapshot
        finally:
            response.close()

    def read_file(self, sha: str, path: str) -> bytes:
        """One file at a commit."""
        check_repo_path(path)
        return self._call(
            lambda: self._send("GET", f"/files/{quote(path)}", params={"ref": sha}).content
        )

    def list_tree(self, sha: str) -> list[contract.TreeEntry]:
        """The files at a commit."""
        return [
            contract.TreeEntry(e["path"], FileMode.parse(e["mode"]), e["sha"], e["size"])
            for e in self._all("/tree", {"ref": sha})
        ]

    def changed_paths(self, base_sha: str, head_sha: str) -> frozenset[str]:
        """Paths that differ between two commits."""
        return frozenset(self._json("GET", "/compare", params={"base": base_sha, "head": head_sha}))

    def _commit_once(self, draft: Draft, head: str | None) -> Attempt:
        """POST /commits: the service starts a missing branch, rebases or refuses with
        `Conflict` itself, so one request decides."""
        body: dict[str, Any] = {
            "branch": draft.branch,
            "base_sha": head,
            "message": draft.message,
            "changes": [
                {
                    "path": c.path,
                    "content_base64": None
                    if c.content is None
                    else base64.b64encode(c.content).decode(),
                    "mode": c.mode.git,
                    "base_mode": c.base_mode.git if c.base_mode else None,
                }
                for c in draft.changes
            ],
        }
        if draft.author:
            body.update(author_name=draft.author.name, author_email=draft.author.email)
        data = self._call(
            lambda: self._send("POST", "/commits", json=body).json(),
            verify=lambda: self._landed(draft),
        )
        return Landed(data["sha"], data["parent"], bool(data["rebased"]))

    def _start_branch(self, draft: Draft, start: str | None) -> Attempt:
        """Never needed: the service starts missing branches in the commit's own request."""
        return self._commit_once(draft, start)

    def _default_branch(self) -> str:
        return str(self._json("GET", "")["default_branch"])

    def _landed(self, draft: Draft) -> dict[str, Any] | None:
        """After a lost response: the head already holds exactly our contents, so the
        commit landed (sending it again would only conflict with itself)."""
        head = self.branch(draft.branch).head
        tree = {e.path: e for e in self.list_tree(head)}
        for change in draft.changes:
            entry = tree.get(change.path)
            if change.content is None:
                if entry is not None:
                    return None
            elif (
                entry is None
                or entry.sha != blob_sha(change.content)
                or entry.mode is not change.mode
            ):
                return None
        return {"sha": head, "parent": None, "rebased": False}

    def commit_meta(self, sha: str) -> contract.CommitMeta:
        """GET /commits/{sha}."""
        return _meta(self._json("GET", f"/commits/{quote(sha)}"))

    def history(self, sha: str, limit: int) -> list[contract.CommitMeta]:
        """GET /commits?ref=&limit=."""
        return [
            _meta(c) for c in self._json("GET", "/commits", params={"ref": sha, "limit": limit})
        ]

    def ahead_behind(self, base: str, head: str) -> tuple[int, int]:
        """GET /ahead-behind."""
        data = self._json("GET", "/ahead-behind", params={"base": base, "head": head})
        return int(data["ahead"]), int(data["behind"])

    def _find_change_request(self, source: str, target: str) -> contract.ChangeRequest | None:
        """Never a request of its own: POST /promotions returns the open one."""
        return None

    def _open_change_request_once(
        self, source: str, target: str, title: str, body: str
    ) -> contract.ChangeRequest:
        """POST /promotions (the service finds the open one or opens it)."""
        return self.open_promotion(source, target, title, body, override_check=False)

    def open_promotion(
        self, source: str, target: str, title: str, body: str, *, override_check: bool
    ) -> contract.ChangeRequest:
        """POST /promotions; the service checks the source branch and decides an override
        by the token's role (a `Refused` of kind `check` when the check refuses it)."""
        check_branch_name(source)
        check_branch_name(target)
        payload: dict[str, str | bool] = {
            "source": source,
            "target": target,
            "title": title,
            "body": body,
        }
        if override_check:
            payload["override_check"] = True
        data = self._json("POST", "/promotions", json=payload)
        return contract.ChangeRequest(
            data["number"],
            data["url"],
            data["source"],
            data["target"],
            data["created"],
            bool(data.get("merged", False)),
            str(data.get("detail", "")),
        )

    def report_workspace(
        self, workspace_id: str, branch: str, base_sha: str, dirty: Sequence[str], diff: str = ""
    ) -> None:
        """PUT /workspaces/{id}: what dashboards show as "uncommitted changes"."""
        body = {"branch": branch, "base_sha": base_sha, "dirty": list(dirty), "diff": diff}
        self._call(
            lambda: self._send("PUT", f"/workspaces/{quote(workspace_id, safe='')}", json=body)
        )

    # Plugin environments (`service.plugin_envs`; the runner's side: `client.service_plugin_cache`).

    @contextmanager
    def plugin_env(self, key: str) -> Iterator[tuple[str, int, Iterator[bytes]] | None]:
        """GET /plugin-envs/{key}: the entry's SHA-256, size and bytes as they come (a
        broken answer raises `OSError` mid-way); None when the service holds none."""
        request = self._http.build_request("GET", f"{self.base}/plugin-envs/{quote(key)}")
        try:
            response = self._call(lambda: self._answer(request, stream=True))
        except NotFound:
            yield None
            return
        try:
            sha256 = response.headers.get("X-Entry-Sha256", "")
            size = int(response.headers.get("Content-Length") or -1)
            yield sha256, size, _chunks(response)
        finally:
            response.close()

    def put_plugin_env(self, key: str, fields: dict[str, str], archive: Path) -> bool:
        """PUT /plugin-envs/{key}: upload the archive at `archive` with its key's fields
        and SHA-256; True when stored, False when the service had the entry already."""
        size = archive.stat().st_size

        def send() -> httpx.Response:
            with archive.open("rb") as body:
                return self._send(
                    "PUT",
                    f"/plugin-envs/{quote(key)}",
                    params=fields,
                    content=iter(lambda: body.read(_CHUNK), b""),
                    headers={"Content-Type": "application/x-tar", "Content-Length": str(size)},
                )

        return self._call(send).status_code == 201

    def plugin_env_leases(
        self, holder: str, keys: Sequence[str], wait: float
    ) -> tuple[dict[str, str], float]:
        """POST /plugin-envs/leases: each key `stored`, `granted` or `held`, and how long a
        granted lease lasts unless asked again; waits up to `wait` while all are held."""
        data = self._json(
            "POST",
            "/plugin-envs/leases",
            json={"holder": holder, "keys": list(keys), "wait": wait},
            timeout=wait + self.config.timeout,
        )
        return {str(k): str(v) for k, v in data["leases"].items()}, float(data["expires_in"])

    def release_plugin_env_leases(self, holder: str, keys: Sequence[str]) -> None:
        """POST /plugin-envs/leases/release: give back leases whose install failed."""
        self._call(
            lambda: self._send(
                "POST", "/plugin-envs/leases/release", json={"holder": holder, "keys": list(keys)}
            )
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()
