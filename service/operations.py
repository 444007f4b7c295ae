"""What the service does, once: the JSON API's routes and the web pages both call these,
so a rule (the branch policy, the checks a commit must pass, the head cache) lives in one
place and a page never re-implements a route."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Path

from client import patch
from client.guard import SecretGuard
from client.policy import ReadOnly
from client.workspace import merge_text
from providers import changeset
from providers.config import ProviderKind
from providers.contract import (
    Author,
    Branch,
    CommitMeta,
    CommitResult,
    FileChange,
    FileMode,
)
from providers.errors import Conflict, NotFound, ProviderError, UnsafeInput
from providers.names import check_branch_name, is_sha
from providers.safety import check_links
from service import checks, editor_checks, meltano_edits, promotions
from service.deps import ProjectContext, ServiceState
from service.meltano_summary import summarize
from service.problems import Problem, from_error, public
from service.settings import ApiToken, ProjectConfig, Role
from service.storage import deliveries, workspaces

STALE_AFTER = 24 * 3600.0
"""A workspace that has not reported for this long is marked stale."""


@dataclass(frozen=True)
class BranchView:
    """A branch as the service shows it."""

    name: str
    head: str
    protected: bool
    """Protected on the forge or by the project's configuration."""
    read_only: bool
    can_push: bool | None
    ahead: int | None = None
    """Commits it has that the default branch lacks (when asked for)."""
    behind: int | None = None


@dataclass(frozen=True)
class WorkspaceView:
    """A runner's workspace, as it last reported."""

    id: str
    branch: str
    base_sha: str
    dirty: list[str]
    diff: str
    updated_at: float

    @property
    def stale(self) -> bool:
        """Not heard from for a day."""
        return time.time() - self.updated_at > STALE_AFTER


@dataclass(frozen=True)
class ProjectGlance:
    """A project at a glance (the projects overview): where it lives, the last commit of
    its default and working branches, how many workspaces are dirty, the last redeploy."""

    name: str
    provider: str
    web_url: str
    working: str
    default: str | None
    commits: list[tuple[str, CommitMeta]]
    error: str
    """Why the forge could not be asked (in the service's words), else ''."""
    dirty: int
    redeploy: sa.Row[Any] | None


def glance(ctx: ProjectContext) -> ProjectGlance:
    """One project at a glance; a forge that fails is said in the row, never fatal."""
    config, state = ctx.config, ctx.state
    default, commits, error = None, [], ""
    try:
        default = default_branch(ctx)
        for name in dict.fromkeys([default, config.working_branch]):
            try:
                sha = resolve(ctx, name)
            except NotFound:
                continue
            commits.append((name, commit_meta(ctx, sha)))
    except ProviderError as exc:
        error = from_error(exc, state.hidden_paths()).detail
    latest = list_deliveries(state, config.name, limit=1)
    return ProjectGlance(
        config.name,
        config.forge_config().location.kind.value,
        web_url(config),
        config.working_branch,
        default,
        commits,
        error,
        sum(1 for w in list_workspaces(state, config.name) if w.dirty),
        latest[0] if latest else None,
    )


def visible_projects(state: ServiceState, token: ApiToken | None) -> list[ProjectConfig]:
    """The projects a token may read."""
    return [
        p
        for p in state.projects.projects
        if token is None or "*" in token.projects or p.name in token.projects
    ]


def resolve(ctx: ProjectContext, ref: str | None) -> str:
    """A SHA for `ref` (a SHA, a branch, or the working branch when omitted, else the
    default branch while the working branch does not exist yet). Branch names go through
    the service's short-lived head cache."""
    if ref and is_sha(ref):
        return ref
    name = ref or ctx.policy.working
    try:
        return ctx.state.heads.head(ctx.config.name, ctx.forge, name)
    except NotFound:
        if ref:
            raise
    return ctx.state.heads.head(ctx.config.name, ctx.forge, default_branch(ctx))


DeliveryId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A redeploy's number")]
"""A delivery's id as a path parameter: a positive 64-bit integer, as the database keeps it."""


