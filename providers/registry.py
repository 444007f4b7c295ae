"""The registry: from a repository URL and settings to an adapter.

https://github.com/OWNER/REPO              github, api https://api.github.com
https://gitlab.com/GROUP/SUB/REPO          gitlab, api https://gitlab.com/api/v4
https://ghe.example.com/OWNER/REPO         github with provider=github (api /api/v3)
https://git.example.com/GROUP/REPO         gitlab with provider=gitlab (api /api/v4)
file:///path/to/bare.git                   local
https://forge.example.com/v1/projects/NAME service
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable

from providers.config import ForgeConfig, ProviderKind, RepoLocation
from providers.contract import Forge
from providers.errors import InvalidRequest

_PUBLIC_APIS = {
    "github.com": (ProviderKind.GITHUB, "https://api.github.com"),
    "www.github.com": (ProviderKind.GITHUB, "https://api.github.com"),
    "gitlab.com": (ProviderKind.GITLAB, "https://gitlab.com/api/v4"),
}

PUBLIC_HOSTS = frozenset({"github.com", "www.github.com", "api.github.com", "gitlab.com"})
"""The public forges: the only hosts a repository's own settings may name without the
environment's say, and only over https."""

_DEFAULT_PORTS = {"https": "443", "http": "80"}

_SCHEMES = ("https", "http", "file", "")
"""`""` is a plain path to a bare repository."""


def locate(repo: str, provider: str | None = None, api_url: str | None = None) -> RepoLocation:
    """Resolve a repository URL into a `RepoLocation`; `InvalidRequest` says what to set."""
    if not repo:
        msg = "No repository is configured"
        raise InvalidRequest(msg, "Set MELTANO_FORGE_REPO")
    parsed = urllib.parse.urlsplit(repo)
    if parsed.scheme not in _SCHEMES:
        msg = f"MELTANO_FORGE_REPO uses the unsupported scheme '{parsed.scheme}://': {_safe(repo)}"
        raise InvalidRequest(
            msg,
            "Use https:// (or http://) for GitHub, GitLab and the service, or file:// "
            "for a local bare repository",
        )
    if parsed.scheme == "file" and _host(parsed) not in ("", "localhost"):
        msg = f"MELTANO_FORGE_REPO names a file on another host ({_host(parsed)}): {_safe(repo)}"
        raise InvalidRequest(
            msg, "A local repository must be on this machine: use file:///path/to/bare.git"
        )
    kind = _kind(parsed, provider)
    if kind is ProviderKind.LOCAL:
        path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else repo
        return RepoLocation(kind, path, path, f"file://{path}")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        msg = f"MELTANO_FORGE_REPO is not a repository URL: {_safe(repo)}"
        raise InvalidRequest(
            msg,
            "Use https://HOST/OWNER/REPO, file:///path/to/bare.git or "
            "https://HOST/v1/projects/NAME",
        )
    origin = _origin(repo, "MELTANO_FORGE_REPO", userinfo=True)
    path = parsed.path.strip("/").removesuffix(".git")
    if kind is ProviderKind.SERVICE:
        prefix, _, name = f"/{path}".rpartition("/v1/projects/")
        if not name or "/" in name:
            msg = f"MELTANO_FORGE_REPO does not name a service project: {_safe(repo)}"
            raise InvalidRequest(
                msg,
                "Use http(s)://HOST/v1/projects/NAME",
            )
        return RepoLocation(kind, f"{origin}{prefix}", name, f"{origin}/{path}")
    parts = path.split("/")
    if (kind is ProviderKind.GITHUB and len(parts) != 2) or len(parts) < 2 or "" in parts:
        msg = f"MELTANO_FORGE_REPO does not name a repository: {_safe(repo)}"
        raise InvalidRequest(
            msg,
            "GitHub URLs are https://HOST/OWNER/REPO; GitLab URLs https://HOST/GROUP[/SUB]/REPO",
        )
    default = _PUBLIC_APIS.get(_host(parsed))
    api = _api(api_url) if api_url else (default[1] if default else _self_hosted_api(kind, origin))
    return RepoLocation(kind, api.rstrip("/"), path, f"{origin}/{path}")


_HOST = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")
_UNSAFE = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _origin(url: str, variable: str, *, userinfo: bool = False) -> str:
    """`scheme://host[:port]` of an http(s) URL, rebuilt from what was parsed, so that the
    host a trust decision sees is the host every HTTP client connects to. A backslash,
    white space or control character anywhere, or a host that is not a plain name or
    address, is refused: `https://evil\\@gitlab.com` is gitlab.com to `urlsplit` and
    evil to urllib3. `userinfo` allows a `user:password@` part (dropped, never sent)."""
    parsed = urllib.parse.urlsplit(url)
    host = (parsed.hostname or "").rstrip(".")
    try:
        port = parsed.port
    except ValueError:
        host = ""
    problem = ""
    if _UNSAFE.search(url):
        problem = "a backslash, white space or a control character"
    elif not userinfo and "@" in parsed.netloc:
        problem = "a user part"
    elif parsed.scheme not in ("http", "https") or not _plain_host(host):
        problem = "no plain host name or address"
    if problem:
        msg = f"{variable} is not a plain http(s) URL (it has {problem}): {_safe(url)!r}"
        raise InvalidRequest(msg, "Write it as https://HOST[:PORT]/PATH")
    shown = f"[{host}]" if ":" in host else host
    return f"{parsed.scheme}://{shown}{f':{port}' if port is not None else ''}"


