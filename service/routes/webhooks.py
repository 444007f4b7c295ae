"""`POST /webhooks`: GitHub and GitLab push, pull request and merge request hooks, verified
by signature, answered 202."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse

from service import redeploys, webhooks
from service.body_limits import read_body
from service.deps import ServiceState, StateDep
from service.metrics import WEBHOOKS
from service.problems import Problem
from service.settings import ProjectConfig

router = APIRouter(prefix="/v1/projects/{project}", tags=["webhooks"])


PUSH = {
    "title": "push",
    "type": "object",
    "properties": {
        "ref": {"type": "string"},
        "before": {"type": "string"},
        "after": {"type": "string"},
        "deleted": {"type": "boolean"},
        "forced": {"type": "boolean"},
        "total_commits_count": {"type": "integer"},
        "commits": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    name: {"type": "array", "items": {"type": "string"}}
                    for name in ("added", "modified", "removed")
                },
            },
        },
    },
}
_BRANCH = {"type": "object", "properties": {"ref": {"type": "string"}, "sha": {"type": "string"}}}
PULL_REQUEST = {
    "title": "pull_request",
    "type": "object",
    "required": ["action", "number", "pull_request"],
    "properties": {
        "action": {"type": "string"},
        "number": {"type": "integer"},
        "pull_request": {
            "type": "object",
            "properties": {"html_url": {"type": "string"}, "head": _BRANCH, "base": _BRANCH},
        },
    },
}
MERGE_REQUEST = {
    "title": "Merge Request Hook",
    "type": "object",
    "required": ["object_attributes"],
    "properties": {
        "object_attributes": {
            "type": "object",
            "properties": {
                "iid": {"type": "integer"},
                "action": {"type": "string"},
                "source_branch": {"type": "string"},
                "target_branch": {"type": "string"},
                "oldrev": {"type": "string"},
                "url": {"type": "string"},
                "last_commit": {"type": "object", "properties": {"id": {"type": "string"}}},
            },
        }
    },
}

PAYLOAD = {
    "requestBody": {
        "required": True,
        "description": "A GitHub `push` or `pull_request` payload, or a GitLab `Push Hook` or "
        "`Merge Request Hook` payload, signed (X-Hub-Signature-256, X-Gitlab-Token or "
        "webhook-signature); the fields read are listed, the rest is ignored. A pull request "
        "(opened, synchronize, reopened) or merge request (open, reopen, an update with new "
        "commits) queues a check of its head, reported as a commit status and one comment.",
        "content": {"application/json": {"schema": {"anyOf": [PUSH, PULL_REQUEST, MERGE_REQUEST]}}},
    },
    "responses": {
        "400": {"description": "Not a webhook, or not the payload its event names (problem+json)"},
        "401": {"description": "The signature or token does not match (problem+json)"},
        "404": {"description": "No such project (problem+json)"},
        "413": {"description": "The body is over the size limit (problem+json)"},
    },
}


@router.post("/webhooks", status_code=202, openapi_extra=PAYLOAD)
async def receive(
    project: str, request: Request, state: StateDep, tasks: BackgroundTasks
) -> JSONResponse:
    """Verify, dedupe and record a push; unknown events are acknowledged and ignored."""
    config = state.projects.project(project)
    if config is None:
        raise Problem(404, "Not found", f"No project named '{project}'")
    body = await read_body(request, state.settings.webhook_max_bytes)
    headers = {k.lower(): v for k, v in request.headers.items()}
    forge = webhooks.which_forge(headers)
    if forge is None:
        raise Problem(400, "Not a webhook", "Send X-GitHub-Event or X-Gitlab-Event")
    try:
        if forge == "github":
            webhooks.verify_github(headers, body, config.webhook_secret)
        else:
            webhooks.verify_gitlab(
                headers, body, config.webhook_secret, config.gitlab_signing_token
            )
    except webhooks.BadSignature as exc:
        WEBHOOKS.labels(forge, "bad_signature").inc()
        raise Problem(401, "Bad signature", str(exc)) from exc
    if webhooks.is_change_request(forge, headers):
        return _change_request(state, config, forge, headers, body)
    try:
        push = webhooks.parse(forge, headers, body)
    except webhooks.BadPayload as exc:
        WEBHOOKS.labels(forge, "bad_payload").inc()
        raise Problem(400, "Invalid payload", f"Not a push payload: {exc}") from exc
    if push is None:
        WEBHOOKS.labels(forge, "ignored").inc()
        return JSONResponse({"status": "ignored"}, status_code=202)
    if not redeploys.accept(state.engine, config, push):
        WEBHOOKS.labels(forge, "duplicate").inc()
        return JSONResponse({"status": "duplicate", "deliveries": 0}, status_code=202)
    if push.branch:
        state.heads.moved(project, push.branch, None if push.deleted else push.after)
        state.events.publish(
            {"type": "branch_moved", "project": project, "branch": push.branch, "sha": push.after}
        )
    WEBHOOKS.labels(forge, "accepted").inc()
    if redeploys.needs_forge(push) and redeploys.paths_matter(config, push):
        # Asking the forge which paths changed can take a while: answer first.
        tasks.add_task(_resolve, state, config, push.delivery_id)
        return JSONResponse({"status": "accepted", "deliveries": None}, status_code=202)
    outcome = _resolve(state, config, push.delivery_id)
    return JSONResponse({"status": "accepted", "deliveries": outcome.deliveries}, status_code=202)


def _change_request(
    state: ServiceState, config: ProjectConfig, forge: str, headers: dict[str, str], body: bytes
) -> JSONResponse:
    """Record a pull/merge request and queue the check of its head."""
    try:
        change = webhooks.parse_change_request(forge, headers, body)
    except webhooks.BadPayload as exc:
        WEBHOOKS.labels(forge, "bad_payload").inc()
        detail = f"Not a pull or merge request payload: {exc}"
        raise Problem(400, "Invalid payload", detail) from exc
    if change is None:
        WEBHOOKS.labels(forge, "ignored").inc()
        return JSONResponse({"status": "ignored"}, status_code=202)
    if not redeploys.accept(state.engine, config, change):
        WEBHOOKS.labels(forge, "duplicate").inc()
        return JSONResponse({"status": "duplicate", "checks": 0}, status_code=202)
    WEBHOOKS.labels(forge, "accepted").inc()
    outcome = _resolve(state, config, change.delivery_id)
    return JSONResponse({"status": "accepted", "checks": outcome.checks}, status_code=202)


def _resolve(state: ServiceState, config: ProjectConfig, event_id: str) -> redeploys.Outcome:
    outcome = redeploys.process(state.engine, config, state.forge(config), event_id)
    if outcome.deliveries:
        state.events.publish(
            {"type": "redeploy_requested", "project": config.name, "targets": list(outcome.targets)}
        )
    return outcome
