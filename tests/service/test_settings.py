"""The projects file: secrets from files or the environment, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.settings import SettingsError, settings_table
from service.settings import Role, ServiceSettings


def test_secrets_from_files_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gh").write_text("forge-token\n")
    monkeypatch.setenv("DASH_TOKEN", "from-env")
    path = tmp_path / "projects.yml"
    path.write_text(
        "projects:\n- {name: warehouse, repo: 'https://github.com/acme/w', token_file: %s}\n"
        "tokens:\n- {name: dash, token_env: DASH_TOKEN, role: read}\n" % (tmp_path / "gh")
    )
    loaded = ServiceSettings(projects_file=path).load_projects()
    project = loaded.project("warehouse")
    assert project is not None
    assert project.token is not None
    assert project.token.get_secret_value() == "forge-token"
    assert loaded.tokens[0].token is not None
    assert loaded.tokens[0].token.get_secret_value() == "from-env"
    assert loaded.tokens[0].role is Role.READ
    assert "forge-token" not in repr(loaded)


def test_invalid_projects_file_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "projects.yml"
    path.write_text("projects:\n- {name: 'bad name!', repo: x}\n")
    with pytest.raises(
        SettingsError, match=r"MELTANO_FORGE_PROJECTS_FILE .* is invalid: projects\.0\.name"
    ):
        ServiceSettings(projects_file=path).load_projects()
    with pytest.raises(SettingsError, match="cannot be read"):
        ServiceSettings(projects_file=tmp_path / "missing.yml").load_projects()


def test_the_readme_documents_every_service_setting() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = settings_table(ServiceSettings, own_only=True)
    assert table in readme, "regenerate with: python -m service.settings"
