"""From a repository URL and settings to the right adapter and API root."""

from __future__ import annotations

import pytest

from providers.config import ForgeConfig, ProviderKind
from providers.errors import InvalidRequest
from providers.local import LocalForge
from providers.registry import locate, open_forge


@pytest.mark.parametrize(
    ("url", "provider", "api", "kind", "expected_api", "path"),
    [
        (
            "https://github.com/acme/meltano",
            None,
            None,
            ProviderKind.GITHUB,
            "https://api.github.com",
            "acme/meltano",
        ),
        (
            "https://github.com/acme/meltano.git",
            None,
            None,
            ProviderKind.GITHUB,
            "https://api.github.com",
            "acme/meltano",
        ),
        (
            "https://gitlab.com/grp/sub/meltano",
            None,
            None,
            ProviderKind.GITLAB,
            "https://gitlab.com/api/v4",
            "grp/sub/meltano",
        ),
        (
            "https://ghe.example.com/acme/meltano",
            "github",
            None,
            ProviderKind.GITHUB,
            "https://ghe.example.com/api/v3",
            "acme/meltano",
        ),
        (
            "https://git.example.com/a/b/c/d",
            "gitlab",
            None,
            ProviderKind.GITLAB,
            "https://git.example.com/api/v4",
            "a/b/c/d",
        ),
        (
            "http://127.0.0.1:8080/acme/meltano",
            "github",
            "http://127.0.0.1:8080/api/v3/",
            ProviderKind.GITHUB,
            "http://127.0.0.1:8080/api/v3",
            "acme/meltano",
        ),
        (
            "https://forge.example.com/v1/projects/warehouse",
            None,
            None,
            ProviderKind.SERVICE,
            "https://forge.example.com",
            "warehouse",
        ),
        (
            "file:///srv/git/warehouse.git",
            None,
            None,
            ProviderKind.LOCAL,
            "/srv/git/warehouse.git",
            "/srv/git/warehouse.git",
        ),
    ],
)
def test_locate(
    url: str,
    provider: str | None,
    api: str | None,
    kind: ProviderKind,
    expected_api: str,
    path: str,
) -> None:
    location = locate(url, provider, api)
    assert (location.kind, location.api_url, location.path) == (kind, expected_api, path)


@pytest.mark.parametrize(
    ("url", "provider", "hint"),
    [
        ("", None, "MELTANO_FORGE_REPO"),
        ("https://git.example.com/a/b", None, "MELTANO_FORGE_PROVIDER"),
        ("https://github.com/only-owner", None, "OWNER/REPO"),
        ("https://github.com/a/b/c", None, "OWNER/REPO"),
        ("https://github.com/a/b", "bitbucket", "MELTANO_FORGE_PROVIDER"),
        ("ftp://host/a/b", "github", "MELTANO_FORGE_REPO"),
    ],
)
def test_bad_locations_say_what_to_set(url: str, provider: str | None, hint: str) -> None:
    with pytest.raises(InvalidRequest, match=hint):
        locate(url, provider)


def test_credentials_in_urls_are_not_echoed() -> None:
    with pytest.raises(InvalidRequest) as caught:
        locate("https://user:hunter2secret@github.com/only-owner")
    assert "hunter2secret" not in str(caught.value)


def test_open_forge_picks_the_adapter(tmp_path: object) -> None:
    forge = open_forge(ForgeConfig(locate(f"file://{tmp_path}/r.git")))
    assert isinstance(forge, LocalForge)
