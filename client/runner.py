"""The container bootloader: `meltano-forge run -- CMD...`.

Resolve or create the branch, materialize or pull, `meltano install` only when the plugin
set changed, run CMD read-only on protected branches, then commit what it changed (or
rescue it to a side branch when CMD failed). CMD's exit code wins.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import yaml

from client import sync, workspace
from client.manifest import STATE_DIR, Manifest
from client.policy import BranchPolicy
from client.progress import Progress
from client.settings import CommitOnFailure, InstallPolicy, Settings
from providers.contract import Author, Forge, WorkspaceReporter
from providers.errors import ProviderError

log = logging.getLogger(__name__)

# Meltano commands that run pipelines or change the project: pull before them.
PULL_BEFORE = {
    "run",
    "elt",
    "el",
    "invoke",
    "job",
    "config",
    "add",
    "remove",
    "schedule",
    "environment",
    "install",
    "lock",
    "state",
}
INSTALL_KEY_FILE = "install.json"


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
    read_only: bool = False
    exit_code: int = 0
    commit: sync.CommitOutcome | None = None


def policy_for(settings: Settings) -> BranchPolicy:
    """The branch policy the settings describe."""
    return BranchPolicy(
        settings.working_branch,
        settings.protected_globs,
        settings.read_only,
        settings.user,
        settings.personal_branch_template,
    )


def author_for(settings: Settings) -> Author | None:
    """The configured commit author, if any."""
    if settings.author_name and settings.author_email:
        return Author(settings.author_name, settings.author_email)
    return None


def install_key(root: Path) -> str:
    """Hash of everything that decides the plugin set: meltano.yml, its include_paths,
    plugins/**/*.lock and requirements files."""
    digest = hashlib.sha256()
    files = {"meltano.yml"}
    meltano_yml = root / "meltano.yml"
    if meltano_yml.exists():
        try:
            data = yaml.safe_load(meltano_yml.read_text()) or {}
        except yaml.YAMLError:
            data = {}
        for pattern in data.get("include_paths", []) if isinstance(data, dict) else []:
            files.update(
                os.path.relpath(p, root) for p in glob.glob(str(root / pattern), recursive=True)
            )
    files.update(
        os.path.relpath(p, root) for p in glob.glob(str(root / "plugins/**/*.lock"), recursive=True)
    )
    files.update(os.path.relpath(p, root) for p in glob.glob(str(root / "requirements*.txt")))
    for rel in sorted(files):
        path = root / rel
        if path.is_file():
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def needs_install(root: Path, policy: InstallPolicy) -> bool:
    """Whether `meltano install` should run before the command."""
    if policy is InstallPolicy.NEVER:
        return False
    if policy is InstallPolicy.ALWAYS:
        return True
    stored = root / STATE_DIR / INSTALL_KEY_FILE
    if not stored.exists():
        return True
    return bool(json.loads(stored.read_text()).get("key") != install_key(root))


def remember_install(root: Path) -> None:
    """Record the plugin set that was installed."""
    (root / STATE_DIR).mkdir(exist_ok=True)
    (root / STATE_DIR / INSTALL_KEY_FILE).write_text(json.dumps({"key": install_key(root)}))


def run_child(
    cmd: Sequence[str], cwd: Path, env: dict[str, str], *, quiet_stdout: bool = False
) -> int:
    """Run CMD streaming its output (to stderr when stdout is reserved for `--json`),
    forwarding SIGTERM and SIGINT; return its exit code."""
    try:
        child = subprocess.Popen(  # noqa: S603 - the user's own command
            list(cmd), cwd=cwd, env=env, stdout=sys.stderr if quiet_stdout else None
        )
    except FileNotFoundError:
        log.error("command not found: %s", cmd[0])  # noqa: TRY400 - one clear line, no traceback
        return 127
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, forward)
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def commit_message(
    cmd: Sequence[str], paths: Sequence[str], run_id: str, author: Author | None
) -> str:
    """`meltano config set ...` headline, the changed paths, and trailers."""
    shown = " ".join(cmd)
    headline = shown if len(shown) <= 72 else shown[:69] + "..."
    body = "Changed:\n" + "\n".join(f"- {p}" for p in paths)
    trailers = f"Meltano-Forge-Run: {run_id}"
    if author:
        trailers += f"\nCo-authored-by: {author.name} <{author.email}>"
    return f"{headline}\n\n{body}\n\n{trailers}\n"


def prepare(forge: Forge, settings: Settings, report: RunReport) -> tuple[Path, Manifest]:
    """Resolve or create the branch, then materialize or pull the workspace."""
    policy = policy_for(settings)
    root = settings.project_dir.resolve()
    branch_name = report.branch
    manifest = Manifest.load(root)
    if manifest is not None and manifest.branch == branch_name and manifest.repo == settings.repo:
        report.pulled = sync.pull(forge, root, manifest)
        report.base_sha = manifest.base_sha
        return root, manifest
    branch, report.created_branch = policy.ensure(forge, branch_name)
    progress = Progress(f"download and extract {branch.name}")
    manifest = workspace.materialize(
        forge, root, settings.repo, branch.name, branch.head, settings.project_path, progress
    )
    progress.done(manifest.base_sha[:12])
    report.materialized, report.base_sha = True, manifest.base_sha
    return root, manifest


def report_workspace(forge: Forge, settings: Settings, root: Path, manifest: Manifest) -> None:
    """Tell the service (in service mode) what this workspace holds uncommitted."""
    if not isinstance(forge, WorkspaceReporter):
        return
    manifest = Manifest.load(root) or manifest
    dirty = [c.path for c in workspace.status(root, manifest).changes]
    default_id = f"{socket.gethostname()}-{hashlib.sha256(str(root).encode()).hexdigest()[:8]}"
    try:
        forge.report_workspace(
            settings.workspace_id or default_id, manifest.branch, manifest.base_sha, dirty
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
    policy = policy_for(settings)
    report = RunReport(uuid.uuid4().hex[:12], policy.target(settings.branch))
    report.read_only = policy.is_read_only(report.branch)
    root, manifest = prepare(forge, settings, report)
    try:
        _execute(forge, settings, cmd, env, report, root, manifest, json_output)
    finally:
        report_workspace(forge, settings, root, manifest)
    return report


def _execute(
    forge: Forge,
    settings: Settings,
    cmd: Sequence[str],
    env: dict[str, str] | None,
    report: RunReport,
    root: Path,
    manifest: Manifest,
    json_output: bool,
) -> None:
    """Install if needed, run CMD, then commit or rescue what it changed."""
    child_env = dict(os.environ if env is None else env)
    if report.read_only:
        child_env["MELTANO_PROJECT_READONLY"] = "true"
    meltano = settings.meltano_bin
    if needs_install(root, settings.install):
        log.info("installing plugins: the plugin set changed since the last install")
        code = run_child([meltano, "install"], root, child_env, quiet_stdout=json_output)
        if code != 0:
            report.exit_code = code
            return
        remember_install(root)
        report.installed = True
    report.exit_code = run_child(cmd, root, child_env, quiet_stdout=json_output)
    if report.read_only or not settings.auto_commit:
        return
    failed = report.exit_code != 0
    if failed and settings.commit_on_failure is CommitOnFailure.NEVER:
        return
    author = author_for(settings)
    local = workspace.status(root, manifest).changes
    message = commit_message(cmd, [c.path for c in local], report.run_id, author)
    if not local:
        return
    if failed and settings.commit_on_failure is CommitOnFailure.RESCUE:
        report.commit = rescue(
            forge, root, manifest, message, author, settings, report.run_id, local
        )
        return
    report.commit = sync.commit(
        forge,
        root,
        manifest,
        message,
        author,
        secret_globs=_globs(settings.secret_globs),
        allowed=_globs(settings.allow_secrets),
        local=local,
    )


def rescue(
    forge: Forge,
    root: Path,
    manifest: Manifest,
    message: str,
    author: Author | None,
    settings: Settings,
    run_id: str,
    local: list[workspace.LocalChange] | None = None,
) -> sync.CommitOutcome:
    """Push a failed run's changes to `{branch}-rescue-{run id}`; the branch is untouched."""
    name = f"{manifest.branch}-rescue-{run_id}"
    side = Manifest(
        manifest.repo, name, manifest.base_sha, manifest.project_path, dict(manifest.files)
    )
    forge.create_branch(name, manifest.base_sha)
    outcome = sync.commit(
        forge,
        root,
        side,
        message,
        author,
        secret_globs=_globs(settings.secret_globs),
        allowed=_globs(settings.allow_secrets),
        local=local,
    )
    outcome.side_branch = name
    manifest.save(root)  # the workspace stays on its branch; the changes stay uncommitted there
    return outcome


def _globs(value: str) -> list[str]:
    return [g.strip() for g in value.split(",") if g.strip()]
