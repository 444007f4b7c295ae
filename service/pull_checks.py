"""The check worker: each queued job checks a pull/merge request's or a branch's head and
reports it on the forge (SPEC §9): a `pending` status, the check, the stored result, a
`success` or `failure` status, and for a PR/MR its one comment, edited in place.

Before each round of posts the head is read again: a job whose PR/MR moved on hands over
to the current head instead of reporting an old one (once checked, the old commit still
gets its own status, so none is left pending; the comment is the newest head's). Writes
stay inside the token's budget (`forge_writes`): a job takes all the slots it may use
before its first post, or waits for them without spending an attempt. A token that may
not post ends the job at once in a dead letter that says which permission it needs (so
does a request the forge refuses as invalid); other failures are retried with back-off, as
redeploys are.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from client.check import CheckResult, check_project
from client.check.changes import ProjectChanges, summarize
from client.check.project import Project, load_project
from client.policy import BranchPolicy
from providers.contract import CheckReporter, CommitStatus, StatusState
from providers.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ProviderError,
)
from service import check_comment, check_jobs, forge_writes
from service.checks import files_at
from service.deps import ProjectContext, ServiceState
from service.polling import PollingWorker
from service.problems import public
from service.settings import ProjectConfig

log = logging.getLogger(__name__)

CONTEXT = "meltano-forge/check"
"""The status context (GitHub) or name (GitLab) every check posts under."""
PENDING_WORDS = "Checking the project as Meltano would load it"
GAVE_UP_WORDS = "The check could not run; the service's Checks page says why"


@dataclass(frozen=True)
class CheckPolicy:
    """Retry schedule, lease and write budget of the check worker."""

    max_attempts: int = 8
    base_delay: float = 2.0
    max_delay: float = 600.0
    lease_seconds: float = 120.0
    budget: forge_writes.WriteBudget = field(default_factory=forge_writes.WriteBudget)


class _Handover(Exception):
    """The subject moved on (a newer head, closed, deleted): this job reports nothing."""

    def __init__(self, why: str, current: str | None = None) -> None:
        super().__init__(why)
        self.why, self.current = why, current


def findings_url(public_url: str | None, project: str, sha: str) -> str | None:
    """The absolute address of a commit's findings page, when the public URL is known."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/projects/{project}/checks/{sha}"


def write_bucket(config: ProjectConfig) -> str:
    """The write budget a project's posts count against: its token on its forge."""
    token = config.token.get_secret_value() if config.token else ""
    return forge_writes.bucket_of(config.forge_config().location.api_url, token)


UNEXPECTED = (
    "The check stopped on an unexpected error, logged by the service. Report it, and retry "
    "the job once the service is fixed"
)
"""A dead job's words for an error no rule foresaw (the log has the details)."""


