"""Edit a file and commit it (push), pull the branch into a draft, and the forms that make
common Meltano changes without raw YAML. Every commit goes through `operations.commit`,
the API's own: a read-only branch is refused with the reason, and a commit whose base
moved comes back as a merge to review, never a silent overwrite."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from client import bounded_yaml
from client.messages import summarize
from client.policy import ReadOnly, ReadOnlyBranch
from providers.contract import FileChange, FileMode, TreeEntry
from providers.errors import Conflict, InvalidRequest, NotFound, UnsafeInput
from service import meltano_edits, operations
from service.deps import ProjectContext, StateDep
from service.problems import Problem, read_only_words, shown
from service.settings import Role
from service.web.common import Signed, check_csrf, page, project_for

router = APIRouter(include_in_schema=False)
TEXT = (".yml", ".yaml", ".md", ".sql", ".txt", ".json", ".toml", ".cfg", ".ini", ".py", ".sh")


def _branch(ctx: ProjectContext, branch: str | None) -> str:
    """The branch a page is about: given, else the working branch, else the default one."""
    if branch:
        return branch
    try:
        ctx.forge.branch(ctx.policy.working)
    except NotFound:
        return operations.default_branch(ctx)
    return ctx.policy.working


def _files(ctx: ProjectContext, head: str) -> list[TreeEntry]:
    """The text files the editor offers, and the symbolic links (shown as links)."""
    return [
        e for e in ctx.forge.list_tree(head) if e.path.endswith(TEXT) or e.mode is FileMode.SYMLINK
    ]


def _mode(ctx: ProjectContext, sha: str, path: str) -> FileMode | None:
    """The file's mode at a commit (None when it has no such file)."""
    return next((e.mode for e in ctx.forge.list_tree(sha) if e.path == path), None)


def _read_only(ctx: ProjectContext, branch: str, writer: bool) -> str:
    """Why the page may not commit to `branch` ('' when it may): the branch policy's one
    rule, with the forge's facts and the caller's role, as the API and the runner ask it."""
    why = operations.write_refusal(ctx, branch, operations.facts(ctx, branch))
    if why is None and not writer:
        why = ReadOnly.ROLE
    return read_only_words(ReadOnlyBranch(branch, ctx.policy.working, why)) if why else ""


def _link_words(path: str, target: bytes) -> str:
    shown_target = target.decode("utf-8", "replace")
    return (
        f"{path} is a symbolic link to {shown_target}: links are shown here, never edited as "
        "text. Open the file it points to instead."
    )


def _editor(
    request: Request,
    ctx: ProjectContext,
    session: Any,
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
) -> Response:
    head = base or operations.resolve(ctx, branch)
    try:
        pristine = ctx.forge.read_file(head, path)
    except NotFound:
        pristine = b""
    tree = _files(ctx, head)
    link = next((e for e in tree if e.path == path and e.mode is FileMode.SYMLINK), None)
    posted = content is not None and link is None
    not_text = not _utf8(pristine)
    if content is None or link is not None:
        content = pristine
    return page(
        request,
        "editor.html",
        session,
        project=ctx.config,
        branch=branch,
        branches=[b.name for b in ctx.forge.branches()],
        working=ctx.policy.working,
        path=path,
        base=head,
        content=content.decode("utf-8", "replace"),
        pristine=pristine.decode("utf-8", "replace"),
        posted=posted,
        message=message or f"Update {summarize([path])} from the web UI",
        files=tree,
        read_only=(
            _link_words(path, pristine)
            if link is not None
            else f"{path} is not UTF-8 text, so it cannot be edited here."
            if not_text
            else _read_only(ctx, branch, session.may(Role.WRITE))
        ),
        not_text=not_text,
        link=pristine.decode("utf-8", "replace") if link is not None else None,
        notice=notice,
        error=error,
        conflicts=conflicts,
        moved=moved,
    )


