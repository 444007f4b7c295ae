"""Whether a `git+` plugin's branch moved since its environment was installed.

A `pip_url` pinned to a branch (or to no ref: the repository's HEAD) reads the same after
the branch moves, so its Meltano fingerprint matches an environment built from an older
commit. An install therefore records the commit each `git+` requirement resolved to
(`RECORD` in the plugin's environment folder), and a later run, for a plugin it would
otherwise reuse, asks where the ref is now: the configured forge through its adapter
(`branch(ref).head`), public github.com and gitlab.com through git's smart-HTTP ref
advertisement. A ref pinned to a full commit SHA asks nothing. One request per distinct
requirement per run; a ref that cannot be resolved leaves the environment reused, with a
warning.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from client.plugin_sources import PUBLIC, GitRequirement, on_forge, requirement_url
from providers.config import ForgeConfig
from providers.errors import NotFound, ProviderError
from providers.registry import open_forge
from providers.safety import Limits

RECORD = "meltano-forge-source.json"
"""The resolved sources of an environment, in the environment's own folder."""
PUBLIC_BASE = "https://{host}"
"""Where public github.com and gitlab.com answer git's ref advertisement. Only tests
point it elsewhere: a repository (meltano.yml) never chooses where a request goes."""
MAX_ADVERTISEMENT = 4 << 20
"""Bytes of a ref advertisement read at most (a repository can have many refs)."""
COMMIT = re.compile(r"^[0-9a-f]{40}$")


def moves(requirement: GitRequirement) -> bool:
    """Whether its ref can move under the same `pip_url` (anything but a full SHA)."""
    return not COMMIT.match(requirement.ref)


def record_key(token: str) -> str:
    """How a requirement is named in the record: its text, or a hash of it when its URL
    carries userinfo (the record must never hold a credential)."""
    try:
        split = urllib.parse.urlsplit(requirement_url(token).removeprefix("git+"))
        plain = not (split.username or split.password or "@" in split.netloc)
    except ValueError:
        plain = False
    return token if plain else "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def write_record(venv: Path, shas: Mapping[str, str]) -> None:
    """Record which commit each requirement token resolved to, atomically."""
    body = json.dumps({"git": {record_key(t): s for t, s in shas.items()}}, indent=1)
    handle, temporary = tempfile.mkstemp(prefix=f".{RECORD}.", dir=venv)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(body + "\n")
        os.replace(temporary, venv / RECORD)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_record(venv: Path) -> dict[str, str] | None:
    """The recorded token → SHA, or None when the environment has no (usable) record."""
    try:
        data = json.loads((venv / RECORD).read_text())
    except (OSError, ValueError):
        return None
    git = data.get("git") if isinstance(data, dict) else None
    if not isinstance(git, dict):
        return None
    return {str(k): str(v) for k, v in git.items() if isinstance(v, str)}


class RefUnknown(Exception):
    """Where a ref is now cannot be told (offline, not found, a tag on the forge)."""


@dataclass(frozen=True)
class Resolved:
    """Where a ref is now."""

    sha: str
    kind: str
    """`branch`, `tag` or `HEAD`."""
    ref: str

    @property
    def label(self) -> str:
        """`git branch 'main'`, `git tag 'v1'`, `git HEAD`, for messages."""
        return "git HEAD" if self.kind == "HEAD" else f"git {self.kind} '{self.ref}'"


@dataclass
class RefResolver:
    """Resolves refs for one run, each distinct one once."""

    config: Callable[[], ForgeConfig | None]
    """The configured forge's settings, asked only when a ref needs resolving."""
    limits: Limits
    timeout: float = 20.0
    max_bytes: int = MAX_ADVERTISEMENT
    lookups: int = 0
    """Refs looked up this run: one request each on a public host or for a branch on the
    forge; HEAD on the forge also reads the repository for its default branch."""
    _seen: dict[tuple[str, str, str], Resolved | RefUnknown] = field(default_factory=dict)

    def resolve(self, requirement: GitRequirement) -> Resolved:
        """Where `requirement`'s ref is now; `RefUnknown` when that cannot be told."""
        key = (requirement.host, requirement.path, requirement.ref)
        if key not in self._seen:
            try:
                self._seen[key] = self._resolve(requirement)
            except RefUnknown as exc:
                self._seen[key] = exc
        found = self._seen[key]
        if isinstance(found, RefUnknown):
            raise found
        return found

    def _resolve(self, requirement: GitRequirement) -> Resolved:
        location = on_forge(self.config(), self.limits, requirement)
        if location is not None:
            return self._on_forge(location, requirement)
        if requirement.host not in PUBLIC:
            msg = f"{requirement.host} is neither the configured forge, github.com nor gitlab.com"
            raise RefUnknown(msg)
        return self._advertised(requirement)

    def _on_forge(self, location: ForgeConfig, requirement: GitRequirement) -> Resolved:
        ref = requirement.ref
        forge = open_forge(location)
        try:
            self.lookups += 1
            name = forge.repository().default_branch if ref == "HEAD" else ref
            head = forge.branch(name).head
        except NotFound as exc:
            msg = f"'{ref}' is not a branch of {requirement.path} (a tag cannot be told there)"
            raise RefUnknown(msg) from exc
        except ProviderError as exc:
            raise RefUnknown(str(exc)) from exc
        finally:
            forge.close()
        return Resolved(head, "HEAD" if ref == "HEAD" else "branch", ref)

    def _advertised(self, requirement: GitRequirement) -> Resolved:
        import httpx  # only projects with moving git+ plugins need it

        base = PUBLIC_BASE.format(host=requirement.host)
        url = f"{base}/{requirement.path}.git/info/refs?service=git-upload-pack"
        self.lookups += 1
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code >= 400:
                    msg = f"{requirement.host} answered {response.status_code}"
                    raise RefUnknown(msg)
                kind = response.headers.get("content-type", "")
                if not kind.startswith("application/x-git-upload-pack-advertisement"):
                    msg = f"{requirement.host} did not answer with a git ref advertisement"
                    raise RefUnknown(msg)
                data = bytearray()
                for chunk in response.iter_bytes(1 << 16):
                    data += chunk
                    if len(data) > self.max_bytes:
                        msg = (
                            f"{requirement.host}/{requirement.path} advertises more than "
                            f"{self.max_bytes} bytes of refs"
                        )
                        raise RefUnknown(msg)
        except httpx.HTTPError as exc:
            msg = f"{requirement.host} could not be reached ({type(exc).__name__})"
            raise RefUnknown(msg) from exc
        return pick(advertisement(bytes(data)), requirement)