class CheckWorker(PollingWorker):
    """Claims and runs due check jobs; `run_once` is one pass, `start` loops in a thread."""

    def __init__(
        self,
        state: ServiceState,
        policy: CheckPolicy | None = None,
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(interval, "checks")
        self.state = state
        self.policy = policy or CheckPolicy()
        self.clock = clock
        self.owner = uuid.uuid4().hex[:16]

    @property
    def engine(self) -> sa.Engine:
        """The service's database."""
        return self.state.engine

    def run_once(self, limit: int = 10) -> int:
        """Claim and run what is due; how many jobs were claimed."""
        jobs = check_jobs.claim(
            self.engine, self.owner, self.policy.lease_seconds, self.clock(), limit
        )
        for job in jobs:
            self.run(job)
        return len(jobs)

    def run(self, job: Any) -> None:
        """One job, to its end or its next attempt."""
        config = self.state.projects.project(job.project)
        if config is None:
            self._end(
                job,
                check_jobs.DEAD,
                "The project is no longer configured. Add it back "
                "to the projects file, or leave this job",
            )
            return
        policy = BranchPolicy(config.working_branch, config.protected_branches)
        ctx = ProjectContext(config, self.state.forge(config), policy, None, self.state)
        reporter = ctx.forge if isinstance(ctx.forge, CheckReporter) else None
        slots: list[int] = []
        posted: list[StatusState] = []
        try:
            if reporter is not None:
                need = 3 if job.number is not None else 2
                taken = forge_writes.reserve(
                    self.engine, write_bucket(config), need, self.policy.budget, self.clock()
                )
                if isinstance(taken, float):  # the token's window is full: wait, no attempt
                    check_jobs.finish(
                        self.engine,
                        job,
                        self.owner,
                        check_jobs.PENDING,
                        next_attempt_at=self.clock() + taken,
                    )
                    return
                slots = taken
            self._report(ctx, reporter, job, slots, posted)
            self._end(job, check_jobs.DONE, None)
        except _Handover as moved:
            self._hand_over(ctx, job, moved)
        except (PermissionDenied, AuthenticationFailed, InvalidRequest) as exc:
            # Asking again gets the same answer: a person must change the token or the input.
            self._end(job, check_jobs.DEAD, public(str(exc), self.state.hidden_paths()))
        except ProviderError as exc:
            dead = self._retry(job, exc)
            if dead and reporter is not None and slots and posted == [StatusState.PENDING]:
                self._give_up(reporter, job, slots)
        except Exception:
            log.exception("check job %s stopped on an unexpected error", job.id)
            self._end(job, check_jobs.DEAD, UNEXPECTED)
            if reporter is not None and slots and posted == [StatusState.PENDING]:
                self._give_up(reporter, job, slots)
        finally:
            forge_writes.release(self.engine, slots)

    def _report(
        self,
        ctx: ProjectContext,
        reporter: CheckReporter | None,
        job: Any,
        slots: list[int],
        posted: list[StatusState],
    ) -> None:
        url = findings_url(self.state.settings.public_url, job.project, job.head_sha)
        self._still_current(ctx, reporter, job)
        if reporter is not None:
            slots.pop()
            reporter.set_commit_status(
                job.head_sha, CommitStatus(StatusState.PENDING, CONTEXT, PENDING_WORDS, url)
            )
            posted.append(StatusState.PENDING)
        base_sha = self._base(ctx, job)
        result, changes = self._check(ctx, job.head_sha, base_sha)
        data = result.as_dict()
        with self.engine.begin() as connection:
            check_jobs.store_result(
                connection,
                job.project,
                job,
                data,
                {**changes.as_dict(), "base_sha": base_sha},
                self.clock(),
            )
        self.state.events.publish(
            {
                "type": "check_finished",
                "project": job.project,
                "branch": job.branch,
                "sha": job.head_sha,
                "ok": result.ok,
            }
        )
        try:
            self._still_current(ctx, reporter, job)
        finally:  # even when the head moved: a commit's own status is never left pending
            if reporter is not None:
                slots.pop()
                verdict = StatusState.SUCCESS if result.ok else StatusState.FAILURE
                described = CommitStatus(verdict, CONTEXT, check_comment.describe(data), url)
                reporter.set_commit_status(job.head_sha, described)
                posted.append(verdict)
        if reporter is None or job.number is None:
            return
        body = check_comment.render(
            data,
            changes,
            sha=job.head_sha,
            branch=job.branch,
            target=job.target,
            base_sha=base_sha,
            findings_url=url,
        )
        known = check_jobs.known_comment(self.engine, job.project, job.number)
        slots.pop()
        comment = reporter.upsert_comment(job.number, check_comment.MARKER, body, known)
        if comment != known:
            check_jobs.remember_comment(self.engine, job.project, job.number, comment)

    def _still_current(self, ctx: ProjectContext, reporter: CheckReporter | None, job: Any) -> None:
        """Raise `_Handover` when the PR/MR or branch no longer points at the job's head."""
        if job.number is not None:
            if reporter is None:
                return  # a forge without change requests cannot say; report what came
            try:
                now = reporter.change_request_head(job.number)
            except NotFound:
                why = "the pull or merge request is gone"
                raise _Handover(why) from None
            if not now.open:
                why = "the pull or merge request is closed"
                raise _Handover(why)
            if now.head_sha != job.head_sha:
                why = f"its head moved to {now.head_sha[:12]}"
                raise _Handover(why, now.head_sha)
            return
        try:
            head = ctx.forge.branch(job.branch).head
        except NotFound:
            why = "the branch is gone"
            raise _Handover(why) from None
        if head != job.head_sha:
            why = f"the branch moved to {head[:12]}"
            raise _Handover(why, head)

    def _base(self, ctx: ProjectContext, job: Any) -> str | None:
        """What the change is compared with: the target branch's head for a PR/MR, what
        the push replaced for a branch."""
        if job.target:
            try:
                return ctx.forge.branch(job.target).head
            except NotFound:
                return None
        return str(job.base_sha) if job.base_sha else None

    def _check(
        self, ctx: ProjectContext, sha: str, base_sha: str | None
    ) -> tuple[CheckResult, ProjectChanges]:
        head = files_at(ctx, sha)
        base = files_at(ctx, base_sha) if base_sha else None
        result = check_project(head, base=base)
        before = load_project(base) if base is not None else Project()
        return result, summarize(before, load_project(head))

    def _hand_over(self, ctx: ProjectContext, job: Any, moved: _Handover) -> None:
        now = self.clock()
        with self.engine.begin() as connection:
            connection.execute(
                check_jobs.check_jobs.update()
                .where(
                    check_jobs.check_jobs.c.id == job.id,
                    check_jobs.check_jobs.c.lease_owner == self.owner,
                )
                .values(
                    status=check_jobs.SUPERSEDED,
                    lease_owner=None,
                    lease_until=None,
                    finished_at=now,
                    last_error=f"Not reported: {moved.why}",
                )
            )
            if moved.current is not None:
                # Whatever the webhooks said, the forge's head now is what gets checked.
                subject = check_jobs.Subject(
                    job.forge, job.branch, moved.current, job.event_id, job.number, job.target
                )
                check_jobs.enqueue(connection, job.project, subject, now)

    def _end(self, job: Any, status: str, error: str | None) -> None:
        now = self.clock()
        if status == check_jobs.DEAD:
            log.warning("check job %s of %s is dead: %s", job.id, job.project, error)
        check_jobs.finish(
            self.engine,
            job,
            self.owner,
            status,
            attempts=job.attempts + 1,
            finished_at=now,
            last_error=error,
        )

    def _give_up(self, reporter: CheckReporter, job: Any, slots: list[int]) -> None:
        """Replace the pending status of a job that is dead, so that a required check does
        not wait forever for it."""
        url = findings_url(self.state.settings.public_url, job.project, job.head_sha)
        slots.pop()
        try:
            reporter.set_commit_status(
                job.head_sha, CommitStatus(StatusState.ERROR, CONTEXT, GAVE_UP_WORDS, url)
            )
        except ProviderError as exc:  # the job is dead already, and says why
            log.warning("check job %s could not say it gave up: %s", job.id, exc)

    def _retry(self, job: Any, exc: ProviderError) -> bool:
        """Schedule another attempt, or end the job; True when it is dead."""
        attempts = job.attempts + 1
        error = public(str(exc), self.state.hidden_paths())
        if attempts >= self.policy.max_attempts:
            self._end(job, check_jobs.DEAD, error)
            return True
        now = self.clock()
        delay = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempts - 1))
        delay *= 0.5 + random.random() / 2  # noqa: S311 - spreading retries, not a secret
        retry_at = getattr(exc, "retry_at", None)
        if retry_at is not None:
            delay = max(delay, retry_at.timestamp() - now)
        check_jobs.finish(
            self.engine,
            job,
            self.owner,
            check_jobs.PENDING,
            attempts=attempts,
            next_attempt_at=now + delay,
            last_error=error,
        )
        return False


def check_worker(state: ServiceState) -> CheckWorker:
    """The check worker for this state's projects, on the outbox's schedule settings."""
    settings = state.settings
    policy = CheckPolicy(
        settings.outbox_max_attempts,
        settings.outbox_base_delay,
        lease_seconds=max(settings.outbox_lease_seconds, 120.0),
    )
    return CheckWorker(state, policy, settings.outbox_interval)