def web_url(config: ProjectConfig) -> str:
    """Where people look at the repository; empty for a local one (a path on this server,
    which no caller gets to see)."""
    location = config.forge_config().location
    return "" if location.kind is ProviderKind.LOCAL else location.web_url


def fresh_head(ctx: ProjectContext, branch: str) -> str:
    """The branch's head asked of the forge now (a user's Pull, a commit that found the
    branch moved), remembered for the next cached read."""
    sha = ctx.forge.branch(branch).head
    ctx.state.heads.moved(ctx.config.name, branch, sha)
    return sha


def default_branch(ctx: ProjectContext) -> str:
    """The repository's default branch."""
    return ctx.forge.repository().default_branch


def may_write(ctx: ProjectContext) -> bool:
    """Whether the caller's role may commit (write or admin)."""
    return ctx.token is None or ctx.token.role >= Role.WRITE


def facts(ctx: ProjectContext, branch: str) -> Branch | None:
    """What the forge says about a branch now (protection, this token's push), or None
    while it does not exist."""
    try:
        return ctx.forge.branch(branch)
    except NotFound:
        return None


def write_refusal(
    ctx: ProjectContext, branch: str, known: Branch | None, *, as_writer: bool = False
) -> ReadOnly | None:
    """The branch policy's one read-only rule with this project's policy, the forge's facts
    and the caller's role (`as_writer`: asked for any writer, whatever the caller)."""
    return ctx.policy.write_refusal(branch, known, may_write=as_writer or may_write(ctx))


def branch_view(
    ctx: ProjectContext, branch: Branch, *, default_head: str | None = None
) -> BranchView:
    """A branch with the project's policy applied (and ahead/behind when `default_head`).
    `read_only` is the one rule asked for a writer, so a read token sees the same badge
    as the writers it works with; `can_push` is the caller's own."""
    read_only = write_refusal(ctx, branch.name, branch, as_writer=True) is not None
    ahead = behind = None
    if default_head is not None:
        ahead, behind = ahead_behind(ctx, default_head, branch.head)
    return BranchView(
        branch.name,
        branch.head,
        branch.protected or ctx.policy.is_read_only(branch.name),
        read_only,
        False if not may_write(ctx) else branch.can_push,
        ahead,
        behind,
    )


def branches(ctx: ProjectContext, *, counts: bool = False) -> list[BranchView]:
    """Every branch (with ahead/behind against the default branch when `counts`).

    A listing does not say whether this token may push, so the rule is given the facts
    the editor and the runner get: each protected branch is asked on its own, and the
    unprotected ones take the answer of one of them (the working branch when it is one):
    on every forge, pushing to an unprotected branch is a repository-wide permission."""
    listed = ctx.forge.branches()
    unprotected = sorted(
        (b for b in listed if not b.protected and b.can_push is None),
        key=lambda b: b.name != ctx.policy.working,
    )
    sample = facts(ctx, unprotected[0].name) if unprotected else None
    known = [_with_push(ctx, b, sample.can_push if sample else None) for b in listed]
    default_head = None
    if counts:
        default = default_branch(ctx)
        default_head = next((b.head for b in known if b.name == default), None)
    return [branch_view(ctx, b, default_head=default_head) for b in known]


def _with_push(ctx: ProjectContext, branch: Branch, open_push: bool | None) -> Branch:
    if branch.can_push is not None:
        return branch
    if branch.protected:
        return facts(ctx, branch.name) or branch
    return dataclasses.replace(branch, can_push=open_push)


def ahead_behind(ctx: ProjectContext, base: str, head: str) -> tuple[int, int]:
    """Counts between two commits, remembered (commits never change)."""
    key = (ctx.config.name, base, head)
    cached = ctx.state.counts.get(key)
    if cached is None:
        cached = (0, 0) if base == head else ctx.forge.ahead_behind(base, head)
        ctx.state.counts[key] = cached
    return cached


