"""`meltano-forge`: the thin client's commands. Errors print one line and exit with the
code from `client.exits`; `--verbose` adds the traceback, `--json` prints one document."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from client import exits, runner, sync, workspace
from client.guard import screen
from client.manifest import Manifest
from client.policy import ReadOnlyBranch
from client.settings import Settings, SettingsError, load_settings
from providers.contract import FileChange, Forge
from providers.errors import InvalidRequest, NotFound
from providers.local import LocalForge
from providers.redaction import protect_logs, redact
from providers.registry import open_forge

log = logging.getLogger("meltano_forge")


@dataclasses.dataclass
class Context:
    """What every command gets: settings, output mode, and the forge (opened lazily)."""

    settings: Settings
    as_json: bool
    verbose: bool
    _forge: Forge | None = None

    @property
    def forge(self) -> Forge:
        if self._forge is None:
            self._forge = open_forge(self.settings.forge_config())
        return self._forge

    def emit(self, data: dict[str, Any], human: str) -> None:
        """Print a JSON document or a human line."""
        if self.as_json:
            click.echo(json.dumps(data, default=_default, sort_keys=True))
        elif human:
            click.echo(human)


def _default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


@contextmanager
def handled(ctx: Context) -> Iterator[None]:
    """Turn every known error into one line and its exit code."""
    try:
        yield
    except exits.HANDLED as exc:
        if ctx.verbose:
            log.exception("failed")
        if ctx.as_json:
            click.echo(
                json.dumps(
                    {
                        "error": str(exc),
                        "kind": type(exc).__name__,
                        "exit_code": exits.exit_code(exc),
                    }
                )
            )
        else:
            click.echo(f"meltano-forge: {exc}", err=True)
        sys.exit(exits.exit_code(exc))
    except Exception as exc:
        if ctx.verbose:
            raise
        message = redact(f"{type(exc).__name__}: {exc}")
        click.echo(
            f"meltano-forge: unexpected error ({message}). Run again with --verbose and report it.",
            err=True,
        )
        sys.exit(exits.FAILED)
    finally:
        if ctx._forge is not None:
            ctx._forge.close()


pass_ctx = click.make_pass_decorator(Context)


@click.group()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--verbose", is_flag=True, help="Log details, including tracebacks.")
@click.option("--repo", help="Repository URL (MELTANO_FORGE_REPO).")
@click.option("--branch", help="Branch (MELTANO_FORGE_BRANCH).")
@click.option(
    "--project-dir",
    type=click.Path(path_type=Path),
    help="Workspace folder (MELTANO_FORGE_PROJECT_DIR).",
)
@click.pass_context
def main(
    click_ctx: click.Context,
    as_json: bool,
    verbose: bool,
    repo: str | None,
    branch: str | None,
    project_dir: Path | None,
) -> None:
    """Git-aware Meltano projects without git: GitHub, GitLab or a local bare repository."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    for noisy in ("httpx", "httpcore", "urllib3", "github", "gitlab"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        settings = load_settings(repo=repo, branch=branch, project_dir=project_dir)
    except SettingsError as exc:
        click.echo(f"meltano-forge: {exc}", err=True)
        sys.exit(exits.USAGE)
    protect_logs(settings.token.get_secret_value() if settings.token else None)
    click_ctx.obj = Context(settings, as_json, verbose)


def _workspace(ctx: Context) -> tuple[Path, Manifest]:
    root = ctx.settings.project_dir.resolve()
    manifest = Manifest.load(root)
    if manifest is None:
        msg = f"{root} is not a meltano-forge workspace"
        raise InvalidRequest(msg, "Run `meltano-forge pull` in an empty folder first")
    return root, manifest


@main.command()
@pass_ctx
def pull(ctx: Context) -> None:
    """Materialize the branch into an empty folder, or bring a workspace up to date."""
    with handled(ctx):
        report = runner.RunReport(
            "pull", runner.policy_for(ctx.settings).target(ctx.settings.branch)
        )
        root, manifest = runner.prepare(ctx.forge, ctx.settings, report)
        what = (
            f"materialized {len(manifest.files)} files"
            if report.materialized
            else f"updated {len(report.pulled)} files"
        )
        ctx.emit(
            {
                "branch": manifest.branch,
                "sha": manifest.base_sha,
                "materialized": report.materialized,
                "updated": report.pulled,
                "created_branch": report.created_branch,
            },
            f"{manifest.branch} @ {manifest.base_sha[:12]}: {what} in {root}",
        )


@main.command()
@pass_ctx
def status(ctx: Context) -> None:
    """List uncommitted changes (and what the secret guard would hold back)."""
    with handled(ctx):
        root, manifest = _workspace(ctx)
        changes = workspace.status(root, manifest).changes
        _, held = screen(root, changes)
        lines = [f"{c.kind:9} {c.path}" for c in changes] or ["nothing to commit"]
        lines += [f"held back {h.path}: {h.reason}" for h in held]
        ctx.emit(
            {
                "branch": manifest.branch,
                "base_sha": manifest.base_sha,
                "changes": changes,
                "held_back": held,
            },
            f"On {manifest.branch} @ {manifest.base_sha[:12]}\n" + "\n".join(lines),
        )


