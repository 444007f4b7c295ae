"""The container bootloader: `meltano-forge run -- CMD...`.

Resolve the branch and whether this token may write it, materialize or pull (creating a
missing branch only once its snapshot is safely staged), `meltano install` only when the
plugin set changed, run CMD (read-only where the settings, the forge's protection or the
token's permissions say so), then commit what it changed once the project check lets it
land (`client.check_gate`). A failed command's changes, and changes the check refuses, go
to a rescue branch; a change that cannot be pushed at all goes to a local rescue bundle. In
every case the workspace returns to the branch head, so no later run commits it again.
CMD's exit code wins (9 when it succeeded but the check refused what it wrote).
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from client import exits, messages, patch, sync
from client.check_gate import CheckRefused, Verdict
from client.install import finish_uploads, prepare_plugins
from client.manifest import STATE_DIR
from client.plugin_envs import Action, PluginReport
from client.plugins import read_project_yaml
from client.policy import BranchPolicy, ReadOnlyBranch
from client.progress import Progress
from client.rescue import write_bundle
from client.settings import ENV_PREFIX, CommitOnFailure, Settings
from client.subprocesses import run_child
from client.workspace import LocalChange, Workspace
from providers.contract import Branch, Forge, WorkspaceReporter
from providers.errors import AlreadyExists, InvalidRequest, NotFound, ProviderError

log = logging.getLogger(__name__)

REPORTED_DIFF = 200_000
"""Characters of a dirty workspace's patch the service is told (its limit is 256 KiB)."""


@dataclass
class RunReport:
    """What a run did, for `--json` and the log."""

    run_id: str
    branch: str
    base_sha: str = ""
    created_branch: bool = False
    materialized: bool = False
    pulled: list[str] = field(default_factory=list)
    installed: bool = False
    """Whether any plugin was installed."""
    plugins: list[PluginReport] = field(default_factory=list)
    """Each plugin's environment: reused, restored or installed, why, and how long."""
    ready_seconds: float = 0.0
    """Seconds from the start of the run until the command started."""
    read_only: bool = False
    read_only_reason: str = ""
    exit_code: int = 0
    commit: sync.CommitOutcome | None = None
    bundle: str | None = None
    verdict: Verdict | None = None
    """The check's verdict on changes it refused (they went to a rescue branch); `commit`
    holds it as data (`commit.check`) for `--json`."""


def policy_for(settings: Settings) -> BranchPolicy:
    """The branch policy the settings describe."""
    return BranchPolicy(
        settings.working_branch,
        settings.protected_globs,
        settings.read_only,
        settings.user,
        settings.personal_branch_template,
    )


def project_readonly(root: Path) -> bool:
    """Whether `meltano.yml` itself deploys the project read-only (`project_readonly: true`)."""
    return read_project_yaml(root, "meltano.yml").get("project_readonly") is True


MIN_TOKEN_TO_SEARCH = 8
"""A token this long is looked for inside values too; a shorter one only as a whole value,
so that a toy token such as `x` does not empty the environment."""


def child_environment(
    environ: dict[str, str], read_only: bool, settings: Settings
) -> dict[str, str]:
    """CMD's environment: ours without any credential — Meltano and its plugins never see
    the forge or service token, whatever holds it: no `MELTANO_FORGE_*` (the token, its
    file, the service's secrets), not the variable `meltano.yml`'s `token_env` names, and no
    variable whose value holds the token in use (a copy under another name, or inside a URL)."""
    token = settings.token.get_secret_value() if settings.token else ""

    def holds_credential(name: str, value: str) -> bool:
        if name.startswith(ENV_PREFIX) or name == settings.token_variable:
            return True
        if not token:
            return False
        return token in value if len(token) >= MIN_TOKEN_TO_SEARCH else value == token

    env = {k: v for k, v in environ.items() if not holds_credential(k, v)}
    if read_only:
        env["MELTANO_PROJECT_READONLY"] = "true"
    return env


def read_only_reason(policy: BranchPolicy, branch: Branch) -> ReadOnlyBranch | None:
    """Why the run may not write `branch`, by the policy's one read-only rule."""
    why = policy.write_refusal(branch.name, branch)
    return ReadOnlyBranch(branch.name, policy.working, why) if why else None


