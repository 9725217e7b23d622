"""Session cards, the sessions table and the policy report: what a connection is and grants.

Everything a server told us is escaped in HTML and sanitized in text::

    session_html(sess)          # the card (RemoteSession._repr_html_)
    SessionTable(list(registry), registry.default)     # %rpyc_sessions
    PolicyReport(sess, policy, magics)                  # %rpyc_policy
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rpyc_ipy.core.policy import SecurityPolicy
from rpyc_ipy.ipython.text import AMBER, GREEN, RED, RESET, escape, sanitize_text

if TYPE_CHECKING:
    from rpyc_ipy.ipython.session import RemoteSession
    from rpyc_ipy.ipython.settings import MagicsSettings, RPyCPolicy

__all__ = ["JobTable", "PolicyReport", "SessionTable", "session_facts", "session_html",
           "session_text"]


def _rtt(session: RemoteSession) -> str:
    return "?" if session.rtt is None else f"{session.rtt * 1e3:.2f} ms"


def _grants(session: RemoteSession) -> list[tuple[str, str]]:
    grants = session.info.get("grants")
    out = []
    if type(grants) is tuple:
        for pair in grants:
            if type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str:
                out.append((pair[0], str(pair[1])))
    return out


def _local_policy(session: RemoteSession) -> list[tuple[str, str]]:
    """What this side grants the server: the keys that differ from the defaults."""
    mine = session.conn.policy.describe()
    default = SecurityPolicy().describe()
    return [(k, str(v)) for k, v in mine.items() if default.get(k) != v]


def session_facts(session: RemoteSession) -> list[tuple[str, str, str]]:
    """``(label, value, level)`` rows of a session card; level: ok, warn, danger, info."""
    facts = session.transport_facts()
    rows: list[tuple[str, str, str]] = []
    state = "closed" if session.closed else "open"
    rows.append(("state", state, "danger" if session.closed else "ok"))
    rows.append(("peer", facts["peer"], "info"))
    if not facts["encrypted"]:
        level = "warn" if facts["loopback"] else "danger"
        where = "loopback" if facts["loopback"] else "NOT loopback: anyone on the path can read it"
        rows.append(("transport", f"TCP, plaintext ({where})", level))
    else:
        parts = [facts["transport"], facts.get("version") or "", facts.get("cipher") or ""]
        rows.append(("transport", " ".join(p for p in parts if p), "ok"))
        if facts.get("fingerprint"):
            rows.append(("server certificate", f"SHA-256 {facts['fingerprint']}", "info"))
    user = session.user or session.info.get("user")
    rows.append(("user", str(user) if user else "none (unauthenticated)",
                 "ok" if user else "warn"))
    rows.append(("round trip", _rtt(session), "info"))
    service = session.info.get("service", "?")
    if session.kind == "classic":
        how = "the engine was shipped there and runs cells in the server's own process" \
            if session.has_engine else "cells use plain execute/eval in the server's process"
        rows.append(("service", f"classic: the server runs anything sent to it; {how}",
                     "danger"))
    elif session.kind == "execution":
        python = session.info.get("python", "?")
        rows.append(("service", f"{service} (engine {session.info.get('engine', '?')}, "
                     f"Python {python} on {session.info.get('host', '?')}, "
                     f"pid {session.info.get('pid', '?')})", "ok"))
    else:
        hint = "; a classic server: reconnect with --classic to run cells" \
            if service in ("SLAVE", "CLASSIC") else ""
        rows.append(("service", f"{service}: netrefs only, no cells{hint}", "warn"))
    rows.extend(_worker_facts(session))
    grants = _grants(session)
    if grants:
        rows.append(("server grants", ", ".join(f"{k}={v}" for k, v in grants),
                     "danger" if session.kind == "classic" else "info"))
    local = _local_policy(session)
    rows.append(("we grant", ", ".join(f"{k}={v}" for k, v in local) if local else
                 "restrictive defaults (callbacks we hand over only)",
                 "warn" if local else "ok"))
    if session.fallback_reason:
        rows.append(("note", f"engine not shipped: {session.fallback_reason}", "warn"))
    if session.channel_note:
        rows.append(("note", sanitize_text(session.channel_note), "warn"))
    return rows


def _worker_facts(session: RemoteSession) -> list[tuple[str, str, str]]:
    """The server-side session's rows: its worker, this connect, restarts, a death."""
    if not session.has_worker:
        return []
    remote = session.remote
    rows: list[tuple[str, str, str]] = []
    died = remote.get("died")
    if died:
        rows.append(("worker", f"died: {died}; its namespace is gone: "
                     f"%rpyc_restart {session.name} starts a fresh one", "danger"))
    else:
        running = remote.get("running")
        count = len(running) if type(running) is tuple else 0
        how = "re-attached" if remote.get("reattached") is True else "started fresh"
        if count:
            how += f", {count} cell{'s' if count > 1 else ''} running"
        shell = remote.get("shell")
        runs = f"; cells run in {sanitize_text(shell)}" if type(shell) is str else ""
        rows.append(("worker", f"pid {remote.get('pid', '?')} ({how}){runs}", "ok"))
    restarts = remote.get("restarts")
    if type(restarts) is int and restarts:
        rows.append(("restarts", str(restarts), "info"))
    return rows


