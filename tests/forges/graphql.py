"""GitHub's GraphQL, served from the published schema excerpts: `createCommitOnBranch`,
and the repository query (viewer permission, default branch, a ref with its update rule and
its commit's `tarballUrl`).

Every document is parsed and validated by graphql-core against tests/contracts' excerpts,
so a query or mutation the real API would reject is rejected here too, and queries are
executed over the double's repositories. A stale `expectedHeadOid` gets GitHub's STALE_DATA
error; the commit is authored by the token's owner, as GitHub does.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from graphql import DocumentNode, GraphQLError, build_schema, execute_sync, parse, validate

from providers import gitobjects
from providers.contract import FileMode
from providers.errors import InvalidRequest
from tests.forges import gitdata, openapi
from tests.forges.server import Request, Response

if TYPE_CHECKING:
    from tests.forges.github import GitHubDouble

_EXTRA_TYPES = """
scalar GitObjectID
scalar Base64String
"""
PERMISSIONS = {"read": "READ", "write": "WRITE", "admin": "ADMIN"}


class GraphQLEndpoint:
    """POST /api/graphql for one GitHub double."""

    def __init__(self, double: GitHubDouble) -> None:
        self.double = double
        self.schema = build_schema(
            openapi.GRAPHQL_PATH.read_text() + openapi.GRAPHQL_QUERY_PATH.read_text() + _EXTRA_TYPES
        )
        self.mutations = 0

    def handle(self, request: Request) -> Response:
        body = request.json()
        try:
            document = parse(body.get("query", ""))
        except GraphQLError as exc:
            return Response.json(200, {"errors": [{"message": exc.message}]})
        problems = validate(self.schema, document)
        if problems:
            with self.double._lock:
                self.double.validation_errors.extend(f"graphql: {p.message}" for p in problems)
            return Response.json(200, {"errors": [{"message": p.message} for p in problems]})
        operation = document.definitions[0]
        variables = body.get("variables") or {}
        if getattr(operation, "operation", None) is None or operation.operation.value != "mutation":  # type: ignore[attr-defined]
            return self._query(request, document, variables)
        self.mutations += 1
        value = variables.get("input")
        if value is None:
            return Response.json(
                200,
                {"errors": [{"message": "this double expects the input as the $input variable"}]},
            )
        return self._commit(value, request.role)

    def _query(
        self, request: Request, document: DocumentNode, variables: dict[str, Any]
    ) -> Response:
        """Run a query over the double's repositories, as GitHub answers it."""
        double = self.double

        def repository(_info: Any, owner: str, name: str, followRenames: bool = True) -> Any:
            full_name = f"{owner}/{name}"
            with double.open_repo(full_name) as repo:
                if repo is None:
                    return None
                heads = gitdata.heads(repo)
                default = gitdata.default_branch(repo)

            def ref(_info: Any, qualifiedName: str) -> Any:
                branch = qualifiedName.removeprefix("refs/heads/")
                sha = heads.get(branch)
                if sha is None:
                    return None
                rule = None
                if double.is_protected(full_name, branch):
                    rule = {
                        "pattern": branch,
                        "allowsDeletions": False,
                        "allowsForcePushes": False,
                        "viewerCanPush": request.role == "admin",
                    }
                return {
                    "id": f"REF_{branch}",
                    "name": branch,
                    "prefix": "refs/heads/",
                    "refUpdateRule": rule,
                    "target": {
                        "__typename": "Commit",
                        "oid": sha,
                        "tarballUrl": double.codeload_url(request, full_name, sha),
                        "url": f"{double.url}/{full_name}/commit/{sha}",
                        "message": "",
                    },
                }

            default_sha = heads.get(default)
            return {
                "nameWithOwner": full_name,
                "url": f"{double.url}/{full_name}",
                "isEmpty": not heads,
                "viewerPermission": PERMISSIONS[request.role],
                "defaultBranchRef": ref(None, default) if default_sha else None,
                "ref": ref,
            }

        result = execute_sync(
            self.schema, document, root_value={"repository": repository}, variable_values=variables
        )
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [{"message": e.message} for e in result.errors]
        elif (
            result.data is not None
            and "repository" in result.data
            and not result.data["repository"]
        ):
            owner, name = variables.get("owner", "?"), variables.get("name", "?")
            answer["errors"] = [
                {
                    "type": "NOT_FOUND",
                    "path": ["repository"],
                    "message": f"Could not resolve to a Repository with the name '{owner}/{name}'.",
                }
            ]
        return Response.json(200, answer)

    def _commit(self, value: dict[str, Any], role: str) -> Response:
        branch = value["branch"]
        full_name = branch.get("repositoryNameWithOwner", "")
        name = (branch.get("branchName") or "").removeprefix("refs/heads/")
        if role == "read":
            return _error("FORBIDDEN", "Resource not accessible by personal access token")
        if self.double.is_protected(full_name, name) and role != "admin":
            return _error("FORBIDDEN", f"Protected branch update failed for refs/heads/{name}.")
        with self.double.write_lock(full_name), self.double.open_repo(full_name) as repo:
            if repo is None:
                return _error(
                    "NOT_FOUND", f"Could not resolve to a Repository with the name '{full_name}'."
                )
            head = gitdata.heads(repo).get(name)
            if head is None:
                return _error("NOT_FOUND", f'A ref named "refs/heads/{name}" does not exist.')
            if head != value["expectedHeadOid"]:
                return _error(
                    "STALE_DATA",
                    f'Expected branch to point to "{value["expectedHeadOid"]}" but it did not. Pull and try again.',  # noqa: E501 - the forge's own words
                )
            changes = value.get("fileChanges") or {}
            store = repo.object_store
            base = gitdata.tree_of(repo, head)
            edits = []
            paths = [a["path"] for a in changes.get("additions", [])] + [
                d["path"] for d in changes.get("deletions", [])
            ]
            if len(paths) != len(set(paths)):
                return _error("UNPROCESSABLE", "A path was specified more than once.")
            for deletion in changes.get("deletions", []):
                if gitobjects.lookup(store, base, deletion["path"]) is None:
                    return _error(
                        "UNPROCESSABLE",
                        f"A path was requested for deletion which does not exist as of commit oid `{head}`",  # noqa: E501 - the forge's own words
                    )
                edits.append(gitobjects.TreeEdit(deletion["path"], FileMode.REGULAR, None))
            for addition in changes.get("additions", []):
                try:
                    data = base64.b64decode(addition["contents"], validate=True)
                except (binascii.Error, ValueError):
                    return _error("UNPROCESSABLE", "Invalid base64 contents")
                existing = gitobjects.lookup(store, base, addition["path"])
                mode = (
                    FileMode.parse(existing[0])
                    if existing and existing[0] in (0o100644, 0o100755)
                    else FileMode.REGULAR
                )
                edits.append(
                    gitobjects.TreeEdit(addition["path"], mode, gitobjects.add_blob(store, data))
                )
            try:
                tree = gitobjects.apply_edits(store, base, edits)
            except InvalidRequest as exc:
                return _error("UNPROCESSABLE", exc.reason)
            message = value["message"]["headline"] + (
                f"\n\n{value['message']['body']}" if value["message"].get("body") else ""
            )
            who = ("double-user", "double-user@users.noreply.forge.invalid")
            sha = gitobjects.make_commit(
                store, tree, [head.encode()], message, who, ("GitHub", "noreply@github.com")
            )
            gitdata.set_head(repo, name, head, sha)
        new_oid = sha.decode()
        payload = {
            "createCommitOnBranch": {
                "commit": {
                    "oid": new_oid,
                    "url": f"{self.double.url}/{full_name}/commit/{new_oid}",
                },
                "clientMutationId": value.get("clientMutationId"),
            }
        }
        return Response(200, json.dumps({"data": payload}).encode())


def _error(kind: str, message: str) -> Response:
    return Response.json(
        200,
        {
            "data": {"createCommitOnBranch": None},
            "errors": [{"type": kind, "path": ["createCommitOnBranch"], "message": message}],
        },
    )