def prepare(forge: Forge, settings: Settings, report: RunReport) -> Workspace:
    """Resolve the branch (and what this token may do there), then materialize or pull.

    A missing branch is created from its source only after the source's snapshot is
    staged and checked, so a corrupt or hostile snapshot creates nothing."""
    policy = policy_for(settings)
    ws = Workspace.open(settings.project_dir, forge, settings.limits, settings.git_remote)
    if ws.materialized and ws.manifest.repo != settings.repo:
        msg = f"{ws.root} holds a workspace of another repository ({ws.manifest.repo})"
        raise InvalidRequest(msg, "Use an empty folder (MELTANO_FORGE_PROJECT_DIR) for this one")
    name = report.branch
    try:
        branch = forge.branch(name)
        create_from = None
    except NotFound:
        source = policy.source(forge, name)
        create_from = source.head
        branch = Branch(name, source.head)
    current = ws.manifest if ws.materialized else None
    up_to_date = current is not None and current.branch == name and current.base_sha == branch.head
    if not up_to_date:
        progress = Progress(f"download and extract {name}")
        created: list[Branch] = []
        update = ws.update(
            name,
            branch.head,
            repo=settings.repo,
            project_path=settings.project_path,
            progress=progress,
            before_publish=(lambda: created.append(_create(forge, name, branch.head)))
            if create_from
            else None,
        )
        progress.done(update.sha[:12])
        report.materialized = current is None
        report.pulled = [] if current is None else update.written + update.deleted
        if created:
            report.created_branch = True
            branch = forge.branch(name)  # the forge's facts about the new branch
    report.base_sha = ws.manifest.base_sha
    refusal = read_only_reason(policy, branch)
    if refusal is not None:
        report.read_only, report.read_only_reason = True, refusal.why.value
        log.info("running read-only: %s", refusal.reason)
    return ws


def _create(forge: Forge, name: str, head: str) -> Branch:
    try:
        return forge.create_branch(name, head)
    except AlreadyExists:  # another runner made it at the same moment
        existing = forge.branch(name)
        if existing.head != head:
            msg = f"The branch '{name}' was created by someone else while this run started"
            raise InvalidRequest(msg, "Run again; it will use their branch") from None
        return existing


def report_workspace(forge: Forge, settings: Settings, ws: Workspace) -> None:
    """Tell the service (in service mode) what this workspace holds uncommitted."""
    if not isinstance(forge, WorkspaceReporter) or not ws.materialized:
        return
    manifest = ws.manifest
    changes = ws.status().changes
    default_id = f"{socket.gethostname()}-{hashlib.sha256(str(ws.root).encode()).hexdigest()[:8]}"
    try:
        diff = patch.render(ws.diffs(changes)).decode("utf-8", "replace") if changes else ""
        if len(diff) > REPORTED_DIFF:
            diff = diff[:REPORTED_DIFF] + "\n… (cut; the whole patch is in the workspace)\n"
        forge.report_workspace(
            settings.workspace_id or default_id,
            manifest.branch,
            manifest.base_sha,
            [c.path for c in changes],
            diff,
        )
    except ProviderError as exc:
        log.warning("could not report the workspace to the service: %s", exc)


def run(
    forge: Forge,
    settings: Settings,
    cmd: Sequence[str],
    env: dict[str, str] | None = None,
    *,
    json_output: bool = False,
) -> RunReport:
    """The whole runner lifecycle; see the module docstring."""
    started = time.monotonic()
    policy = policy_for(settings)
    report = RunReport(uuid.uuid4().hex[:12], policy.target(settings.branch))
    ws = prepare(forge, settings, report)
    try:
        _execute(ws, settings, cmd, env, report, json_output, started)
    finally:
        finish_uploads()  # plugin environments uploaded to the service while CMD ran
        report_workspace(forge, settings, ws)
    return report


