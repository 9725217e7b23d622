"""The extension's settings, as traitlets you set with ``%config`` or in a config file.

Two classes, named as you type them::

    %config RPyCMagics.default_timeout = 60        # a %%remote cell may run 60 s
    %config RPyCPolicy.trust_remote_display = True # render remote HTML (trust the server!)

or, in ``ipython_kernel_config.py`` / ``ipython_config.py``::

    c.RPyCPolicy.allow_pickle = False
    c.RPyCMagics.stream_interval = 0.1

:class:`MagicsSettings` holds the behaviour of the magics (``RPyCMagics``
inherits it); :class:`RPyCPolicy` holds what the notebook trusts and grants.
Changes apply at once, to open sessions too.
"""

from __future__ import annotations

import re
from typing import Any

from IPython.core.magic import Magics
from traitlets import Bool, Dict, Enum, Float, Int, List, TraitError, Unicode, observe, validate
from traitlets.config import Configurable

from rpyc_ipy.core.policy import DEFAULT_CONFIG
from rpyc_ipy.errors import UsageError
from rpyc_ipy.ipython.safehtml import SANITIZED_MIMETYPES
from rpyc_ipy.target import ConnectionTarget

__all__ = ["MagicsSettings", "RPyCPolicy"]

_MIME = re.compile(r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")
# keys of the connection config that are not policy (set by us or by servers)
_NOT_USER_KEYS = frozenset({"connid", "credentials", "endpoints", "logger", "before_closed",
                            "bind_threads"})


def _positive(proposal: Any, allow_zero: bool = False) -> Any:
    value = proposal["value"]
    if value < 0 or (value == 0 and not allow_zero):
        raise TraitError(f"{proposal['trait'].name} must be {'>= 0' if allow_zero else '> 0'}, "
                         f"not {value!r}")
    return value


class RPyCPolicy(Configurable):
    """What this notebook trusts from servers, and grants them.

    Everything defaults to the safe choice: remote display hooks are never run,
    nothing is unpickled, sizes and times are bounded.
    """

    trust_remote_display = Bool(
        False,
        help="""Render rich output (HTML, Markdown, SVG, LaTeX, JSON) that a server sends,
        and ask servers for a netref's own display (its _repr_*_ hooks, by value, in one
        request). A malicious server can run JavaScript in your notebook through HTML:
        enable this only for servers you trust. Off: text, raster images, and (with
        sanitize_remote_html) HTML and SVG made inert.""",
    ).tag(config=True)
    sanitize_remote_html = Bool(
        True,
        help="""Without trust_remote_display, still show a server's HTML (tables, pandas
        DataFrames) after removing scripts, styles, event handlers, links, forms, frames
        and external loads, and its SVG as an image (a browser runs no script in an
        image). False: text and raster images only.""",
    ).tag(config=True)
    safe_mimetypes = List(
        Unicode(), ["text/plain", "image/png", "image/jpeg", "image/gif"],
        help="MIME types rendered from any server (they cannot run code in the notebook).",
    ).tag(config=True)
    trusted_mimetypes = List(
        Unicode(), ["text/html", "text/markdown", "image/svg+xml", "text/latex",
                    "application/json"],
        help="""MIME types rendered only with trust_remote_display (text/html and
        image/svg+xml without it too, made inert, while sanitize_remote_html is on).""",
    ).tag(config=True)
    allow_pickle = Bool(
        False,
        help="""Let %rpyc_push/%rpyc_pull fall back to pickle for values that are not plain
        data, when the server allows it too. Unpickling runs code the sender chose: only
        for servers you trust. Also sets allow_pickle on the connections' policy.""",
    ).tag(config=True)
    allow_insecure = Bool(
        True,
        help="""Honour %rpyc_connect --insecure and RemoteKernel.insecure (plaintext to a
        non-loopback host). Set False to forbid plaintext beyond this machine whatever the
        command says.""",
    ).tag(config=True)
    allow_classic = Bool(
        True,
        help="""Honour %rpyc_connect --classic and RemoteKernel.classic (a server that runs
        anything; never a default).""",
    ).tag(config=True)
    connection_config = Dict(
        {},
        help="""Extra RPyC config keys for new connections: what this notebook grants
        servers (e.g. {"allow_public_attrs": False}). The defaults are the restrictive ones;
        servers can call only the callbacks the magics hand them.""",
    ).tag(config=True)
    max_pull_bytes = Int(64 << 20, help="Size guard for one %rpyc_pull value.").tag(config=True)
    max_push_bytes = Int(64 << 20, help="Size guard for one %rpyc_push value.").tag(config=True)
    max_bundle_bytes = Int(
        8 << 20, help="Largest display value (one MIME type) accepted from a server."
    ).tag(config=True)
    max_output_backlog = Int(
        32 << 20,
        help="""Characters of a cell's output held in the notebook, waiting to be shown
        (or, with --no-stream, until the cell ends). Output a server sends faster than
        that is dropped, and a note in the cell says how much.""",
    ).tag(config=True)
    max_cell_output = Int(
        64 << 20,
        help="""Characters of output one cell shows (IPython keeps what a cell shows in
        memory, and so does the browser); what a server sends past it is not shown,
        and the cell ends with a note saying how much.""",
    ).tag(config=True)
    max_repr_chars = Int(
        10_000, help="Characters of a netref's repr shown at the prompt (the rest is cut)."
    ).tag(config=True)
    max_dir_names = Int(
        5000, help="Names of a netref's dir() kept for completion and browsing."
    ).tag(config=True)
    max_items = Int(100, help="Children shown per node in %rpyc_browse.").tag(config=True)
    display_timeout = Float(
        5.0, help="Seconds a remote repr or display may take before the prompt shows a "
        "placeholder.",
    ).tag(config=True)

    @validate("max_pull_bytes", "max_push_bytes", "max_bundle_bytes", "max_output_backlog",
              "max_cell_output", "max_repr_chars",
              "max_dir_names", "max_items", "display_timeout")
    def _check_positive(self, proposal: Any) -> Any:
        return _positive(proposal)

    @validate("safe_mimetypes", "trusted_mimetypes")
    def _check_mimetypes(self, proposal: Any) -> Any:
        for mime in proposal["value"]:
            if not _MIME.match(mime):
                raise TraitError(f"{mime!r} is not a MIME type like 'text/html'")
        return proposal["value"]

    @validate("connection_config")
    def _check_connection_config(self, proposal: Any) -> Any:
        config = proposal["value"]
        for key, value in config.items():
            if key not in DEFAULT_CONFIG or key in _NOT_USER_KEYS:
                raise TraitError(f"{key!r} is not an RPyC policy key")
            default = DEFAULT_CONFIG[key]
            if isinstance(default, bool) and type(value) is not bool:
                raise TraitError(f"{key} must be True or False")
        return config

    def mimetypes(self) -> frozenset[str]:
        """The MIME types rendered from servers right now (some only sanitized:
        :meth:`sanitized_mimetypes`)."""
        allowed = set(self.safe_mimetypes)
        if self.trust_remote_display:
            allowed.update(self.trusted_mimetypes)
        return frozenset(allowed | self.sanitized_mimetypes())

    def sanitized_mimetypes(self) -> frozenset[str]:
        """The MIME types rendered only after making them inert (untrusted servers)."""
        if self.trust_remote_display or not self.sanitize_remote_html:
            return frozenset()
        return frozenset(mime for mime in SANITIZED_MIMETYPES
                         if mime in self.trusted_mimetypes and mime not in self.safe_mimetypes)

    def check_target(self, target: ConnectionTarget) -> None:
        """Refuse (``UsageError``) a target this policy forbids: classic mode without
        ``allow_classic``, plaintext beyond this machine without ``allow_insecure``."""
        if target.classic and not self.allow_classic:
            raise UsageError("classic mode (--classic) is disabled by "
                             "RPyCPolicy.allow_classic")
        if target.plaintext_beyond_loopback and not self.allow_insecure:
            raise UsageError(f"plaintext to {target.host} (--insecure) is disabled by "
                             "RPyCPolicy.allow_insecure: authenticate with --srp-user or "
                             "certificates")

    def client_config(self, request_timeout: float) -> dict[str, Any]:
        """The config dict for a new connection."""
        config: dict[str, Any] = {"sync_request_timeout": request_timeout,
                                  "allow_pickle": self.allow_pickle}
        config.update(self.connection_config)
        return config


class MagicsSettings(Magics):
    """The magics' behaviour (as ``RPyCMagics`` traits); see :mod:`rpyc_ipy.ipython.magics`."""

    default_session = Unicode(
        "", help="The session %remote/%%remote use without -s (%rpyc_use sets it)."
    ).tag(config=True)
    default_timeout = Float(
        0.0, help="Seconds a %%remote cell may run before it is cancelled (0: no limit).",
    ).tag(config=True)
    request_timeout = Float(
        30.0, help="Seconds for a short request (completion, push, pull, browse, ping).",
    ).tag(config=True)
    connect_timeout = Float(10.0, help="Seconds to connect and authenticate.").tag(config=True)
    interrupt_grace = Float(
        5.0, help="""Seconds a cell may take to stop after the stop button (a SIGINT in the
        session's worker) before the worker is restarted, which loses the session's
        namespace; a second stop restarts at once. On servers without workers (classic
        ones): how long to wait for the server to confirm the cancel.""",
    ).tag(config=True)
    cancel_grace = Float(
        0.25, help="Seconds the server waits between cancel escalation steps.",
    ).tag(config=True)
    stream = Bool(True, help="Show remote output while a cell runs (else at the end).").tag(
        config=True)
    stream_interval = Float(
        0.05, help="Seconds between output batches sent by the server while a cell runs.",
    ).tag(config=True)
    capture_fd = Bool(
        True, help="Also capture C-level output (file descriptors 1 and 2) on the server.",
    ).tag(config=True)
    completion = Enum(
        ["cached", "live", "off"], "cached",
        help="""Completion on netrefs and in %%remote cells: 'cached' (dir and attribute
        lookups are cached for completion_ttl), 'live' (asked every time), 'off'.""",
    ).tag(config=True)
    completion_ttl = Float(10.0, help="Seconds a cached completion lookup stays valid.").tag(
        config=True)
    completion_timeout = Float(
        2.0, help="Seconds one completion request may take (TAB never hangs longer).",
    ).tag(config=True)
    show_card = Bool(True, help="Show the session card after %rpyc_connect.").tag(config=True)
    progress_delay = Float(
        0.5, help="""Seconds long work (connecting, %rpyc_push/%rpyc_pull, %%remote on several
        sessions) runs before a progress line appears; quicker work shows none. 0: always.""",
    ).tag(config=True)

    @validate("request_timeout", "connect_timeout", "interrupt_grace", "cancel_grace",
              "stream_interval", "completion_timeout")
    def _check_positive(self, proposal: Any) -> Any:
        return _positive(proposal)

    @validate("default_timeout", "completion_ttl", "progress_delay")
    def _check_non_negative(self, proposal: Any) -> Any:
        return _positive(proposal, allow_zero=True)

    @validate("default_session")
    def _check_session_name(self, proposal: Any) -> Any:
        name = proposal["value"]
        if name and not name.isidentifier():
            raise TraitError(f"{name!r} is not a session name")
        return name

    @observe("completion", "completion_ttl")
    def _completion_changed(self, change: Any) -> None:
        self._on_completion_change()

    def _on_completion_change(self) -> None:
        """Hook for subclasses: completion settings changed (drop caches)."""
