"""Helpers for tests/compat: registries served from threads of this process, and
Python scripts run as real subprocesses (a uniquely named module, not conftest, so
tests can import from it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

WAIT = 20.0  #: upper bound of any single wait
def run_script(tmp_path: Path, source: str, *args: str, timeout: float = 60.0
               ) -> subprocess.CompletedProcess[str]:
    """Run ``source`` (dedented) as a script in a fresh interpreter; bounded."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=tmp_path)
