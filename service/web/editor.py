"""Edit a file and commit it (push), pull the branch into a draft, and the forms that make
common Meltano changes without raw YAML. Every commit goes through `operations.commit_file`
(and so `operations.commit`, the API's own): a read-only branch is refused with the
reason, a change that adds errors to the project's check is refused with them (the draft
kept), and a commit whose base moved comes back as a merge to review, never a silent
overwrite. The editor's live check asks `editor_checks` as the commit does. The pages only
read their forms and show what the operation answered."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from client import bounded_yaml
from client.messages import summarize
from client.policy import ReadOnly, ReadOnlyBranch
from providers.contract import FileMode, TreeEntry
from providers.errors import InvalidRequest
from providers.names import is_sha
from service import editor_checks, meltano_edits, operations
from service.deps import PageContext, WebReader, WebWriter
from service.operations import Committed, MeltanoChange, Merged, Unchanged, UpToDate
from service.problems import read_only_words, shown
from service.settings import Role
from service.web.common import page_about

router = APIRouter(include_in_schema=False)
TEXT = (".yml", ".yaml", ".md", ".sql", ".txt", ".json", ".toml", ".cfg", ".ini", ".py", ".sh")
NOTHING_TO_COMMIT = "Nothing to commit: the file is as the branch has it."


class CheckForm(BaseModel):
    """The editor's live check: a file's path, its draft, and the commit it was made on
    (the branch's head when none is given)."""

    path: str
    content: str
    base: str = ""
    branch: str = ""


class DraftForm(BaseModel):
    """The editor's form: a draft of one file of `branch`, made on the commit `base`."""

    branch: str
    path: str
    base: str
    content: str
    message: str = ""


class CommitForm(DraftForm):
    """The editor's form when it commits: a message is part of it."""

    message: str


class ChangeForm(BaseModel):
    """A settings form: which plugin, schedule or environment, and the new value."""

    branch: str
    name: str
    field: str = ""
    value: str = ""


def _files(ctx: PageContext, head: str) -> list[TreeEntry]:
    """The text files the editor offers, and the symbolic links (shown as links)."""
    return [
        e for e in ctx.forge.list_tree(head) if e.path.endswith(TEXT) or e.mode is FileMode.SYMLINK
    ]


def _read_only(ctx: PageContext, branch: str) -> str:
    """Why the page may not commit to `branch` ('' when it may): the branch policy's one
    rule, with the forge's facts and the caller's role, as the API and the runner ask it."""
    why = operations.write_refusal(ctx, branch, operations.facts(ctx, branch))
    if why is None and not ctx.session.may(Role.WRITE):
        why = ReadOnly.ROLE
    return read_only_words(ReadOnlyBranch(branch, ctx.policy.working, why)) if why else ""


def _branch_page(
    request: Request, ctx: PageContext, template: str, branch: str, **data: Any
) -> Response:
    """A page about one branch of the project, with the branch picker."""
    branches = [b.name for b in ctx.forge.branches()]
    return page_about(request, ctx, template, branch=branch, branches=branches, **data)


def _editor(
    request: Request,
    ctx: PageContext,
    branch: str,
    path: str,
    *,
    content: bytes | None = None,
    base: str | None = None,
    message: str = "",
    notice: str = "",
    error: str = "",
    conflicts: bool = False,
    moved: bool = False,
    refused: editor_checks.EditCheck | None = None,
) -> Response:
    head = base or operations.resolve(ctx, branch)
    pristine = operations.file_at(ctx, head, path) or b""
    tree = _files(ctx, head)
    link = next((e for e in tree if e.path == path and e.mode is FileMode.SYMLINK), None)
    posted = content is not None and link is None
    not_text = not operations.is_text(pristine)
    if content is None or link is not None:
        content = pristine
    return _branch_page(
        request,
        ctx,
        "editor.html",
        branch,
        working=ctx.policy.working,
        path=path,
        base=head,
        content=content.decode("utf-8", "replace"),
        pristine=pristine.decode("utf-8", "replace"),
        posted=posted,
        message=message or f"Update {summarize([path])} from the web UI",
        files=tree,
        read_only=(
            str(operations.link_refused(path, pristine))
            if link is not None
            else f"{path} is not UTF-8 text, so it cannot be edited here."
            if not_text
            else _read_only(ctx, branch)
        ),
        not_text=not_text,
        link=pristine.decode("utf-8", "replace") if link is not None else None,
        notice=notice,
        error=error,
        conflicts=conflicts,
        moved=moved,
        findings=refused.as_dict() if refused else None,
        names=editor_checks.names(ctx, head) if link is None and not not_text else {},
    )


@router.get("/projects/{project}/edit", response_class=HTMLResponse)
def edit(
    request: Request, ctx: WebReader, branch: str | None = None, path: str | None = None
) -> Response:
    """The editor: a file of a branch, with its commit form."""
    name = operations.page_branch(ctx, branch)
    return _editor(request, ctx, name, path or operations.meltano_yml_path(ctx))


def _problem(ctx: PageContext, content: str, path: str) -> bounded_yaml.YamlRefused | None:
    """Why a YAML file other than `meltano.yml` does not load (None when it does): an
    include file's error is the check's too, and any other YAML file must load as well."""
    if path.endswith((".yml", ".yaml")) and path != operations.meltano_yml_path(ctx):
        try:
            bounded_yaml.load(content.encode(), path)
        except bounded_yaml.YamlRefused as exc:
            return exc
    return None


@router.post("/projects/{project}/edit/check")
def check(ctx: WebReader, form: Annotated[CheckForm, Form()]) -> JSONResponse:
    """The editor's live check, as it types: the project's check with the draft laid over
    the commit it was made on (`editor_checks.check_edit`, the commit's own rule), as JSON:
    `ok`, `refused` (whether a commit would be refused) and the errors and warnings, each
    with its file, line, column, rule and message, `here` when it is in the edited file."""
    if form.base and not is_sha(form.base):
        return JSONResponse({"detail": "base is not a commit SHA. Reload the page."}, 400)
    sha = form.base or operations.resolve(ctx, form.branch or None)
    data = operations.as_the_file_holds(form.content, None)
    answer = editor_checks.check_edit(ctx, sha, form.path, data).as_dict()
    problem = _problem(ctx, form.content, form.path)
    if problem and not any(e["here"] for e in answer["errors"]):
        answer["ok"], answer["refused"] = False, True
        answer["errors"].insert(0, _yaml_finding(form.path, problem))
    return JSONResponse(answer)


def _yaml_finding(path: str, problem: bounded_yaml.YamlRefused) -> dict[str, Any]:
    """A YAML file's own error, as the check's findings read."""
    return {
        "rule": "yaml",
        "severity": "error",
        "file": path,
        "line": problem.line,
        "column": problem.column,
        "message": str(problem),
        "here": True,
        "new": True,
    }


@router.post("/projects/{project}/edit/commit", response_class=HTMLResponse)
def commit(request: Request, ctx: WebWriter, form: Annotated[CommitForm, Form()]) -> Response:
    """Commit the edited file on its base; a moved branch comes back as a merge to review."""

    def again(
        *,
        error: str = "",
        notice: str = "",
        merged: Merged | None = None,
        refused: editor_checks.EditCheck | None = None,
    ) -> Response:
        """The editor once more, holding the draft (what went wrong, or the merge)."""
        return _editor(
            request,
            ctx,
            form.branch,
            form.path,
            content=merged.text if merged else form.content.replace("\r\n", "\n").encode(),
            base=merged.head if merged else form.base,
            message=form.message,
            error=error,
            notice=notice,
            moved=merged is not None,
            conflicts=merged is not None and not merged.clean,
            refused=refused,
        )

    problem = _problem(ctx, form.content, form.path)
    if problem:
        return again(error=str(problem))
    try:
        done = operations.commit_file(
            ctx, form.branch, form.base, form.path, form.content, form.message
        )
    except ReadOnlyBranch as exc:
        return again(error=read_only_words(exc))
    except editor_checks.CheckRefused as exc:
        return again(error=shown(exc, ctx.state.hidden_paths()), refused=exc.check)
    except InvalidRequest as exc:  # a link, a secret, a bad path or name
        return again(error=shown(exc, ctx.state.hidden_paths()))
    if isinstance(done, Unchanged):
        return again(notice=NOTHING_TO_COMMIT)
    if isinstance(done, Merged):
        return again(merged=done)
    # The project page clears the browser's draft of this file: it is committed.
    query = urlencode({"committed": done.result.sha, "draft": f"{form.branch}:{form.path}"})
    return RedirectResponse(f"/projects/{ctx.config.name}?{query}", status_code=303)


@router.post("/projects/{project}/edit/pull", response_class=HTMLResponse)
def pull(request: Request, ctx: WebReader, form: Annotated[DraftForm, Form()]) -> Response:
    """Bring the view to the branch head, merging the head into the draft three ways."""
    pulled = operations.pull_file(ctx, form.branch, form.base, form.path, form.content)
    if isinstance(pulled, UpToDate):
        return _editor(
            request,
            ctx,
            form.branch,
            form.path,
            content=form.content.replace("\r\n", "\n").encode(),
            base=form.base,
            message=form.message,
            notice="Already up to date with the branch.",
        )
    return _editor(
        request,
        ctx,
        form.branch,
        form.path,
        content=pulled.text,
        base=pulled.head,
        message=form.message,
        notice=f"Pulled {form.branch} @ {pulled.head[:12]} into your draft.",
        conflicts=not pulled.clean,
    )


def _settings_page(
    request: Request,
    ctx: PageContext,
    branch: str,
    error: str = "",
    notice: str = "",
    refused: editor_checks.EditCheck | None = None,
) -> Response:
    head = operations.resolve(ctx, branch)
    text = operations.file_at(ctx, head, operations.meltano_yml_path(ctx)) or b""
    return _branch_page(
        request,
        ctx,
        "settings.html",
        branch,
        choices=meltano_edits.choices(text),
        read_only=_read_only(ctx, branch),
        error=error,
        notice=notice,
        findings=refused.as_dict() if refused else None,
    )


@router.get("/projects/{project}/settings", response_class=HTMLResponse)
def forms(request: Request, ctx: WebReader, branch: str | None = None) -> Response:
    """Forms for common changes: a setting's value, a schedule's interval, an environment."""
    return _settings_page(request, ctx, operations.page_branch(ctx, branch))


def _change_kind(kind: str) -> MeltanoChange:
    """The change a settings form's address names."""
    try:
        return MeltanoChange(kind)
    except ValueError:
        raise InvalidRequest(f"Unknown change '{kind}'") from None


@router.post("/projects/{project}/settings/{kind}", response_class=HTMLResponse)
def change(
    request: Request, ctx: WebWriter, kind: str, form: Annotated[ChangeForm, Form()]
) -> Response:
    """Make one common change as a minimal YAML edit, and commit it."""
    branch = form.branch
    try:
        done = operations.change_meltano_yml(
            ctx, branch, _change_kind(kind), form.name, form.field, form.value
        )
    except ReadOnlyBranch as exc:
        return _settings_page(request, ctx, branch, read_only_words(exc))
    except editor_checks.CheckRefused as exc:
        words = shown(exc, ctx.state.hidden_paths())
        return _settings_page(request, ctx, branch, words, refused=exc.check)
    except InvalidRequest as exc:
        return _settings_page(request, ctx, branch, shown(exc, ctx.state.hidden_paths()))
    if isinstance(done, Merged):
        moved = f"'{branch}' moved while the change was made; nothing was committed. Try again."
        return _settings_page(request, ctx, branch, moved)
    if isinstance(done, Unchanged):
        nothing = f"Nothing to commit: {operations.meltano_yml_path(ctx)} already says so."
        return _settings_page(request, ctx, branch, notice=nothing)
    assert isinstance(done, Committed)  # noqa: S101 - the three answers
    return RedirectResponse(
        f"/projects/{ctx.config.name}?{urlencode({'committed': done.result.sha})}", status_code=303
    )