@main.command()
@pass_ctx
def diff(ctx: Context) -> None:
    """Show uncommitted changes as a unified diff."""
    with handled(ctx):
        root, manifest = _workspace(ctx)
        out: list[str] = []
        for change in workspace.status(root, manifest).changes:
            path = manifest.repo_path(change.path)
            old = b"" if change.kind == "added" else ctx.forge.read_file(manifest.base_sha, path)
            new = b"" if change.kind == "deleted" else workspace.read_local(root, change.path)[0]
            out += difflib.unified_diff(
                old.decode(errors="replace").splitlines(True),
                new.decode(errors="replace").splitlines(True),
                f"a/{change.path}",
                f"b/{change.path}",
            )
        ctx.emit({"diff": "".join(out)}, "".join(out).rstrip("\n"))


@main.command()
@click.option("-m", "--message", default=None, help="Commit message (a default names the files).")
@pass_ctx
def commit(ctx: Context, message: str | None) -> None:
    """Commit and push the workspace's changes (refused on read-only branches)."""
    with handled(ctx):
        root, manifest = _workspace(ctx)
        policy = runner.policy_for(ctx.settings)
        if policy.is_read_only(manifest.branch):
            raise ReadOnlyBranch(manifest.branch, policy.working)
        changes = workspace.status(root, manifest).changes
        text = message or runner.commit_message(
            ["meltano-forge", "commit"],
            [c.path for c in changes],
            "manual",
            runner.author_for(ctx.settings),
        )
        outcome = sync.commit(ctx.forge, root, manifest, text, runner.author_for(ctx.settings))
        _report_commit(ctx, outcome)


def conflict_line(outcome: sync.CommitOutcome) -> str:
    """What to tell a person whose changes went to a conflict side branch."""
    return (
        f"Conflict in {', '.join(outcome.conflicts)}: your changes are saved on branch "
        f"'{outcome.side_branch}'. Open a change request with: meltano-forge promote "
        f"--source {outcome.side_branch} --target {outcome.branch}"
    )


def _report_commit(ctx: Context, outcome: sync.CommitOutcome) -> None:
    lines = [f"held back {h.path}: {h.reason}" for h in outcome.held]
    if outcome.side_branch and outcome.conflicts:
        lines.append(conflict_line(outcome))
    elif outcome.sha:
        where = outcome.side_branch or outcome.branch
        lines.append(
            f"committed {len(outcome.paths)} files to {where} as {outcome.sha[:12]}"
            + (" (rebased)" if outcome.rebased else "")
            + (f", merged {', '.join(outcome.merged)}" if outcome.merged else "")
        )
    else:
        lines.append("nothing to commit")
    ctx.emit(dataclasses.asdict(outcome), "\n".join(lines))
    if outcome.side_branch and outcome.conflicts:
        sys.exit(exits.CONFLICT)


@main.command()
@pass_ctx
def branches(ctx: Context) -> None:
    """List branches with head, protection and whether the workspace is behind."""
    with handled(ctx):
        policy = runner.policy_for(ctx.settings)
        manifest = Manifest.load(ctx.settings.project_dir.resolve())
        rows: list[dict[str, Any]] = []
        for b in ctx.forge.branches():
            behind = (
                manifest is not None and manifest.branch == b.name and manifest.base_sha != b.head
            )
            rows.append(
                {
                    "name": b.name,
                    "head": b.head,
                    "protected": b.protected or policy.is_read_only(b.name),
                    "behind": behind,
                }
            )
        human = "\n".join(
            " ".join(
                (
                    f"{r['name']:30}",
                    r["head"][:12],
                    "read-only" if r["protected"] else "",
                    "behind" if r["behind"] else "",
                )
            ).rstrip()
            for r in rows
        )
        ctx.emit({"branches": rows}, human)


@main.command()
@click.argument("branch")
@click.option("--discard", is_flag=True, help="Throw away uncommitted changes.")
@click.option("--carry", is_flag=True, help="Reapply uncommitted changes on the new branch.")
@pass_ctx
def checkout(ctx: Context, branch: str, discard: bool, carry: bool) -> None:
    """Switch the workspace to another branch."""
    with handled(ctx):
        root, manifest = _workspace(ctx)
        changes = workspace.status(root, manifest).changes
        if changes and not (discard or carry):
            msg = f"{len(changes)} uncommitted changes ({', '.join(c.path for c in changes[:5])})"
            raise InvalidRequest(msg, "Commit them, or pass --discard or --carry")
        carried = (
            {
                c.path: (None if c.kind == "deleted" else workspace.read_local(root, c.path))
                for c in changes
            }
            if carry
            else {}
        )
        target, _ = runner.policy_for(ctx.settings).ensure(ctx.forge, branch)
        staging = Path(tempfile.mkdtemp(prefix=".checkout-", dir=root.parent)) / "ws"
        new = workspace.materialize(
            ctx.forge, staging, manifest.repo, target.name, target.head, manifest.project_path
        )
        for rel in list(manifest.files):
            path = root / rel
            if path.is_symlink() or path.exists():
                path.unlink()
        for rel in new.files:
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            (staging / rel).replace(dest)  # a rename keeps size and mtime: the records hold
        for rel, value in carried.items():
            if value is None:
                (root / rel).unlink(missing_ok=True)
            else:
                workspace.write_file(root, rel, value[0], value[1])
        shutil.rmtree(staging.parent, ignore_errors=True)
        Manifest(new.repo, new.branch, new.base_sha, new.project_path, dict(new.files)).save(root)
        ctx.emit(
            {"branch": target.name, "sha": target.head, "carried": list(carried)},
            f"switched to {target.name} @ {target.head[:12]}",
        )


