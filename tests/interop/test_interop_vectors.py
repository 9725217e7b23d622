"""The recorded wire vectors in tests/data/spec/ still agree with the installed rpyc 6.0.2.

The protocol tests trust these files; this is what keeps them honest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.interop
rpyc = pytest.importorskip("rpyc")
from rpyc.core import brine as rpyc_brine  # noqa: E402
from rpyc.core import vinegar as rpyc_vinegar  # noqa: E402

SPEC_DIR = Path(__file__).resolve().parents[1] / "data" / "spec"
sys.path.insert(0, str(SPEC_DIR))
import regenerate  # noqa: E402


def test_the_installed_rpyc_is_the_recorded_version() -> None:
    assert rpyc.__version__ == "6.0.2"


def test_every_brine_vector_is_what_rpyc_dumps() -> None:
    document = json.loads(regenerate.BRINE_FILE.read_text(encoding="utf-8"))
    assert len(document["vectors"]) >= 80
    for vector in document["vectors"]:
        assert regenerate.recorded_hex(vector["python"]) == vector["hex"], vector["python"]


def test_every_vinegar_payload_loads_in_rpyc_as_recorded() -> None:
    document = json.loads((SPEC_DIR / "vinegar-vectors.json").read_text(encoding="utf-8"))
    for case in document["cases"]:
        payload = rpyc_brine.load(bytes.fromhex(case["sanitized_hex"]))
        rebuilt = rpyc_vinegar.load(payload, import_custom_exceptions=False,
                                    instantiate_custom_exceptions=False,
                                    instantiate_oldstyle_exceptions=False)
        results = case["load_results"]
        # custom classes were recorded twice, with their module imported and without;
        # this process has no such module
        default = "default (import=False, instantiate=False)"
        expected = results.get(default) or results[
            f"{default}; mymod NOT in sys.modules (and not importable)"]
        # rpyc hands StopIteration back as the class itself, everything else as an instance
        cls = rebuilt if isinstance(rebuilt, type) else type(rebuilt)
        mro = [f"{klass.__module__}.{klass.__name__}" for klass in cls.__mro__]
        assert mro == expected["mro"], case["name"]
        if not isinstance(rebuilt, type):
            assert repr(rebuilt.args) == expected["args"], case["name"]