def commit_meta(ctx: ProjectContext, sha: str) -> CommitMeta:
    """One commit's metadata, remembered by SHA."""
    key = (ctx.config.name, sha)
    cached = ctx.state.metas.get(key)
    if cached is None:
        cached = ctx.forge.commit_meta(sha)
        ctx.state.metas[key] = cached
    return cached


def history(ctx: ProjectContext, ref: str | None, limit: int) -> list[CommitMeta]:
    """The newest commits of a branch (or from a SHA)."""
    metas = ctx.forge.history(resolve(ctx, ref), limit)
    for meta in metas:
        ctx.state.metas[(ctx.config.name, meta.sha)] = meta
    return metas


def create_branch(ctx: ProjectContext, name: str, from_ref: str | None) -> BranchView:
    """A new branch (from `from_ref`, else by the branch model). Creating a branch the
    rule makes read-only (`release-*` in the protected globs) sets what it holds, so it is
    a write to it: below the admin role it is refused as a commit there would be."""
    if not _admin(ctx):
        ctx.policy.check_writable(check_branch_name(name))
    if from_ref:
        branch = ctx.forge.create_branch(name, resolve(ctx, from_ref))
    else:
        branch, _ = ctx.policy.ensure(ctx.forge, name)
    return branch_view(ctx, branch)


def commit(
    ctx: ProjectContext,
    branch: str,
    base_ref: str | None,
    changes: list[FileChange],
    message: str,
    author: Author | None = None,
) -> CommitResult:
    """A commit through the service: refused on read-only branches (403), refused when a
    pull would refuse it (422, the same rules both ways), one at a time per branch, and
    the head cache moved with it. A missing branch starts at `base_ref`, else at the
    default branch; no `base_ref` is a plain commit on the head."""
    check_branch_name(branch)
    known = facts(ctx, branch)
    ctx.policy.check_writable(branch, known, may_write=may_write(ctx))
    base = resolve(ctx, base_ref) if base_ref else None
    changeset.validate(changes, ctx.state.settings.limits)
    guard = SecretGuard(
        ctx.state.settings.secret_glob_list, ctx.state.settings.allowed_secret_globs
    )
    for change in changes:
        if change.content is not None:  # removing a secret from the repository is welcome
            guard.check(change.path, change.content)
    if any(c.mode is FileMode.SYMLINK for c in changes if c.content is not None):
        start = base or (known.head if known else None)
        check_links(changeset.links_after(ctx.forge, start, changes))
    with ctx.state.commit_lock(ctx.config.name, branch):
        result = ctx.forge.commit(branch, base, changes, message, author)
    ctx.state.heads.moved(ctx.config.name, branch, result.sha)
    return result


def promote(
    ctx: ProjectContext,
    source: str | None,
    target: str | None,
    title: str | None,
    body: str,
    *,
    override_check: bool = False,
) -> promotions.Promotion:
    """Open or reuse a PR/MR (default: the working branch into the default branch).

    Where the forge reviews the change (a PR or MR), any writer may open one. Where the
    promotion is applied at once (a local repository fast-forwards or merges), promoting
    into a branch the rule makes read-only is a write to it, so it takes the admin role:
    otherwise a write token could move `main` by way of a branch of its own.

    The source branch is checked first (`promotions.check_source`): one whose errors would
    make the target fail is refused (422, with the findings) unless an admin says
    `override_check`; a token below admin that says it is refused (403) whatever the
    check. The result names no server path."""
    src = check_branch_name(source or ctx.policy.working)
    dst = check_branch_name(target or default_branch(ctx))
    if override_check and not _admin(ctx):
        raise Problem(
            403,
            "Check override refused",
            "Only an administrator may promote a branch although its check fails. Fix what "
            "the check lists on the source branch, or ask an administrator to promote it.",
        )
    refusal = promotion_refusal(ctx, src, dst)
    if refusal:
        raise Problem(403, "Promotion refused", refusal)
    check = promotions.check_source(ctx, src, dst)
    hide = ctx.state.hidden_paths()
    if check is not None and check.refused and not override_check:
        raise Problem(422, "Check failed", public(check.words(), hide), check=check.as_dict())
    made = ctx.forge.open_change_request(src, dst, title or f"Promote {src} to {dst}", body)
    request = dataclasses.replace(
        made,
        url=public(made.url, hide) if web_url(ctx.config) else "",
        detail=public(made.detail, hide),
    )
    return promotions.Promotion(request, check, overridden=check is not None and check.refused)


