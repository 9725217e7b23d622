"""The sans-I/O protocol: brine, vinegar, framing and the message engine.

Bytes in, events out; events in, bytes out. Nothing here opens a socket, starts a
thread or reads a clock (a test enforces it). Start with
:class:`~rpyc_ipy.protocol.engine.Engine`.

"Wire spec §N" in these docstrings cites ``tests/data/spec/wire-protocol.md``, the
facts sheet of RPyC 6.0.2's protocol kept with the tests.
"""