@router.get("/projects/{project}/edit", response_class=HTMLResponse)
def edit(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    branch: str | None = None,
    path: str | None = None,
) -> Response:
    """The editor: a file of a branch, with its commit form."""
    ctx = project_for(state, session, project, Role.READ)
    name = _branch(ctx, branch)
    return _editor(request, ctx, session, name, path or _meltano_yml(ctx))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _problem(content: bytes, path: str) -> str:
    if path.endswith((".yml", ".yaml")):
        try:
            bounded_yaml.load(content, path)
        except bounded_yaml.YamlRefused as exc:
            return str(exc)
    return ""


@router.post("/projects/{project}/edit/validate")
def validate(
    state: StateDep,
    session: Signed,
    project: str,
    path: Annotated[str, Form()],
    content: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
) -> JSONResponse:
    """The editor's live check (scripts only; the commit checks again)."""
    check_csrf(session, csrf)
    project_for(state, session, project, Role.READ)
    problem = _problem(content.encode(), path)
    return JSONResponse({"ok": not problem, "problem": problem})


@router.post("/projects/{project}/edit/commit", response_class=HTMLResponse)
def commit(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    branch: Annotated[str, Form()],
    path: Annotated[str, Form()],
    base: Annotated[str, Form()],
    content: Annotated[str, Form()],
    message: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
) -> Response:
    """Commit the edited file on its base; a moved branch comes back as a merge to review."""
    check_csrf(session, csrf)
    ctx = project_for(state, session, project, Role.WRITE)
    data = content.replace("\r\n", "\n").encode()

    def again(**shown: Any) -> Response:
        """The editor once more, holding the draft (what went wrong, or the merge)."""
        return _editor(
            request,
            ctx,
            session,
            branch,
            path,
            **{"content": data, "base": base, **shown},
            message=message,
        )

    problem = _problem(data, path)
    if problem:
        return again(error=problem)
    try:
        original = ctx.forge.read_file(base, path)
        base_mode = _mode(ctx, base, path)
    except NotFound:
        original, base_mode = None, None
    mode = base_mode or FileMode.REGULAR
    if mode is FileMode.SYMLINK:  # a link is never rewritten as text (nor into a regular file)
        return again(error=_link_words(path, original or b""))
    if original is not None and not _utf8(original):
        raise Problem(400, "Not text", f"{path} is not UTF-8 text: it cannot be edited here")
    if original is not None and b"\r\n" in original:
        data = data.replace(b"\n", b"\r\n")  # the file keeps its CRLF line ends
    if original == data:
        return again(notice="Nothing to commit: the file is as the branch has it.")
    try:
        result = operations.commit(
            ctx, branch, base, [FileChange.put(path, data, mode, base_mode)], message or "Update"
        )
    except ReadOnlyBranch as exc:
        return again(error=read_only_words(exc))
    except Conflict:
        head = operations.fresh_head(ctx, branch)
        merged, clean = operations.merge_draft(ctx, path, base, head, data)
        return again(content=merged, base=head, moved=True, conflicts=not clean)
    except (UnsafeInput, InvalidRequest) as exc:
        return again(error=shown(exc, state.hidden_paths()))
    # The project page clears the browser's draft of this file: it is committed.
    query = urlencode({"committed": result.sha, "draft": f"{branch}:{path}"})
    return RedirectResponse(f"/projects/{ctx.config.name}?{query}", status_code=303)


@router.post("/projects/{project}/edit/pull", response_class=HTMLResponse)
def pull(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    branch: Annotated[str, Form()],
    path: Annotated[str, Form()],
    base: Annotated[str, Form()],
    content: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    message: Annotated[str, Form()] = "",
) -> Response:
    """Bring the view to the branch head, merging the head into the draft three ways."""
    check_csrf(session, csrf)
    ctx = project_for(state, session, project, Role.READ)
    head = operations.fresh_head(ctx, branch)
    data = content.replace("\r\n", "\n").encode()
    if head == base:
        return _editor(
            request,
            ctx,
            session,
            branch,
            path,
            content=data,
            base=base,
            message=message,
            notice="Already up to date with the branch.",
        )
    merged, clean = operations.merge_draft(ctx, path, base, head, data)
    return _editor(
        request,
        ctx,
        session,
        branch,
        path,
        content=merged,
        base=head,
        message=message,
        notice=f"Pulled {branch} @ {head[:12]} into your draft.",
        conflicts=not clean,
    )