def promotion_refusal(
    ctx: ProjectContext,
    source: str,
    target: str,
    check: promotions.PromotionCheck | None = None,
) -> str:
    """Why this caller may not promote `source` into `target` ('' when it may): where the
    promotion is applied at once, into a branch the rule makes read-only, below the admin
    role; and, given the source's `check`, when it would make the target fail and the
    caller is not an admin (who may override it, saying so)."""
    if not (ctx.forge.capabilities.change_requests or _admin(ctx)):
        why = write_refusal(ctx, target, facts(ctx, target), as_writer=True)
        if why is not None:
            return (
                f"Promoting '{source}' into '{target}' changes '{target}' at once on this "
                f"repository, and '{target}' is {_READ_ONLY_WORDS.get(why, 'read-only')}. "
                "Ask an administrator to promote it."
            )
    if check is not None and check.refused and not _admin(ctx):
        return (
            f"The check of '{source}' fails with errors that '{target}' does not have. Fix "
            f"them on '{source}', or ask an administrator to promote it although the check "
            "fails."
        )
    return ""


_READ_ONLY_WORDS = {
    ReadOnly.PROTECTED: "protected in this project's configuration",
    ReadOnly.FORGE: "protected on the forge",
    ReadOnly.NO_PUSH: "a branch the project's forge token may not push to",
}


def _admin(ctx: ProjectContext) -> bool:
    return ctx.token is None or ctx.token.role >= Role.ADMIN


def file_diffs(ctx: ProjectContext, base_sha: str, head_sha: str) -> list[patch.FileDiff]:
    """What changed between two commits, file by file, with both sides' contents."""

    def side(sha: str, path: str) -> patch.Side | None:
        data = file_at(ctx, sha, path)
        return None if data is None else patch.Side.of(data, FileMode.REGULAR)

    return [
        patch.FileDiff(path, side(base_sha, path), side(head_sha, path))
        for path in sorted(ctx.forge.changed_paths(base_sha, head_sha))
    ]


def _merged(base: bytes | None, draft: bytes, theirs: bytes | None) -> tuple[bytes, bool]:
    """A draft edited on `base`, brought onto `theirs`: the client's three-way merge, or,
    when it conflicts, the text with git's conflict markers (nothing is dropped).
    Returns (text, clean)."""
    merged = merge_text(base, draft, theirs)
    if merged is not None:
        return merged, True
    import merge3

    lines = merge3.Merge3(
        (base or b"").splitlines(True), draft.splitlines(True), (theirs or b"").splitlines(True)
    ).merge_lines(name_a=b"your draft", name_b=b"the branch")
    return b"".join(lines), False


@dataclass(frozen=True)
class Committed:
    """The file was committed."""

    result: CommitResult


@dataclass(frozen=True)
class Merged:
    """The branch had moved: the draft brought onto its head, to review before a commit."""

    text: bytes
    head: str
    clean: bool
    """False when the text holds git's conflict markers."""


@dataclass(frozen=True)
class Unchanged:
    """The draft is the file as the commit has it: nothing to commit."""


@dataclass(frozen=True)
class UpToDate:
    """The branch is still where the draft was made: nothing to pull."""


def link_refused(path: str, target: bytes) -> UnsafeInput:
    """A symbolic link is shown, never edited as text (nor turned into a regular file)."""
    shown_target = target.decode("utf-8", "replace")
    return UnsafeInput(
        f"{path} is a symbolic link to {shown_target}: links are shown here, never edited as text",
        "Open the file it points to instead",
    )


