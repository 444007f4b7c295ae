"""Run Meltano's own CLI with its installer's `git+` requirements swapped for local sources.

This file runs inside Meltano's interpreter (`python pip_rewrite.py install ...`), so it
imports nothing of meltano-forge. Meltano 4 has no setting that overrides a plugin's
`pip_url` without editing meltano.yml, so the swap happens at the one place Meltano hands
requirements to pip or uv: `VirtualEnvService.pip_install`. `install()` computes the
plugin's fingerprint from the requirements as written before calling it, so later
`meltano invoke` and `meltano run` see the plugin as installed from its committed
`pip_url` and never reinstall it (through git).

`MELTANO_FORGE_PIP_REWRITE` holds the swaps as JSON (`{"git+https://...": "name @
file:///..."}`). A `git+` requirement that is not swapped stops the install with a clear
error instead of calling git.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

REWRITE = "MELTANO_FORGE_PIP_REWRITE"


def main() -> None:
    """Patch the installer call, then run Meltano's CLI with our arguments."""
    from meltano.cli import main as meltano
    from meltano.core import venv_service

    swaps: dict[str, str] = json.loads(os.environ.get(REWRITE, "{}"))
    original = venv_service.VirtualEnvService.pip_install

    async def pip_install(self: Any, pip_install_args: list[str], **kwargs: Any) -> Any:
        args = [swaps.get(arg, arg) for arg in pip_install_args]
        left = [a for a in args if a.startswith("git+") or "@ git+" in a or "@git+" in a]
        if left:
            msg = f"meltano-forge: no git-free source for {', '.join(left)}"
            raise RuntimeError(msg)
        return await original(self, args, **kwargs)

    venv_service.VirtualEnvService.pip_install = pip_install
    sys.argv[0] = "meltano"
    sys.exit(meltano())


if __name__ == "__main__":
    main()
