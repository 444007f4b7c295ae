"""From a verified push to redeploy deliveries: dedupe, match targets, enqueue."""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass

import sqlalchemy as sa

from providers.contract import Forge
from providers.errors import ProviderError
from service import outbox
from service.settings import DeployTarget, ProjectConfig
from service.storage import webhook_events
from service.webhooks import ZERO, Push


@dataclass(frozen=True)
class Outcome:
    """What a webhook delivery led to."""

    duplicate: bool
    deliveries: int
    targets: tuple[str, ...]


def changed_paths(forge: Forge, push: Push) -> frozenset[str] | None:
    """The payload's paths, or the forge's answer when the payload cannot tell (None when
    even the forge cannot, e.g. a new branch: then every target on the branch matches)."""
    if push.paths is not None:
        return push.paths
    if push.before == ZERO or push.after == ZERO:
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


def record(engine: sa.Engine, project: ProjectConfig, forge: Forge, push: Push) -> Outcome:
    """Persist the delivery id (dedupe) and enqueue deliveries, in one transaction."""
    with engine.begin() as connection:
        seen = connection.execute(
            sa.select(webhook_events.c.id).where(webhook_events.c.id == push.delivery_id)
        ).first()
        if seen:
            return Outcome(True, 0, ())
        connection.execute(
            webhook_events.insert().values(
                id=push.delivery_id, project=project.name, event=push.event, received_at=time.time()
            )
        )
        if push.branch is None or push.deleted:
            return Outcome(False, 0, ())
        targets = matching(project.deploy_targets, push.branch, changed_paths(forge, push))
        payload = {
            "project": project.name,
            "branch": push.branch,
            "sha": push.after,
            "before": push.before,
            "forge": push.forge,
            "event_id": push.delivery_id,
        }
        added = outbox.enqueue(connection, project.name, push.delivery_id, targets, payload)
        return Outcome(False, added, tuple(t.name for t in targets))
