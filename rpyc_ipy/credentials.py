"""Where an SRP password comes from: never a command line, a kernelspec or a setting.

A :class:`~rpyc_ipy.target.ConnectionTarget` names the source
(:attr:`~rpyc_ipy.target.ConnectionTarget.password_source`), and
:func:`read_password` reads it, for ``%rpyc_connect`` and the remote kernel alike::

    password = read_password(target, getpass.getpass)

1. ``password_env``: an environment variable, by name;
2. ``credentials_file``: an owner-only file whose first line is the password; a
   file that the group or others may read, or that another user owns, is refused;
3. neither: ``ask(prompt)`` (a terminal's ``getpass``, a frontend's password box).

Every failure is a :class:`~rpyc_ipy.errors.CredentialsError` that says what to
change. The kernelspec installer calls :func:`check_owner_only` to refuse a bad
credentials file early.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable

from rpyc_ipy.errors import CredentialsError
from rpyc_ipy.target import ConnectionTarget

__all__ = ["check_owner_only", "read_credentials_file", "read_password", "read_password_env"]

#: the longest password line read from a credentials file
MAX_PASSWORD_BYTES = 4096


def read_password(target: ConnectionTarget, ask: Callable[[str], str]) -> str:
    """The SRP password of ``target`` from its source; ``ask(prompt)`` when that is a
    prompt. Raises :class:`CredentialsError`."""
    if target.password_env:
        return read_password_env(target.password_env)
    if target.credentials_file:
        return read_credentials_file(target.credentials_file)
    password = ask(f"SRP password for {target.label}: ")
    if not password:
        raise CredentialsError(f"no password given for {target.label}")
    return password


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
    if sys.platform != "win32":  # Windows has neither owner uids nor these mode bits
        if info.st_uid != os.getuid():
            raise CredentialsError(f"credentials file {path} belongs to another user "
                                   f"(uid {info.st_uid}); it must be your own")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise CredentialsError(
                f"credentials file {path} is readable or writable by group or others "
                f"(mode {mode:04o}); make it owner-only: chmod 600 {path}")
    return info


def read_credentials_file(path: str) -> str:
    """The password in an owner-only credentials file (its first line)."""
    path = os.path.expanduser(path)
    check_owner_only(path)
    flags = os.O_RDONLY
    if sys.platform != "win32":
        flags |= os.O_NOFOLLOW  # a symbolic link is refused, not followed
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
                               "in the environment that starts Jupyter or IPython")
    return value
