"""The files the runner reads for the plugin list are the project's: `include_paths` in a
repository's `meltano.yml` cannot make it read the host's files."""

from __future__ import annotations

import os
from pathlib import Path

from client.plugins import project_files, project_plugins


def test_include_paths_outside_the_project_are_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "host"
    outside.mkdir()
    (outside / "secret.yml").write_text(
        "plugins:\n  extractors:\n  - name: tap-host\n    pip_url: tap-host\n"
    )
    project = tmp_path / "project"
    (project / "extra").mkdir(parents=True)
    (project / "extra" / "jobs.yml").write_text("jobs: []\n")
    os.symlink(outside / "secret.yml", project / "extra" / "linked.yml")
    (project / "meltano.yml").write_text(
        "include_paths:\n"
        "  - ./extra/*.yml\n"
        f"  - {outside}/*.yml\n"
        "  - ../host/*.yml\n"
        "  - /proc/self/environ\n"
    )
    assert project_files(project) == ["meltano.yml", "extra/jobs.yml"]
    assert [p.name for p in project_plugins(project)] == []
