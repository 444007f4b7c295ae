"""Check jobs: the durable queue of commits to check and report (SPEC §9), coalesced per
pull/merge request or branch, and the results they stored.

A job is one subject (`change_request:12`, `branch:main`) at one head commit. A newer head
of the same subject supersedes a queued older one, so a burst of pushes to a PR costs one
check and one round of forge writes. Workers claim due jobs under a row lock (`FOR UPDATE
SKIP LOCKED` on PostgreSQL; SQLite serializes writers) and a lease, as the redeploy outbox
does, and never hold two jobs of one subject at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from service.storage import BRANCH_MAX, metadata

PENDING, DONE, SUPERSEDED, DEAD = "pending", "done", "superseded", "dead"

check_jobs = sa.Table(
    "check_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False, doc="change_request:N or branch:NAME"),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("number", sa.Integer, doc="the PR number or MR iid"),
    sa.Column("branch", sa.String(BRANCH_MAX), nullable=False, doc="the branch checked"),
    sa.Column("target", sa.String(BRANCH_MAX), doc="the branch a PR/MR merges into"),
    sa.Column("base_sha", sa.String(40), doc="what a push replaced (the summary's base)"),
    sa.Column("head_sha", sa.String(40), nullable=False),
    sa.Column("event_id", sa.String(200), nullable=False, doc="the delivery that asked"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("lease_until", sa.Float),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.UniqueConstraint("project", "subject", "head_sha", name="uq_check_jobs_head"),
    sa.Index("ix_check_jobs_due", "status", "next_attempt_at"),
)

check_results = sa.Table(
    "check_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project", sa.String(64), nullable=False),
    sa.Column("sha", sa.String(40), nullable=False),
    sa.Column("branch", sa.String(BRANCH_MAX), nullable=False),
    sa.Column("number", sa.Integer),
    sa.Column("target", sa.String(BRANCH_MAX)),
    sa.Column("base_sha", sa.String(40)),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("warnings", sa.Integer, nullable=False),
    sa.Column("findings", sa.Text, nullable=False, doc="CheckResult.as_dict(), JSON"),
    sa.Column("summary", sa.Text, nullable=False, doc="what the change does, JSON"),
    sa.Column("checked_at", sa.Float, nullable=False),
    sa.Index("ix_check_results_sha", "project", "sha"),
    sa.Index("ix_check_results_branch", "project", "branch"),
)

check_comments = sa.Table(
    "check_comments",
    metadata,
    sa.Column("project", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("comment_id", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)


@dataclass(frozen=True)
class Subject:
    """What a job checks: a PR/MR (`number`) or a branch, at `head_sha`."""

    forge: str
    branch: str
    head_sha: str
    event_id: str
    number: int | None = None
    target: str | None = None
    base_sha: str | None = None

    @property
    def key(self) -> str:
        """The coalescing key: one live job per PR/MR, one per branch."""
        return (
            f"change_request:{self.number}" if self.number is not None else f"branch:{self.branch}"
        )


def enqueue(connection: sa.Connection, project: str, subject: Subject, now: float) -> int:
    """Queue a check of `subject` in the caller's transaction, superseding any queued job
    of an older head of the same PR/MR or branch; 1 when a job was added (or a dead or
    superseded one of this head revived), 0 when this head is already queued or done."""
    key = subject.key
    same = sa.and_(check_jobs.c.project == project, check_jobs.c.subject == key)
    found = connection.execute(
        sa.select(check_jobs.c.id, check_jobs.c.status).where(
            same, check_jobs.c.head_sha == subject.head_sha
        )
    ).first()
    added = 0
    if found is None:
        connection.execute(
            check_jobs.insert().values(
                project=project,
                subject=key,
                forge=subject.forge,
                number=subject.number,
                branch=subject.branch,
                target=subject.target,
                base_sha=subject.base_sha,
                head_sha=subject.head_sha,
                event_id=subject.event_id,
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        added = 1
    elif found.status in (DEAD, SUPERSEDED):
        connection.execute(
            check_jobs.update()
            .where(check_jobs.c.id == found.id)
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                finished_at=None,
                event_id=subject.event_id,
            )
        )
        added = 1
    # An older head still waiting is never checked: the newest is what will be merged.
    connection.execute(
        check_jobs.update()
        .where(
            same,
            check_jobs.c.head_sha != subject.head_sha,
            check_jobs.c.status == PENDING,
            sa.or_(check_jobs.c.lease_until.is_(None), check_jobs.c.lease_until < now),
        )
        .values(status=SUPERSEDED, finished_at=now, last_error=None)
    )
    return added


def claim(engine: sa.Engine, owner: str, lease: float, now: float, limit: int) -> list[Any]:
    """Lease up to `limit` due jobs to `owner`, never one whose subject another worker
    holds (its newer head waits for the older to finish or to notice it moved)."""
    held = check_jobs.alias("held")
    due = sa.and_(
        check_jobs.c.status == PENDING,
        check_jobs.c.next_attempt_at <= now,
        sa.or_(check_jobs.c.lease_until.is_(None), check_jobs.c.lease_until < now),
        ~sa.exists().where(
            held.c.project == check_jobs.c.project,
            held.c.subject == check_jobs.c.subject,
            held.c.id != check_jobs.c.id,
            held.c.status == PENDING,
            held.c.lease_until >= now,
        ),
    )
    with engine.begin() as connection:
        rows = connection.execute(
            sa.select(check_jobs.c.id)
            .where(due)
            .order_by(check_jobs.c.next_attempt_at, check_jobs.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=check_jobs)
        ).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        connection.execute(
            check_jobs.update()
            .where(check_jobs.c.id.in_(ids), due)
            .values(lease_owner=owner, lease_until=now + lease)
        )
        return list(
            connection.execute(
                sa.select(check_jobs)
                .where(check_jobs.c.id.in_(ids), check_jobs.c.lease_owner == owner)
                .order_by(check_jobs.c.id)
            ).all()
        )


def finish(engine: sa.Engine, job: Any, owner: str, status: str, **values: Any) -> bool:
    """Record how a leased job ended (or when it is due again, with `status` PENDING),
    releasing the lease; False when the lease was lost to another worker."""
    with engine.begin() as connection:
        done = connection.execute(
            check_jobs.update()
            .where(check_jobs.c.id == job.id, check_jobs.c.lease_owner == owner)
            .values(status=status, lease_owner=None, lease_until=None, **values)
        )
    return bool(done.rowcount)


def store_result(
    connection: sa.Connection,
    project: str,
    job: Any,
    result: dict[str, Any],
    summary: dict[str, Any],
    now: float,
) -> None:
    """Keep what the check of a job's head found, and what the change does."""
    connection.execute(
        check_results.insert().values(
            project=project,
            sha=job.head_sha,
            branch=job.branch,
            number=job.number,
            target=job.target,
            base_sha=summary.get("base_sha"),
            ok=bool(result["ok"]),
            errors=len(result["errors"]),
            warnings=len(result["warnings"]),
            findings=json.dumps(result),
            summary=json.dumps(summary),
            checked_at=now,
        )
    )


