"""What a cold runner needs to install the project's plugins: warnings, never errors.

A runner without Hub access cannot install a Hub plugin that has no lock file; a `git+`
pip_url on a branch (or on nothing) installs whatever the branch holds that day; and a
pip_url changed without its lock file is a lock that no longer says what is installed.
Real projects do all three and work, so the check only warns.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from client.check.project import Entry, Project, singular
from providers.redaction import without_userinfo

_SHA = re.compile(r"[0-9a-f]{40}", re.I)
_VERSION = re.compile(r"v?\d+(?:\.\d+)*(?:[-.+]?[0-9A-Za-z.]+)?")


def git_ref(url: str) -> str | None:
    """The ref a `git+` URL is pinned to (`@ref` after the path), or None. Raises
    `ValueError` for a URL that cannot be read (`git+https://[host`)."""
    parts = urlsplit(url.removeprefix("git+").split("#", 1)[0])
    path = parts.path
    if not parts.netloc and ":" in path:  # scp-like: git+git@host:owner/repo.git@ref
        path = path.split(":", 1)[1]
    _, at, ref = path.rpartition("@")
    return ref if at and ref and "/" not in ref else None


def is_pinned(ref: str | None) -> bool:
    """A full commit SHA or a version-like tag; a branch name moves."""
    return ref is not None and bool(_SHA.fullmatch(ref) or _VERSION.fullmatch(ref))


def check_sources(project: Project, base: Project | None = None) -> None:
    """The cold-runner rules for every plugin."""
    for plugin in project.plugins():
        _hub_lock(project, plugin)
        _moving_refs(project, plugin)
    if base is not None:
        _pip_url_without_lock(project, base)


def _hub_lock(project: Project, plugin: Entry) -> None:
    data = plugin.data
    if "inherit_from" in data or data.get("pip_url"):
        return
    if not data.get("variant") and data.get("namespace"):
        return  # a custom plugin: nothing to fetch from the Hub
    # A variant, or neither a variant nor a namespace: Meltano resolves it on the Hub.
    if project.lock_for(plugin) is None:
        project.warn(
            "hub-lock",
            plugin.file,
            plugin.line,
            f"{plugin.what} comes from Meltano Hub and has no lock "
            "file under plugins/, so a runner without Hub access cannot install it",
            f"Run `meltano lock {singular(plugin.kind)} {plugin.name}` and commit plugins/",
        )


def _moving_refs(project: Project, plugin: Entry) -> None:
    pip_url = plugin.data.get("pip_url")
    if not isinstance(pip_url, str):
        return
    for word in pip_url.split():
        start = word.find("git+")  # `git+URL`, or `name@git+URL`
        if start == -1:
            continue
        url = word[start:]
        try:
            ref = git_ref(url)
        except ValueError:
            project.warn(
                "pip-url",
                plugin.file,
                plugin.line_of("pip_url"),
                f"{plugin.what} installs from '{_shown(url, None)}', which is not a URL "
                "pip can read, so installing it fails",
                "Fix the URL in its pip_url",
            )
            continue
        if is_pinned(ref):
            continue
        what = f"the branch '{ref}'" if ref else "no ref (the default branch)"
        project.warn(
            "moving-ref",
            plugin.file,
            plugin.line_of("pip_url"),
            f"{plugin.what} installs {_shown(url, ref)} at {what}, "
            "which moves, so two runners may install different code",
            "Pin it to a tag or a commit SHA (…repo.git@<sha>)",
        )


def _shown(url: str, ref: str | None) -> str:
    """A git URL as a finding names it: no fragment, no `@ref`, no user part (a token
    written in a pip_url must not reach a log or a pull request's comment)."""
    shown = url.split("#", 1)[0]
    if ref and shown.endswith(f"@{ref}"):
        shown = shown[: -len(ref) - 1]
    return without_userinfo(shown)


def _pip_url_without_lock(project: Project, base: Project) -> None:
    for plugin in project.plugins():
        before = base.plugin(plugin.kind, plugin.name)
        if before is None or before.data.get("pip_url") == plugin.data.get("pip_url"):
            continue
        names = [p for p in project.lock_bytes if _lock_of(p, plugin)]
        if names and all(project.lock_bytes[p] == base.lock_bytes.get(p) for p in names):
            project.warn(
                "pip-url-lock",
                plugin.file,
                plugin.line_of("pip_url"),
                f"the pip_url of {plugin.what} changed, but its lock file did not",
                f"Run `meltano lock --update {singular(plugin.kind)} {plugin.name}` and commit it",
            )


def _lock_of(path: str, plugin: Entry) -> bool:
    name = path.rsplit("/", 1)[-1].removesuffix(".lock")
    return path.startswith(f"plugins/{plugin.kind}/") and name.split("--")[0] == plugin.name
