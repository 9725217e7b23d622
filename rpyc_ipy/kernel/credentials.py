"""Where the remote kernel's SRP password comes from (never from ``kernel.json``).

In the order the kernel tries them:

1. an environment variable whose *name* is configured (``RemoteKernel.password_env``);
2. an owner-only credentials file (``RemoteKernel.credentials_file``): its first line
   is the password; a file that the group or others may read, or that another user
   owns, is refused;
3. a prompt through the frontend (Jupyter's ``input_request`` with ``password=True``).

This module needs neither IPython nor ipykernel; ``install`` uses it to check a
credentials file early.
"""

from __future__ import annotations

import os
import stat

from rpyc_ipy.errors import UsageError

__all__ = ["CredentialsError", "check_owner_only", "read_credentials_file", "read_password_env"]

#: the longest password line read from a credentials file
MAX_PASSWORD_BYTES = 4096


class CredentialsError(UsageError):
    """The configured password source cannot be used (the message says why and what to do)."""


def check_owner_only(path: str) -> os.stat_result:
    """Refuse a credentials file that is not a regular file owned by us with mode 0600/0400.

    Returns the file's ``stat`` result. Raises :class:`CredentialsError`.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise CredentialsError(f"credentials file {path} does not exist") from None
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: "
                               f"{exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise CredentialsError(f"credentials file {path} is not a regular file")
    getuid = getattr(os, "getuid", None)
    if getuid is not None and info.st_uid != getuid():
        raise CredentialsError(f"credentials file {path} belongs to another user "
                               f"(uid {info.st_uid}); it must be your own")
    mode = stat.S_IMODE(info.st_mode)
    if os.name == "posix" and mode & 0o077:
        raise CredentialsError(
            f"credentials file {path} is readable or writable by group or others "
            f"(mode {mode:04o}); make it owner-only: chmod 600 {path}")
    return info


def read_credentials_file(path: str) -> str:
    """The password in an owner-only credentials file (its first line)."""
    path = os.path.expanduser(path)
    check_owner_only(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise CredentialsError(f"cannot read credentials file {path}: "
                               f"{exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_PASSWORD_BYTES + 2)
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    if len(line) > MAX_PASSWORD_BYTES:
        raise CredentialsError(f"the first line of {path} is longer than "
                               f"{MAX_PASSWORD_BYTES} bytes")
    try:
        password = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CredentialsError(f"the password in {path} is not valid UTF-8") from None
    if not password:
        raise CredentialsError(f"credentials file {path} is empty (the password goes on "
                               "its first line)")
    return password


def read_password_env(name: str) -> str:
    """The password in environment variable ``name``."""
    value = os.environ.get(name)
    if not value:
        raise CredentialsError(f"environment variable {name} is not set (or empty): set it "
                               "in the environment that starts Jupyter")
    return value