def file_mode(ctx: ProjectContext, sha: str, path: str) -> FileMode | None:
    """The file's mode at a commit (None when it has no such file)."""
    return next((e.mode for e in ctx.forge.list_tree(sha) if e.path == path), None)


def as_the_file_holds(draft: str, original: bytes | None) -> bytes:
    """A person's draft as the file would hold it: line ends as the file has them (a
    browser sends CRLF whatever the file had; a file with CRLF keeps CRLF)."""
    data = draft.replace("\r\n", "\n").encode()
    if original is not None and b"\r\n" in original:
        data = data.replace(b"\n", b"\r\n")
    return data


def commit_file(
    ctx: ProjectContext, branch: str, base: str, path: str, draft: str, message: str
) -> Committed | Merged | Unchanged:
    """Commit one text file as a person edited it on `base` (the editor, a settings form):
    it keeps its mode and its line ends, a draft that changes nothing commits nothing, a
    link or a file that is not UTF-8 is refused, a draft that adds errors to the project's
    check is refused (`editor_checks.CheckRefused`, the rule is `editor_checks.check_edit`'s),
    and a branch that moved comes back as the draft merged onto its head, never a silent
    overwrite. The rest is `commit`'s."""
    original = file_at(ctx, base, path)
    base_mode = file_mode(ctx, base, path) if original is not None else None
    if base_mode is FileMode.SYMLINK:
        raise link_refused(path, original or b"")
    if original is not None and not is_text(original):
        raise Problem(400, "Not text", f"{path} is not UTF-8 text: it cannot be edited here")
    data = as_the_file_holds(draft, original)
    if data == original:
        return Unchanged()
    editor_checks.refuse_if_worse(ctx, base, path, data)
    change = FileChange.put(path, data, base_mode or FileMode.REGULAR, base_mode)
    try:
        return Committed(commit(ctx, branch, base, [change], message or "Update"))
    except Conflict:
        head = fresh_head(ctx, branch)
        merged, clean = _merged(original, data, file_at(ctx, head, path))
        return Merged(merged, head, clean)


def pull_file(
    ctx: ProjectContext, branch: str, base: str, path: str, draft: str
) -> Merged | UpToDate:
    """A draft made on `base`, brought to the branch's head now (a three-way merge), in
    the line ends the file has, as `commit_file` would commit it."""
    head = fresh_head(ctx, branch)
    if head == base:
        return UpToDate()
    original = file_at(ctx, base, path)
    merged, clean = _merged(original, as_the_file_holds(draft, original), file_at(ctx, head, path))
    return Merged(merged, head, clean)


def page_branch(ctx: ProjectContext, branch: str | None) -> str:
    """The branch a page is about: the one given, else the working branch, else the
    default branch while the working one does not exist yet."""
    if branch:
        return branch
    try:
        ctx.forge.branch(ctx.policy.working)
    except NotFound:
        return default_branch(ctx)
    return ctx.policy.working


def meltano_yml_path(ctx: ProjectContext) -> str:
    """Where the project's `meltano.yml` is in the repository."""
    project = ctx.config.project_path
    return f"{project}/meltano.yml" if project else "meltano.yml"


class MeltanoChange(StrEnum):
    """The common changes the settings forms make without raw YAML."""

    SETTING = "setting"
    SCHEDULE = "schedule"
    ENVIRONMENT = "environment"


def change_meltano_yml(
    ctx: ProjectContext, branch: str, kind: MeltanoChange, name: str, field: str, value: str
) -> Committed | Merged | Unchanged:
    """One common change to `meltano.yml` as a minimal YAML edit, made on what the branch
    holds now and committed as `commit_file` commits an edited file, so a change that adds
    errors to the project's check is refused with them. The head's files are read once,
    through the check's kept files: the edit, the lock file and the check share them."""
    path = meltano_yml_path(ctx)
    head = fresh_head(ctx, branch)
    text = checks.files_at(ctx, head).read("meltano.yml")
    if text is None:
        msg = f"{path} is not on '{branch}'"
        raise NotFound(msg, "Create it in the editor first")
    if kind is MeltanoChange.SETTING:
        new = meltano_edits.set_setting(text, name, field, value, _locked(ctx, head, name))
        message = f"Set {name} {field} in {path} from the web UI"
    elif kind is MeltanoChange.SCHEDULE:
        new = meltano_edits.set_schedule_interval(text, name, value)
        message = f"Set the interval of schedule {name} in {path} from the web UI"
    else:
        new = meltano_edits.add_environment(text, name)
        message = f"Add the environment {name} to {path} from the web UI"
    return commit_file(ctx, branch, head, path, new.decode(), message)