def advertisement(data: bytes) -> dict[bytes, bytes]:
    """The refs of a smart-HTTP `info/refs` answer (protocol v1), parsed by dulwich."""
    from dulwich.client import read_pkt_refs_v1
    from dulwich.errors import GitProtocolError, HangupException
    from dulwich.protocol import Protocol

    proto = Protocol(io.BytesIO(data).read, lambda _: None)
    try:
        first = proto.read_pkt_line()
        if first is not None and first.startswith(b"# service="):
            if proto.read_pkt_line() is not None:
                msg = "the ref advertisement has no flush after its service line"
                raise RefUnknown(msg)
        elif first is not None:
            proto.unread_pkt_line(first)
        refs, _ = read_pkt_refs_v1(proto.read_pkt_seq())
    except (GitProtocolError, HangupException, ValueError, AssertionError) as exc:
        msg = f"the ref advertisement does not read ({exc})"
        raise RefUnknown(msg) from exc
    return {bytes(k): bytes(v) for k, v in refs.items()}


def pick(refs: Mapping[bytes, bytes], requirement: GitRequirement) -> Resolved:
    """The ref a requirement names: HEAD, a branch, or a tag (peeled to its commit)."""
    ref = requirement.ref
    wanted = [(b"HEAD", "HEAD")] if ref == "HEAD" else []
    name = ref.encode()
    wanted += [
        (b"refs/heads/" + name, "branch"),
        (b"refs/tags/" + name + b"^{}", "tag"),
        (b"refs/tags/" + name, "tag"),
    ]
    for found, kind in wanted:
        sha = refs.get(found)
        if sha is not None:
            return Resolved(sha.decode("ascii"), kind, ref)
    msg = f"{requirement.host}/{requirement.path} has no branch or tag '{ref}'"
    raise RefUnknown(msg)


@dataclass(frozen=True)
class Verdict:
    """What a plugin's moving `git+` refs say about reusing its environment."""

    install: str | None
    """Why it must be reinstalled (a ref moved); None when it is reused."""
    reused: str
    """What to add to the reason it is reused (starting with its own joiner)."""
    warning: str = ""
    """A line to log when a ref could not be resolved."""


def check_sources(
    venv: Path, requirements: list[GitRequirement], resolver: RefResolver
) -> Verdict | None:
    """Compare where each moving ref is now with what the environment was built from;
    None when no requirement can move (no request is made)."""
    moving = [r for r in requirements if moves(r)]
    if not moving:
        return None
    record = read_record(venv)
    if record is None:
        refs = ", ".join(r.ref for r in moving)
        return Verdict(
            None,
            f"; its git source was not recorded at install (a baked image, or installed "
            f"before meltano-forge recorded it), so whether {refs} moved is not known",
        )
    same, unknown = [], []
    for requirement in moving:
        recorded = record.get(record_key(requirement.token))
        if recorded is None:
            unknown.append((requirement, "its source was not recorded at install"))
            continue
        try:
            now = resolver.resolve(requirement)
        except RefUnknown as exc:
            unknown.append((requirement, str(exc)))
            continue
        if recorded != now.sha:
            return Verdict(f"its {now.label} moved ({recorded[:7]} → {now.sha[:7]})", "")
        else:
            same.append(f"{now.ref} is still at {now.sha[:7]}")
    if unknown:
        told = "".join(f"{s}; " for s in same)
        refs = "; ".join(f"'{r.ref}' of {r.host}/{r.path} moved ({why})" for r, why in unknown)
        return Verdict(
            None,
            f"; {told}whether its git ref moved could not be told",
            f"could not tell whether the git ref {refs}. Its environment is reused; pin a "
            "commit SHA in its pip_url, or set MELTANO_FORGE_INSTALL=always to reinstall it",
        )
    return Verdict(None, "".join(f" and {s}" for s in same))