def known_comment(engine: sa.Engine, project: str, number: int) -> int | None:
    """The id of the one comment on PR/MR `number`, once written."""
    with engine.connect() as connection:
        found = connection.execute(
            sa.select(check_comments.c.comment_id).where(
                check_comments.c.project == project, check_comments.c.number == number
            )
        ).scalar()
    return int(found) if found is not None else None


def remember_comment(engine: sa.Engine, project: str, number: int, comment_id: int) -> None:
    """Keep the comment's id, so the next push edits it without searching."""
    now = time.time()
    where = sa.and_(check_comments.c.project == project, check_comments.c.number == number)
    with engine.begin() as connection:
        changed = connection.execute(
            check_comments.update().where(where).values(comment_id=comment_id, updated_at=now)
        )
        if not changed.rowcount:
            connection.execute(
                check_comments.insert().values(
                    project=project, number=number, comment_id=comment_id, updated_at=now
                )
            )


def result_at(engine: sa.Engine, project: str, sha: str) -> Any | None:
    """The newest stored check of commit `sha`."""
    with engine.connect() as connection:
        return connection.execute(
            sa.select(check_results)
            .where(check_results.c.project == project, check_results.c.sha == sha)
            .order_by(check_results.c.id.desc())
            .limit(1)
        ).first()


def latest_by_branch(engine: sa.Engine, project: str, heads: dict[str, str]) -> dict[str, Any]:
    """Each branch's newest stored check of the commit it is at now (`heads`: branch to
    head SHA; branches whose head was never checked are left out). Matching the commit too
    keeps a fork's pull request whose branch has the same name (`main`) off the badge of
    the project's own branch."""
    if not heads:
        return {}
    newest = (
        sa.select(sa.func.max(check_results.c.id))
        .where(
            check_results.c.project == project,
            sa.or_(
                *(
                    sa.and_(check_results.c.branch == branch, check_results.c.sha == sha)
                    for branch, sha in heads.items()
                )
            ),
        )
        .group_by(check_results.c.branch)
    )
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(check_results).where(check_results.c.id.in_(newest))
        ).all()
    return {r.branch: r for r in rows}


def list_jobs(engine: sa.Engine, project: str, status: str | None, limit: int) -> list[Any]:
    """A project's check jobs, newest first."""
    query = sa.select(check_jobs).where(check_jobs.c.project == project)
    if status:
        query = query.where(check_jobs.c.status == status)
    with engine.connect() as connection:
        return list(connection.execute(query.order_by(check_jobs.c.id.desc()).limit(limit)).all())


def retry(engine: sa.Engine, project: str, job_id: int) -> bool:
    """Another round of attempts for a dead job; False when there is none."""
    with engine.begin() as connection:
        done = connection.execute(
            check_jobs.update()
            .where(
                check_jobs.c.project == project,
                check_jobs.c.id == job_id,
                check_jobs.c.status == DEAD,
            )
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=time.time(),
                last_error=None,
                finished_at=None,
            )
        )
    return bool(done.rowcount)