def _meltano_yml(ctx: ProjectContext) -> str:
    return f"{ctx.config.project_path}/meltano.yml" if ctx.config.project_path else "meltano.yml"


def _settings_page(
    request: Request, ctx: ProjectContext, session: Any, branch: str, error: str = ""
) -> Response:
    head = operations.resolve(ctx, branch)
    try:
        text = ctx.forge.read_file(head, _meltano_yml(ctx))
    except NotFound:
        text = b""
    return page(
        request,
        "settings.html",
        session,
        project=ctx.config,
        branch=branch,
        branches=[b.name for b in ctx.forge.branches()],
        choices=meltano_edits.choices(text),
        read_only=_read_only(ctx, branch, session.may(Role.WRITE)),
        error=error,
    )


@router.get("/projects/{project}/settings", response_class=HTMLResponse)
def forms(
    request: Request, state: StateDep, session: Signed, project: str, branch: str | None = None
) -> Response:
    """Forms for common changes: a setting's value, a schedule's interval, an environment."""
    ctx = project_for(state, session, project, Role.READ)
    return _settings_page(request, ctx, session, _branch(ctx, branch))


def _locked(ctx: ProjectContext, head: str, plugin: str) -> list[Any]:
    """The plugin's setting definitions from its lock file, if the project has one."""
    prefix = f"{ctx.config.project_path}/plugins/" if ctx.config.project_path else "plugins/"
    for entry in ctx.forge.list_tree(head):
        parts = entry.path.removeprefix(prefix).split("/")
        if not entry.path.startswith(prefix) or len(parts) != 2:
            continue  # plugins/<type>/<file>
        file = parts[1]
        if file == f"{plugin}.lock" or (file.startswith(f"{plugin}--") and file.endswith(".lock")):
            return meltano_edits.locked_settings(ctx.forge.read_file(head, entry.path))
    return []


@router.post("/projects/{project}/settings/{kind}", response_class=HTMLResponse)
def change(
    request: Request,
    state: StateDep,
    session: Signed,
    project: str,
    kind: str,
    branch: Annotated[str, Form()],
    csrf: Annotated[str, Form()],
    name: Annotated[str, Form()],
    field: Annotated[str, Form()] = "",
    value: Annotated[str, Form()] = "",
) -> Response:
    """Make one common change as a minimal YAML edit, and commit it."""
    check_csrf(session, csrf)
    ctx = project_for(state, session, project, Role.WRITE)
    path = _meltano_yml(ctx)
    head = operations.fresh_head(ctx, branch)  # the change is made on what is there now
    text = ctx.forge.read_file(head, path)
    try:
        if kind == "setting":
            new = meltano_edits.set_setting(text, name, field, value, _locked(ctx, head, name))
            message = f"Set {name} {field} in {path} from the web UI"
        elif kind == "schedule":
            new = meltano_edits.set_schedule_interval(text, name, value)
            message = f"Set the interval of schedule {name} in {path} from the web UI"
        elif kind == "environment":
            new = meltano_edits.add_environment(text, name)
            message = f"Add the environment {name} to {path} from the web UI"
        else:
            raise InvalidRequest(f"Unknown change '{kind}'")  # noqa: TRY301
        result = operations.commit(
            ctx,
            branch,
            head,
            [FileChange.put(path, new, FileMode.REGULAR, FileMode.REGULAR)],
            message,
        )
    except ReadOnlyBranch as exc:
        return _settings_page(request, ctx, session, branch, read_only_words(exc))
    except Conflict:
        return _settings_page(
            request,
            ctx,
            session,
            branch,
            f"'{branch}' moved while the change was made; nothing was committed. Try again.",
        )
    except InvalidRequest as exc:
        return _settings_page(request, ctx, session, branch, shown(exc, state.hidden_paths()))
    query = urlencode({"committed": result.sha})
    return RedirectResponse(f"/projects/{ctx.config.name}?{query}", status_code=303)
