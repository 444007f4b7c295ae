"""The GitLab double's file-by-file reads: the recursive tree with keyset pagination, and
raw blobs by id (what an adapter reads when the archive is rate limited).

`GET /projects/:id/repository/tree?recursive=true&pagination=keyset` lists folders
(`tree`, mode 040000), files (`blob`) and submodules (`commit`, mode 160000) as GitLab
does, `per_page` (at most 100) at a time; the `Link` header's `rel="next"` carries an
opaque `page_token`, and keyset pages have no `x-total` headers. `GET
/projects/:id/repository/blobs/:sha/raw` answers a blob's bytes.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import TYPE_CHECKING, Any

from dulwich.objects import Blob, Tree
from dulwich.repo import Repo

from providers import gitobjects
from tests.forges import gitdata
from tests.forges.server import Request, Response

if TYPE_CHECKING:
    from tests.forges.gitlab import GitLabDouble

SUBMODULE = 0o160000


def keyset_tree(double: GitLabDouble, request: Request, path: str) -> Response:
    """One keyset page of the tree (recursive or not, optionally under `path`)."""
    query = request.query
    with double.open_repo(path) as repo:
        assert repo is not None
        sha = gitdata.resolve(repo, query.get("ref") or gitdata.default_branch(repo))
        if sha is None:
            return Response.json(404, {"message": "404 Tree Not Found"})
        folder = query.get("path", "").strip("/")
        root = gitdata.tree_of(repo, sha)
        if folder:
            found = gitobjects.lookup(repo.object_store, root, folder)
            if found is None or found[0] != gitobjects.DIR_MODE:
                return Response.json(404, {"message": "404 Tree Not Found"})
            root = found[1]
        recursive = query.get("recursive") in ("true", "1")
        items = list(_entries(repo, root, folder + "/" if folder else "", recursive))
    per_page = min(int(query.get("per_page", 20) or 20), 100)
    start = 0
    token = query.get("page_token")
    if token:
        after = base64.urlsafe_b64decode(token.encode()).decode()
        start = next((i + 1 for i, item in enumerate(items) if item["path"] == after), len(items))
    chunk = items[start : start + per_page]
    headers: dict[str, str] = {}
    if start + per_page < len(items):
        following = {
            **query,
            "page_token": base64.urlsafe_b64encode(chunk[-1]["path"].encode()).decode(),
            "pagination": "keyset",
            "per_page": str(per_page),
        }
        link = f"{double.url}{request.path}?{urllib.parse.urlencode(following)}"
        headers["Link"] = f'<{link}>; rel="next"'
    return Response.json(200, chunk, headers)


def _entries(repo: Repo, tree_id: bytes, prefix: str, recursive: bool) -> Any:
    tree = repo.object_store[gitobjects.oid(tree_id)]
    assert isinstance(tree, Tree)
    for item in tree.iteritems():
        name = item.path.decode("utf-8", "surrogateescape")
        kind = {gitobjects.DIR_MODE: "tree", SUBMODULE: "commit"}.get(item.mode, "blob")
        yield {
            "id": item.sha.decode(),
            "name": name,
            "type": kind,
            "path": prefix + name,
            "mode": f"{item.mode:06o}",
        }
        if kind == "tree" and recursive:
            yield from _entries(repo, item.sha, f"{prefix}{name}/", recursive)


def raw_blob(double: GitLabDouble, request: Request, path: str) -> Response:
    """A blob's bytes by id, or GitLab's 404."""
    with double.open_repo(path) as repo:
        assert repo is not None
        sha = gitobjects.oid(request.params["sha"])
        obj = repo.object_store[sha] if sha in repo.object_store else None  # noqa: SIM401
        if not isinstance(obj, Blob):
            return Response.json(404, {"message": "404 Blob Not Found"})
        return Response(200, obj.as_raw_string(), content_type="text/plain; charset=utf-8")