_COLOURS = {"ok": GREEN, "warn": AMBER, "danger": RED, "info": ""}
_CSS = {"ok": "color:#2e7d32", "warn": "color:#b26a00", "danger": "color:#c62828;font-weight:bold",
        "info": ""}


def session_text(session: RemoteSession) -> str:
    """The session card as text (``repr``)."""
    lines = [f"RemoteSession {session.name!r} ({session.kind})"]
    for label, value, level in session_facts(session):
        colour = _COLOURS[level]
        lines.append(f"  {label:<19}{colour}{sanitize_text(value)}{RESET if colour else ''}")
    return "\n".join(lines)


def session_html(session: RemoteSession) -> str:
    """The session card as HTML; every remote string is escaped."""
    rows = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{escape(label)}</th>'
        f'<td style="text-align:left;{_CSS[level]}">{escape(value)}</td></tr>'
        for label, value, level in session_facts(session))
    return (f'<div class="rpyc-ipy-session"><b>RemoteSession {escape(session.name)}</b> '
            f'<span style="opacity:.7">({escape(session.kind)})</span>'
            f'<table style="margin-top:.3em">{rows}</table></div>')


class SessionTable:
    """``%rpyc_sessions``: every session, one row each."""

    def __init__(self, sessions: list[RemoteSession], default: str) -> None:
        self.sessions = sessions
        self.default = default

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for s in self.sessions:
            facts = s.transport_facts()
            transport = facts["transport"] + ("" if facts["encrypted"] else " (plaintext)")
            out.append(("*" if s.name == self.default else "", s.name, facts["peer"], transport,
                        str(s.user or s.info.get("user") or "-"), s.kind,
                        "closed" if s.closed else "open", _rtt(s), str(s.executions)))
        return out

    HEADER = ("", "name", "peer", "transport", "user", "kind", "state", "rtt", "cells")

    def __repr__(self) -> str:
        if not self.sessions:
            return "no sessions (connect with %rpyc_connect [NAME=]HOST:PORT)"
        rows = [self.HEADER, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows)

    def _repr_html_(self) -> str:
        if not self.sessions:
            return "<i>no sessions (connect with %rpyc_connect [NAME=]HOST:PORT)</i>"
        head = "".join(f"<th>{escape(h)}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows())
        return f"<table><tr>{head}</tr>{body}</table>"


class JobTable:
    """``%rpyc_jobs``: a session's running and finished jobs (and kept cells)."""

    HEADER = ("id", "kind", "status", "cell", "started", "elapsed", "code")

    def __init__(self, session: str, jobs: list[dict[str, Any]]) -> None:
        self.session = session
        self.jobs = jobs

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for job in self.jobs:
            started = job.get("started")
            elapsed = job.get("elapsed")
            out.append((
                sanitize_text(str(job.get("id", "?"))),
                "job" if job.get("background") is True else "cell",
                sanitize_text(str(job.get("status", "?"))),
                str(job.get("count", "")),
                time.strftime("%H:%M:%S", time.localtime(started))
                if type(started) in (int, float) else "?",
                f"{elapsed:.1f} s" if type(elapsed) in (int, float) else "?",
                sanitize_text(str(job.get("code", "")))[:60]))
        return out

    def _empty(self) -> str:
        return f"no jobs on session {self.session!r} (start one with %%remote --bg)"

    def __repr__(self) -> str:
        if not self.jobs:
            return sanitize_text(self._empty())
        rows = [self.HEADER, *self.rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.HEADER))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                         for r in rows)

    def _repr_html_(self) -> str:
        if not self.jobs:
            return f"<i>{escape(self._empty())}</i>"
        head = "".join(f"<th>{escape(h)}</th>" for h in self.HEADER)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>"
                       for r in self.rows())
        return f"<table><tr>{head}</tr>{body}</table>"