def _execute(
    ws: Workspace,
    settings: Settings,
    cmd: Sequence[str],
    env: dict[str, str] | None,
    report: RunReport,
    json_output: bool,
    started: float,
) -> None:
    """Install if needed, run CMD, then commit, rescue or bundle what it changed."""
    child_env = child_environment(
        dict(os.environ if env is None else env), report.read_only, settings
    )
    root = ws.root
    code, report.plugins = prepare_plugins(
        root, settings, child_env, quiet_stdout=json_output, remote=ws.forge
    )
    report.installed = any(p.action is Action.INSTALLED for p in report.plugins)
    if code != 0:
        report.exit_code = code
        return
    if not report.read_only and project_readonly(root):
        log.info(
            "meltano.yml sets project_readonly: true, so Meltano will not change project files "
            "here and nothing will be committed"
        )
    report.ready_seconds = round(time.monotonic() - started, 2)
    log.info("starting the command %.1fs after the run began", report.ready_seconds)
    report.exit_code = run_child(cmd, root, child_env, quiet_stdout=json_output)
    if not settings.auto_commit:
        return
    failed = report.exit_code != 0
    if failed and settings.commit_on_failure is CommitOnFailure.NEVER:
        return
    local = ws.status().changes
    if not local:
        return
    message = messages.for_run(cmd, [c.path for c in local], report.run_id, settings.author)
    if report.read_only:
        _bundle(
            ws,
            settings,
            local,
            report,
            message,
            f"the run was read-only ({report.read_only_reason})",
        )
        return
    try:
        if failed and settings.commit_on_failure is CommitOnFailure.RESCUE:
            report.commit = rescue(ws, settings, report.run_id, message, local)
        else:
            report.commit = _checked_commit(ws, settings, local, report, message)
    except sync.UNPUSHABLE as exc:
        _bundle(ws, settings, local, report, message, str(exc))


def _checked_commit(
    ws: Workspace,
    settings: Settings,
    local: list[LocalChange],
    report: RunReport,
    message: str,
) -> sync.CommitOutcome:
    """Commit what the command changed once the check lets it land; what it refuses goes to
    a rescue branch, never to the working branch. A passing change costs no forge request
    (the base is asked only when the result has errors, to see whether it had them too)."""
    try:
        return sync.commit(
            ws,
            message,
            settings.author,
            secret_globs=settings.secret_glob_list,
            allowed=settings.allowed_secret_globs,
            local=local,
            check=True,
            fetch_base=False,
        )
    except CheckRefused as refused:
        verdict = refused.verdict
    outcome = rescue(ws, settings, report.run_id, message, local, reason="the check failed")
    outcome.check, outcome.check_failed = verdict.as_dict(), True
    report.verdict = verdict
    log.warning(
        "the check fails on what the command left (%s); the changes go to a rescue branch",
        messages.plural(len(verdict.new_errors), "new error"),
    )
    if report.exit_code == 0:
        report.exit_code = exits.CHECK_FAILED
    return outcome


def _bundle(
    ws: Workspace,
    settings: Settings,
    local: list[LocalChange],
    report: RunReport,
    message: str,
    reason: str,
) -> None:
    folder = settings.rescue_dir or ws.root / STATE_DIR / "rescue"
    path = write_bundle(
        ws,
        local,
        folder,
        run_id=report.run_id,
        reason=reason,
        message=message,
        author=settings.author,
    )
    report.bundle = str(path)
    log.warning(
        "the changes could not be pushed (%s); they are saved in %s (see README.txt there)",
        reason,
        path,
    )
    if report.exit_code == 0:
        report.exit_code = exits.BUNDLED


def rescue(
    ws: Workspace,
    settings: Settings,
    run_id: str,
    message: str,
    local: list[LocalChange],
    *,
    reason: str = "command failed",
) -> sync.CommitOutcome:
    """Push a failed run's changes (or changes the check refused) to
    `{branch}-rescue-{run id}`; the branch is untouched and the workspace returns to its
    head."""
    manifest = ws.manifest
    screened = sync.screen_changes(
        ws, local, secret_globs=settings.secret_glob_list, allowed=settings.allowed_secret_globs
    )
    outcome = screened.outcome(manifest.branch)
    if not screened.keep:
        return outcome
    side = sync.side_branch(
        ws,
        screened,
        message,
        settings.author,
        (),
        name=f"{manifest.branch}-rescue-{run_id}",
        reason=reason,
    )
    return sync.saved(outcome, side)
