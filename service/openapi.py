"""Write the app's OpenAPI document as YAML: `python -m service.openapi > openapi.yaml`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from service.app import create_app
from service.settings import ServiceSettings


def document() -> str:
    """The OpenAPI document of the app, as stable YAML."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            ServiceSettings(database_url=f"sqlite:///{Path(tmp) / 'spec.db'}", cache_dir=Path(tmp)),
            deliver=False,
        )
        spec = app.openapi()
        app.state.service.close()
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)


if __name__ == "__main__":
    sys.stdout.write(document())
