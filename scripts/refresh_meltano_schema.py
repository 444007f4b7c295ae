"""Refresh the vendored `meltano.schema.json` from an installed Meltano.

The project check applies Meltano's own published schema (MIT) rather than a hand-written
copy, so a new Meltano release is picked up by re-running this script and committing the
result. It copies `meltano/schemas/meltano.schema.json` and Meltano's LICENSE beside the
check, and records the version it came from in `meltano.schema.version`.

Usage: python scripts/refresh_meltano_schema.py [PATH-TO-MELTANO-VENV]
(default: .venv-meltano beside this repository)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "client" / "check"


def main(argv: list[str]) -> int:
    """Copy the schema and license out of the Meltano installed in the given venv."""
    venv = Path(argv[1]) if len(argv) > 1 else ROOT / ".venv-meltano"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"no Python at {python}. Pass the folder of a venv with Meltano installed.")
        return 2
    probe = (
        "import json, importlib.metadata as m;"
        "d = m.distribution('meltano');"
        "lic = [f for f in (d.files or []) if f.name.upper().startswith('LICENSE')];"
        "print(json.dumps({'version': d.version,"
        " 'schema': str(d.locate_file('meltano/schemas/meltano.schema.json')),"
        " 'license': str(d.locate_file(lic[0])) if lic else ''}))"
    )
    reply = subprocess.run(  # noqa: S603 - the given venv's own Python, no shell
        [python, "-c", probe], check=True, capture_output=True, text=True
    )
    found = json.loads(reply.stdout)
    schema = Path(found["schema"]).read_bytes()
    json.loads(schema)  # refuse to vendor something that is not JSON
    (TARGET / "meltano.schema.json").write_bytes(schema)
    if found["license"]:
        (TARGET / "LICENSE-meltano").write_bytes(Path(found["license"]).read_bytes())
    (TARGET / "meltano.schema.version").write_text(found["version"] + "\n")
    print(f"vendored meltano.schema.json from Meltano {found['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
