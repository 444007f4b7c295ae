"""Bearer API tokens scoped to projects and roles, compared in constant time."""

from __future__ import annotations

import hmac

from service.problems import Problem
from service.settings import ApiToken, ProjectsFile, Role


def authorize(
    projects: ProjectsFile, header: str | None, project: str | None, role: Role
) -> ApiToken:
    """The token behind `Authorization: Bearer ...` if it may act on `project` with `role`.
    401 without a known token, 403 when its scope is too small."""
    scheme, _, offered = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not offered:
        raise Problem(401, "Authentication required", "Send Authorization: Bearer <API token>")
    found = None
    for candidate in projects.tokens:
        if candidate.token is not None and hmac.compare_digest(
            candidate.token.get_secret_value().encode(), offered.encode()
        ):
            found = candidate
    if found is None:
        raise Problem(401, "Authentication required", "The API token is not known to this service")
    if project is not None and "*" not in found.projects and project not in found.projects:
        raise Problem(403, "Forbidden", f"This token may not access project '{project}'")
    if found.role < role:
        raise Problem(
            403,
            "Forbidden",
            f"This token has the {found.role.name.lower()} role; {role.name.lower()} is needed",
        )
    return found
