"""`POST /webhooks`: GitHub and GitLab push hooks, verified by signature, answered 202."""

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


PAYLOAD = {
    "requestBody": {
        "required": True,
        "description": "A GitHub `push` or GitLab `Push Hook` payload, signed "
        "(X-Hub-Signature-256, X-Gitlab-Token or webhook-signature); the fields read are "
        "listed, the rest is ignored.",
        "content": {
            "application/json": {
                "schema": {
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
            }
        },
    },
    "responses": {
        "400": {"description": "Not a webhook, or not a push payload (problem+json)"},
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


def _resolve(state: ServiceState, config: ProjectConfig, event_id: str) -> redeploys.Outcome:
    outcome = redeploys.process(state.engine, config, state.forge(config), event_id)
    if outcome.deliveries:
        state.events.publish(
            {"type": "redeploy_requested", "project": config.name, "targets": list(outcome.targets)}
        )
    return outcome
