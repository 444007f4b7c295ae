"""From a verified push to redeploy deliveries: dedupe, match targets, enqueue.

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

from providers.contract import Forge
from providers.errors import ProviderError
from service import outbox
from service.settings import DeployTarget, ProjectConfig, ProjectsFile
from service.storage import webhook_events
from service.webhooks import ZERO, Push

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


def _encode(push: Push) -> str:
    data = dataclasses.asdict(push)
    data["paths"] = sorted(push.paths) if push.paths is not None else None
    return json.dumps(data)


def _decode(text: str) -> Push:
    data = json.loads(text)
    data["paths"] = frozenset(data["paths"]) if data["paths"] is not None else None
    return Push(**data)


def accept(
    engine: sa.Engine, project: ProjectConfig, push: Push, replay_window: float = REPLAY_WINDOW
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
        if push.branch is not None and not push.deleted:
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
    return Outcome(False, added, tuple(t.name for t in targets))


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