def _locked(ctx: ProjectContext, head: str, plugin: str) -> list[Any]:
    """The plugin's setting definitions from its lock file, if the project has one."""
    files = checks.files_at(ctx, head)
    for path in files.paths():
        parts = path.split("/")
        if len(parts) != 3 or parts[0] != "plugins":
            continue  # plugins/<type>/<file>
        file = parts[2]
        if file == f"{plugin}.lock" or (file.startswith(f"{plugin}--") and file.endswith(".lock")):
            return meltano_edits.locked_settings(files.read(path) or b"")
    return []


def is_text(data: bytes) -> bool:
    """Whether a file is UTF-8 text, which the pages may edit."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def file_at(ctx: ProjectContext, sha: str, path: str) -> bytes | None:
    """A file's bytes at a commit (None when it has no such file)."""
    try:
        return ctx.forge.read_file(sha, path)
    except NotFound:
        return None


def meltano(ctx: ProjectContext, ref: str | None, project_path: str | None) -> dict[str, Any]:
    """The parsed project at a ref."""
    path = ctx.config.project_path if project_path is None else project_path
    return summarize(ctx.forge, resolve(ctx, ref), path)


def report_workspace(
    ctx: ProjectContext, workspace_id: str, branch: str, base_sha: str, dirty: list[str], diff: str
) -> WorkspaceView:
    """Record what a runner reports."""
    now = time.time()
    values = {
        "branch": branch,
        "base_sha": base_sha,
        "dirty": json.dumps(dirty),
        "diff": diff,
        "updated_at": now,
    }
    key = sa.and_(workspaces.c.project == ctx.config.name, workspaces.c.id == workspace_id)
    with ctx.state.engine.begin() as connection:
        if connection.execute(workspaces.update().where(key).values(**values)).rowcount == 0:
            connection.execute(
                workspaces.insert().values(project=ctx.config.name, id=workspace_id, **values)
            )
    return WorkspaceView(workspace_id, branch, base_sha, dirty, diff, now)


def list_workspaces(state: ServiceState, project: str) -> list[WorkspaceView]:
    """Every reported workspace, dirty ones first, then the freshest."""
    with state.engine.connect() as connection:
        rows = connection.execute(
            sa.select(workspaces).where(workspaces.c.project == project)
        ).all()
    views = [
        WorkspaceView(r.id, r.branch, r.base_sha, json.loads(r.dirty), r.diff or "", r.updated_at)
        for r in rows
    ]
    return sorted(views, key=lambda w: (not w.dirty, -w.updated_at))


def list_deliveries(
    state: ServiceState, project: str, status: str | None = None, limit: int = 1000
) -> list[sa.Row[Any]]:
    """Redeploy deliveries, newest first."""
    query = sa.select(deliveries).where(deliveries.c.project == project)
    if status:
        query = query.where(deliveries.c.status == status)
    with state.engine.connect() as connection:
        return list(connection.execute(query.order_by(deliveries.c.id.desc()).limit(limit)).all())


def retry_delivery(state: ServiceState, project: str, delivery_id: int) -> bool:
    """Give a dead letter another round of attempts; False when there is none to retry."""
    with state.engine.begin() as connection:
        done = connection.execute(
            deliveries.update()
            .where(
                deliveries.c.project == project,
                deliveries.c.id == delivery_id,
                deliveries.c.status == "dead",
            )
            .values(status="pending", attempts=0, next_attempt_at=time.time(), last_error=None)
        )
    return bool(done.rowcount)
