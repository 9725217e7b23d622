"""Decoder and framing limits: what a peer may make this side allocate or walk.

Limits are local decisions: they never change the bytes a well-behaved peer sees.
Build one with keyword arguments and hand it to the codec or the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "Limits"]

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on decoded input; every field must be a positive int.

    ``max_frame_size`` caps a frame's body as declared in its header and, for a
    compressed frame, its inflated size too. The default leaves room for a
    128 MiB payload plus its message envelope.
    """

    max_frame_size: int = 160 * MiB
    max_depth: int = 64
    max_container_len: int = 16 * MiB
    max_bytes_len: int = 160 * MiB
    max_int_digits: int = 4300

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_depth", "max_container_len", "max_bytes_len",
                     "max_int_digits"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive int, not {value!r}")


DEFAULT_LIMITS = Limits()
