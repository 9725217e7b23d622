"""Shared helpers for the codec tests: where the spec vectors live, tagged JSON."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

#: the wire vectors recorded from rpyc 6.0.2, kept with the tests (see its README.md)
SPEC_DIR = Path(__file__).resolve().parents[1] / "data" / "spec"


@cache
def spec_json(name: str) -> Any:
    """One of the recorded vector files in tests/data/spec/, parsed."""
    return json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))


def from_tagged(node: Any) -> Any:
    """Values from the spec's tagged JSON: {"tuple": [...]}, {"bytes_hex": ...}, {"float": r}."""
    if isinstance(node, dict):
        if set(node) == {"tuple"}:
            return tuple(from_tagged(item) for item in node["tuple"])
        if set(node) == {"bytes_hex"}:
            return bytes.fromhex(node["bytes_hex"])
        if set(node) == {"float"}:
            return float(node["float"])
        raise ValueError(f"unknown tagged JSON node {sorted(node)}")
    if isinstance(node, list):
        raise ValueError("bare JSON lists do not occur in the vectors")
    return node


def same_value(a: Any, b: Any) -> bool:
    """Equal with exact types all the way down, NaN equal to NaN, -0.0 distinct from 0.0."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is frozenset:
        return a == b and all(any(same_value(x, y) for y in b) for x in a)
    if type(a) is slice:
        return all(same_value(x, y) for x, y in
                   ((a.start, b.start), (a.stop, b.stop), (a.step, b.step)))
    if type(a) is float:
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is complex:
        return same_value(a.real, b.real) and same_value(a.imag, b.imag)
    return bool(a == b)
