"""The protocol core: connections, netrefs, services, the security policy and its gate.

Everything here runs over any :class:`~rpyc_ipy.core.transport.Transport`; nothing
here opens a socket. Start with :mod:`rpyc_ipy.core.connection` (a connection over a
transport), :mod:`rpyc_ipy.core.service` (what one side exposes) and
:mod:`rpyc_ipy.core.policy` (what the peer may do, and the one ``authorize`` gate).
"""