class PolicyReport:
    """``%rpyc_policy``: what a session's server grants us, what we grant it, and the
    notebook's own policy traits (``RPyCPolicy``) and relevant ``RPyCMagics`` settings."""

    def __init__(self, session: RemoteSession, policy: RPyCPolicy,
                 settings: MagicsSettings) -> None:
        self.session = session
        self.policy = policy
        self.settings = settings

    def summary(self) -> list[tuple[str, str]]:
        """``(sentence, level)``: the answers first, in plain words: how the connection is
        protected, what this server may do to the notebook, what we may do there."""
        session, policy = self.session, self.policy
        facts = session.transport_facts()
        user = session.user or session.info.get("user")
        if facts["encrypted"]:
            who = f" as {user!r}" if user else ""
            link = (f"Encrypted ({facts['transport']}); you are logged in{who}.", "ok")
        elif facts["loopback"]:
            link = ("Not encrypted, on this machine only (loopback).", "warn")
        else:
            link = ("NOT encrypted across the network: anyone on the path can read and change "
                    "everything.", "danger")
        local = [key for key, _ in _local_policy(session)]
        if local:
            to_us = (f"The server may use more of this notebook than the defaults allow: "
                     f"{', '.join(local)}.", "danger" if "allow_all_attrs" in local else "warn")
        else:
            to_us = ("The server can reach only the callbacks you hand it; it cannot read "
                     "your variables.", "ok")
        if policy.trust_remote_display:
            shown = ("Its rich output is shown as it is, scripts included "
                     "(trust_remote_display is on).", "warn")
        elif policy.sanitize_remote_html:
            shown = ("Its HTML and SVG are shown sanitized; nothing it sends runs here.", "ok")
        else:
            shown = ("Its output is shown as text and images only; nothing it sends runs "
                     "here.", "ok")
        pickle = ("Values may be unpickled here when you ask with --pickle: that runs code "
                  "the server chose.", "warn") if session.pickle_allowed else \
            ("Values come by value without pickle; nothing is unpickled.", "ok")
        if session.kind == "classic":
            there = ("Classic mode: you (and this connection) can run anything in the server's "
                     "Python.", "danger")
        elif session.kind == "execution":
            where = "in a worker process of its own" if session.has_worker else \
                "in the server's process"
            there = (f"You can run cells there, {where}.", "ok")
        else:
            there = ("You can call the service's exposed methods only; no cells.", "info")
        return [link, to_us, shown, pickle, there]

    def sections(self) -> list[tuple[str, list[tuple[str, str, str]]]]:
        session = self.session
        facts = session_facts(session)
        connection = [row for row in facts if row[0] in (
            "state", "peer", "transport", "server certificate", "user", "round trip",
            "service", "note")]
        grants = [(k, v, "danger" if session.kind == "classic" else "info")
                  for k, v in _grants(session)]
        if not grants:
            grants = [("(not reported)", "a plain service: only its exposed_ members, "
                       "as its RPyC policy allows", "info")]
        default = SecurityPolicy().describe()
        mine = session.conn.policy.describe()
        local = [(k, str(v), "info" if default.get(k) == v else "warn")
                 for k, v in sorted(mine.items())]
        traits = [(name, repr(getattr(self.policy, name)),
                   "warn" if name in ("trust_remote_display", "allow_pickle") and
                   getattr(self.policy, name) else "info")
                  for name in sorted(self.policy.trait_names(config=True))]
        magics = [(name, repr(getattr(self.settings, name)), "info") for name in (
            "default_session", "default_timeout", "request_timeout", "interrupt_grace",
            "stream", "capture_fd", "completion")]
        pickle = "yes" if session.pickle_allowed else "no (needs allow_pickle on both sides)"
        values = [("push/pull by pickle", pickle, "warn" if session.pickle_allowed else "ok")]
        return [("connection", connection), ("the server grants us", grants),
                ("we grant the server (this connection's RPyC policy)", local),
                ("values", values), ("RPyCPolicy", traits), ("RPyCMagics", magics)]

    def __repr__(self) -> str:
        lines = [f"Policy of session {self.session.name!r}, in short:"]
        for sentence, level in self.summary():
            colour = _COLOURS[level]
            lines.append(f"  - {colour}{sanitize_text(sentence)}{RESET if colour else ''}")
        lines.append("In detail:")
        for title, rows in self.sections():
            lines.append(f"{title}:")
            for label, value, level in rows:
                colour = _COLOURS[level]
                lines.append(f"  {label:<36}{colour}{sanitize_text(value)}"
                             f"{RESET if colour else ''}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        points = "".join(f'<li style="{_CSS[level]}">{escape(sentence)}</li>'
                         for sentence, level in self.summary())
        parts = [f"<b>Policy of session {escape(self.session.name)}</b>",
                 f'<ul class="rpyc-ipy-policy-summary">{points}</ul>']
        for title, rows in self.sections():  # the details, closed until asked for
            body = "".join(
                f'<tr><th style="text-align:left;padding-right:1em">{escape(label)}</th>'
                f'<td style="text-align:left;{_CSS[level]}">{escape(value)}</td></tr>'
                for label, value, level in rows)
            parts.append(f"<details><summary>{escape(title)}</summary>"
                         f"<table>{body}</table></details>")
        return "<div class=\"rpyc-ipy-policy\">" + "".join(parts) + "</div>"
