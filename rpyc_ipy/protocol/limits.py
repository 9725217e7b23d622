"""Decoder and framing limits: what a peer may make this side allocate or walk.

Limits are local decisions: they never change the bytes a well-behaved peer sees.
Build one with keyword arguments and hand it to the codec or the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rpyc_ipy.errors import ConfigError

__all__ = ["DEFAULT_LIMITS", "Limits"]

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on decoded input; every field must be a positive int.

    ``max_frame_size`` caps a frame's body as declared in its header and, for a
    compressed frame, its inflated size too. The default leaves room for a
    128 MiB payload plus its message envelope.

    ``max_hash_collisions`` is the most members of one decoded frozenset that may
    share a hash value (see :mod:`rpyc_ipy.protocol.hashing`): genuine data
    almost never has more than two, a hash-flooding peer has thousands.
    """

    max_frame_size: int = 160 * MiB
    max_depth: int = 64
    max_container_len: int = 16 * MiB
    max_bytes_len: int = 160 * MiB
    max_int_digits: int = 4300
    max_hash_collisions: int = 16
    #: derived: True when a limit is below 255, so even the u8 length forms of
    #: brine must be checked (the decoder skips those checks otherwise)
    check_short: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("max_frame_size", "max_depth", "max_container_len", "max_bytes_len",
                     "max_int_digits", "max_hash_collisions"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ConfigError(f"Limits.{name} must be a positive int, not {value!r}")
        short = min(self.max_container_len, self.max_bytes_len, self.max_int_digits) < 255
        object.__setattr__(self, "check_short", short)


DEFAULT_LIMITS = Limits()
