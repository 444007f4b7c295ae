"""From a verified push to redeploy deliveries (and a pull/merge request or a push to the
working or a protected branch to a check job): dedupe, match targets, enqueue.

A push is stored first (that is what makes the 202 durable); its deliveries are resolved
right away when the payload names the changed paths, or after the answer when the forge
must be asked (truncated or forced pushes). Pushes left unprocessed by a crash are picked
up by the outbox worker's next pass.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from client.policy import BranchPolicy
from providers.contract import Forge
from providers.errors import ProviderError
from service import check_jobs, outbox
from service.settings import DeployTarget, ProjectConfig, ProjectsFile
from service.storage import webhook_events
from service.webhooks import ZERO, ChangeRequestEvent, Push

Event = Push | ChangeRequestEvent
"""What a webhook delivery stores: a push, or a pull/merge request up for review."""

REPLAY_WINDOW = 30 * 24 * 3600.0
"""How long a signed body is remembered: GitHub's signature has no timestamp, so a
captured push could otherwise be replayed at any time."""
RECOVERY_DELAY = 5.0
"""Seconds before the worker takes over a push nobody finished processing."""


@dataclass(frozen=True)
class Outcome:
    """What a webhook delivery led to."""

    duplicate: bool
    deliveries: int | None
    """None while the redeploys are still being resolved."""
    targets: tuple[str, ...] = ()
    checks: int = 0
    """Check jobs queued (a pull/merge request, a push to a checked branch)."""


def needs_forge(push: Push) -> bool:
    """Whether resolving the push's paths takes a forge request."""
    return push.paths is None and push.before != ZERO and push.after != ZERO


def paths_matter(project: ProjectConfig, push: Push) -> bool:
    """Whether some target watching the push's branch filters on paths (else the forge
    need not be asked which paths changed)."""
    return push.branch is not None and any(
        t.paths and fnmatch.fnmatchcase(push.branch, t.branch) for t in project.deploy_targets
    )


def changed_paths(forge: Forge, push: Push) -> frozenset[str] | None:
    """The payload's paths, or the forge's answer when the payload cannot tell (None when
    even the forge cannot, e.g. a new branch: then every target on the branch matches)."""
    if push.paths is not None:
        return push.paths
    if not needs_forge(push):
        return None
    try:
        return forge.changed_paths(push.before, push.after)
    except ProviderError:
        return None


def matching(
    targets: tuple[DeployTarget, ...], branch: str, paths: frozenset[str] | None
) -> list[DeployTarget]:
    """Targets whose branch glob matches, and whose path globs match a changed path."""
    out = []
    for target in targets:
        if not fnmatch.fnmatchcase(branch, target.branch):
            continue
        if (
            target.paths
            and paths is not None
            and not any(fnmatch.fnmatchcase(p, g) for p in paths for g in target.paths)
        ):
            continue
        out.append(target)
    return out


def _encode(event: Event) -> str:
    data = dataclasses.asdict(event)
    if isinstance(event, ChangeRequestEvent):
        data["kind"] = "change_request"
    else:
        data["paths"] = sorted(event.paths) if event.paths is not None else None
    return json.dumps(data)


def _decode(text: str) -> Event:
    data = json.loads(text)
    if data.pop("kind", None) == "change_request":
        return ChangeRequestEvent(**data)
    data["paths"] = frozenset(data["paths"]) if data["paths"] is not None else None
    return Push(**data)


def checked_branch(project: ProjectConfig, branch: str) -> bool:
    """Whether a push to `branch` gets a check (the working branch and protected ones)."""
    policy = BranchPolicy(project.working_branch, project.protected_branches)
    return branch == project.working_branch or policy.is_read_only(branch)


def _check_subject(project: ProjectConfig, event: Event) -> check_jobs.Subject | None:
    if isinstance(event, ChangeRequestEvent):
        return check_jobs.Subject(
            event.forge,
            event.source,
            event.head_sha,
            event.delivery_id,
            number=event.number,
            target=event.target,
        )
    if event.branch is None or event.deleted or not checked_branch(project, event.branch):
        return None
    before = event.before if event.before != ZERO else None
    return check_jobs.Subject(
        event.forge, event.branch, event.after, event.delivery_id, base_sha=before
    )


def accept(
    engine: sa.Engine, project: ProjectConfig, push: Event, replay_window: float = REPLAY_WINDOW
) -> bool:
    """Store the push once; False when this delivery id was seen before, or the same signed
    body arrived for this project within `replay_window` seconds (a replay under a new,
    unsigned delivery id)."""
    now = time.time()
    with engine.begin() as connection:
        seen = connection.execute(
            sa.select(webhook_events.c.id).where(
                sa.or_(
                    webhook_events.c.id == push.delivery_id,
                    sa.and_(
                        webhook_events.c.project == project.name,
                        webhook_events.c.body_digest == push.digest,
                        webhook_events.c.received_at > now - replay_window,
                    ),
                )
            )
        ).first()
        if seen:
            return False
        connection.execute(
            webhook_events.insert().values(
                id=push.delivery_id,
                project=project.name,
                event=push.event,
                received_at=now,
                push=_encode(push),
                body_digest=push.digest,
            )
        )
    return True


class _Raced(Exception):
    """Another process finished this push first; roll back what we enqueued."""


def process(engine: sa.Engine, project: ProjectConfig, forge: Forge, event_id: str) -> Outcome:
    """Resolve a stored push into deliveries, exactly once (the row is claimed first)."""
    try:
        return _process(engine, project, forge, event_id)
    except _Raced:
        return Outcome(False, 0)


def _process(engine: sa.Engine, project: ProjectConfig, forge: Forge, event_id: str) -> Outcome:
    with engine.begin() as connection:
        row = connection.execute(
            sa.select(webhook_events)
            .where(webhook_events.c.id == event_id, webhook_events.c.processed_at.is_(None))
            .with_for_update(skip_locked=True)
        ).first()
        if row is None or row.push is None:
            return Outcome(False, 0)
        push = _decode(row.push)
        targets: list[DeployTarget] = []
        added = 0
        subject = _check_subject(project, push)
        checks = (
            check_jobs.enqueue(connection, project.name, subject, time.time()) if subject else 0
        )
        if isinstance(push, Push) and push.branch is not None and not push.deleted:
            paths = changed_paths(forge, push) if paths_matter(project, push) else push.paths
            targets = matching(project.deploy_targets, push.branch, paths)
            payload = {
                "project": project.name,
                "branch": push.branch,
                "sha": push.after,
                "before": push.before,
                "forge": push.forge,
                "event_id": push.delivery_id,
            }
            added = outbox.enqueue(connection, project.name, push.delivery_id, targets, payload)
        claimed = connection.execute(
            webhook_events.update()
            .where(webhook_events.c.id == event_id, webhook_events.c.processed_at.is_(None))
            .values(processed_at=time.time())
        )
        if claimed.rowcount != 1:
            raise _Raced
    return Outcome(False, added, tuple(t.name for t in targets), checks)


def process_pending(
    engine: sa.Engine,
    projects: ProjectsFile,
    forge_for: Callable[[ProjectConfig], Forge],
    delay: float = RECOVERY_DELAY,
) -> int:
    """Finish pushes a crashed or busy process left unprocessed; returns how many."""
    cutoff = time.time() - delay
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(webhook_events.c.id, webhook_events.c.project)
            .where(webhook_events.c.processed_at.is_(None), webhook_events.c.received_at < cutoff)
            .limit(50)
        ).all()
    done = 0
    for row in rows:
        project = projects.project(row.project)
        if project is not None:
            process(engine, project, forge_for(project), row.id)
            done += 1
    return done