def _plain_host(host: str) -> bool:
    """A DNS name or an IP address, nothing else."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return bool(host) and _HOST.fullmatch(host) is not None


def _api(api_url: str) -> str:
    """The API root rebuilt from its parsed parts (see `_origin`)."""
    path = urllib.parse.urlsplit(api_url).path
    return _origin(api_url, "MELTANO_FORGE_API_URL") + urllib.parse.quote(path, safe="/%-._~")


def _kind(parsed: urllib.parse.SplitResult, provider: str | None) -> ProviderKind:
    if provider:
        try:
            return ProviderKind(provider.lower())
        except ValueError:
            choices = ", ".join(k.value for k in ProviderKind)
            msg = f"Unknown provider '{provider}'"
            raise InvalidRequest(msg, f"Set MELTANO_FORGE_PROVIDER to one of {choices}") from None
    if parsed.scheme == "file" or (not parsed.scheme and parsed.path):
        return ProviderKind.LOCAL
    if "/v1/projects/" in parsed.path:
        return ProviderKind.SERVICE
    host = _host(parsed)
    known = _PUBLIC_APIS.get(host)
    if known:
        return known[0]
    msg = f"Cannot tell which forge hosts {host}"
    raise InvalidRequest(
        msg,
        "Set MELTANO_FORGE_PROVIDER to github or gitlab (and MELTANO_FORGE_API_URL if the API "
        "is not at /api/v3 or /api/v4)",
    )


def _host(parsed: urllib.parse.SplitResult) -> str:
    """host[:port], without any user:password@ part."""
    return parsed.netloc.rpartition("@")[2].lower()


def normal_host(scheme: str, netloc: str) -> str:
    """host[:port] as trust decisions compare it: lower case, no user:password@, no default
    port for the scheme (so `github.com:443` is `github.com`)."""
    host = netloc.rpartition("@")[2].lower().rstrip(".")
    name, colon, port = host.rpartition(":")
    if colon and "]" not in port and _DEFAULT_PORTS.get(scheme) == port:
        return name
    return host


def credential_endpoints(location: RepoLocation) -> tuple[tuple[str, str], ...]:
    """Each (scheme, host[:port]) an adapter for `location` sends its token to: the API,
    then the repository's own host (archive links, `git+` plugin sources)."""
    found: list[tuple[str, str]] = []
    for url in (location.api_url, location.web_url):
        parsed = urllib.parse.urlsplit(url)
        endpoint = (parsed.scheme, normal_host(parsed.scheme, parsed.netloc))
        if parsed.scheme in ("http", "https") and endpoint not in found:
            found.append(endpoint)
    return tuple(found)


def is_public(host: str) -> bool:
    """Whether `host` (from `normal_host`) is github.com or gitlab.com itself."""
    return host in PUBLIC_HOSTS


def _self_hosted_api(kind: ProviderKind, origin: str) -> str:
    return f"{origin}/api/v3" if kind is ProviderKind.GITHUB else f"{origin}/api/v4"


def _safe(url: str) -> str:
    """The URL without any user:password@ part, which may hold a token."""
    parsed = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parsed._replace(netloc=parsed.netloc.rpartition("@")[2]))


def _github(config: ForgeConfig) -> Forge:
    from providers.github import GitHubForge

    return GitHubForge(config)


def _gitlab(config: ForgeConfig) -> Forge:
    from providers.gitlab import GitLabForge

    return GitLabForge(config)


def _local(config: ForgeConfig) -> Forge:
    from providers.local import LocalForge

    return LocalForge(config)


def _service(config: ForgeConfig) -> Forge:
    from providers.service import ServiceForge

    return ServiceForge(config)


ADAPTERS: dict[ProviderKind, Callable[[ForgeConfig], Forge]] = {
    ProviderKind.GITHUB: _github,
    ProviderKind.GITLAB: _gitlab,
    ProviderKind.LOCAL: _local,
    ProviderKind.SERVICE: _service,
}
"""The explicit list of adapters; SDKs are imported only when their adapter is chosen."""


def open_forge(config: ForgeConfig) -> Forge:
    """The adapter for `config.location`."""
    return ADAPTERS[config.location.kind](config)
