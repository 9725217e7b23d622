"""Re-record brine-vectors.json with the real rpyc 6.0.2 package (the test dependency).

Run from the repository root with the test environment::

    .venv/bin/python tests/data/spec/regenerate.py          # rewrite the file
    .venv/bin/python tests/data/spec/regenerate.py --check  # exit 1 if it would change

Each vector's ``python`` expression is evaluated and dumped with ``rpyc.core.brine``;
the ``hex`` field is replaced by what rpyc produces. The other files are described in
README.md beside this script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BRINE_FILE = HERE / "brine-vectors.json"


def recorded_hex(expression: str) -> str:
    """What rpyc 6.0.2's brine.dump gives for the value of ``expression``."""
    from rpyc.core import brine  # the interop peer, a test dependency only

    return brine.dump(eval(expression)).hex()  # the expressions come from our own file


def rerecord(document: dict[str, Any]) -> dict[str, Any]:
    """The brine vector document with every plain vector's hex recomputed."""
    for vector in document["vectors"]:
        vector["hex"] = recorded_hex(vector["python"])
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args(argv)
    before = BRINE_FILE.read_text(encoding="utf-8")
    document = rerecord(json.loads(before))
    after = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if json.loads(after) == json.loads(before):
        print(f"{BRINE_FILE.name}: unchanged")
        return 0
    if args.check:
        print(f"{BRINE_FILE.name}: rpyc 6.0.2 now dumps some vectors differently", file=sys.stderr)
        return 1
    BRINE_FILE.write_text(after, encoding="utf-8")
    print(f"{BRINE_FILE.name}: rewritten")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