@main.command()
@click.option(
    "--source", default=None, help="Branch with the changes (default: the working branch)."
)
@click.option("--target", default=None, help="Branch to merge into (default: the default branch).")
@pass_ctx
def promote(ctx: Context, source: str | None, target: str | None) -> None:
    """Open (or reuse) a pull/merge request from the working branch to the default branch."""
    with handled(ctx):
        src = source or ctx.settings.working_branch
        dst = target or ctx.forge.repository().default_branch
        request = ctx.forge.open_change_request(
            src, dst, f"Promote {src} to {dst}", f"Opened by meltano-forge from `{src}`."
        )
        ctx.emit(
            dataclasses.asdict(request),
            f"{'opened' if request.created else 'already open'}: {request.url}",
        )


@main.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_ctx
def run(ctx: Context, cmd: tuple[str, ...]) -> None:
    """Materialize or pull, run CMD (e.g. `meltano run tap target`), auto-commit changes."""
    with handled(ctx):
        report = runner.run(ctx.forge, ctx.settings, cmd, json_output=ctx.as_json)
        lines = [
            f"run {report.run_id} on {report.branch} @ {report.base_sha[:12]}"
            + (" (read-only)" if report.read_only else "")
        ]
        code = report.exit_code
        if report.commit is not None:
            outcome = report.commit
            lines += [f"held back {h.path}: {h.reason}" for h in outcome.held]
            if outcome.side_branch and outcome.conflicts:
                lines.append(conflict_line(outcome))
                code = code or exits.CONFLICT
            elif outcome.side_branch and outcome.sha:
                lines.append(
                    f"the command failed; its changes are saved on '{outcome.side_branch}'"
                )
            elif outcome.sha:
                lines.append(
                    f"auto-committed {', '.join(outcome.paths)} as {outcome.sha[:12]}"
                    + (" (rebased)" if outcome.rebased else "")
                )
        ctx.emit(dataclasses.asdict(report), "\n".join(lines))
        sys.exit(code)


@main.command()
@click.option("--project-name", default="meltano-project", help="Name given to `meltano init`.")
@pass_ctx
def init(ctx: Context, project_name: str) -> None:
    """`meltano init` in a temporary folder, pushed as the first commit, plus the working branch."""
    with handled(ctx):
        config = ctx.settings.forge_config()
        if config.location.kind.value == "local":
            LocalForge.create(config)
        forge = ctx.forge
        info = forge.repository()
        if not info.empty:
            msg = f"The repository already has branches (default '{info.default_branch}')"
            raise InvalidRequest(msg, "init only fills an empty repository")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / project_name
            result = subprocess.run(  # noqa: S603 - meltano with our own arguments
                [ctx.settings.meltano_bin, "init", str(folder), "--no-usage-stats"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                last = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
                msg = f"`meltano init` failed: {last[0]}"
                raise InvalidRequest(msg, "Check that meltano is installed and on PATH")
            empty = Manifest(ctx.settings.repo, info.default_branch, "", ctx.settings.project_path)
            changes = workspace.status(folder, empty).changes
            keep, _ = screen(folder, changes)
            files = [
                FileChange.put(empty.repo_path(c.path), *workspace.read_local(folder, c.path))
                for c in keep
            ]
            first = forge.commit(
                info.default_branch,
                None,
                files,
                f"meltano init {project_name}\n\nMeltano-Forge-Run: init\n",
            )
        working = ctx.settings.working_branch
        with contextlib.suppress(InvalidRequest):
            forge.create_branch(working, first.sha)
        ctx.emit(
            {
                "default_branch": info.default_branch,
                "sha": first.sha,
                "files": [f.path for f in files],
                "working_branch": working,
            },
            f"initialised {info.default_branch} with {len(files)} files "
            f"({first.sha[:12]}) and created {working}",
        )


def add_command(command: click.Command | Callable[..., Any]) -> None:
    """Let the service package add `serve` without the client importing it."""
    assert isinstance(command, click.Command)  # noqa: S101
    main.add_command(command)


__all__ = ["NotFound", "add_command", "main"]
