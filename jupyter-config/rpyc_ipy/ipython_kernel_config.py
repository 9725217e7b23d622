# rpyc_ipy: an example ipython_kernel_config.py that sets every setting of the extension.
#
# Every value below is the default; change what you need and delete the rest.
# This file is an example and is not loaded from where it is installed
# ({sys.prefix}/etc/jupyter/rpyc_ipy/). IPython kernels read their configuration from:
#
#   ~/.ipython/profile_default/ipython_kernel_config.py     your profile (all kernels)
#   {sys.prefix}/etc/ipython/ipython_kernel_config.py       one environment
#   /etc/ipython/ipython_kernel_config.py                   the whole machine
#
# `ipython_config.py` in the same places also applies to the terminal IPython.
# The same settings can be changed in a running notebook with %config, e.g.
#   %config RPyCPolicy.trust_remote_display = True
# and are shown by %rpyc_policy. Changes apply at once, to open sessions too.
#
# To load the extension in every kernel (instead of %load_ext rpyc_ipy):
#   c.InteractiveShellApp.extensions = ["rpyc_ipy"]
# or pick the "Python 3 (rpyc_ipy)" kernel, which does that for you.

c = get_config()  # noqa: F821 (provided by IPython when it loads this file)

# -- RPyCPolicy: what this notebook trusts from servers, and grants them ----------------------
# Everything defaults to the safe choice: remote display hooks are never run, nothing is
# unpickled, sizes and times are bounded.

# Render rich output (HTML, Markdown, SVG, LaTeX, JSON) that a server sends, and ask
# servers for a netref's own display (its _repr_*_ hooks, by value, in one request). A
# malicious server can run JavaScript in your notebook through HTML: enable this only
# for servers you trust. Off: text, raster images, and (with sanitize_remote_html)
# HTML and SVG made inert.
c.RPyCPolicy.trust_remote_display = False

# Without trust_remote_display, still show a server's HTML (tables, pandas DataFrames)
# after removing scripts, styles, event handlers, links, forms, frames and external
# loads, and its SVG as an image (a browser runs no script in an image).
# False: text and raster images only.
c.RPyCPolicy.sanitize_remote_html = True

# MIME types rendered from any server (they cannot run code in the notebook).
c.RPyCPolicy.safe_mimetypes = ["text/plain", "image/png", "image/jpeg", "image/gif"]

# MIME types rendered only with trust_remote_display (text/html and image/svg+xml
# without it too, made inert, while sanitize_remote_html is on).
c.RPyCPolicy.trusted_mimetypes = [
    "text/html", "text/markdown", "image/svg+xml", "text/latex", "application/json",
]

# Let %rpyc_push/%rpyc_pull fall back to pickle for values that are not plain data, when
# the server allows it too. Unpickling runs code the sender chose: only for servers you
# trust. Also sets allow_pickle on the connections' policy.
c.RPyCPolicy.allow_pickle = False

# Honour %rpyc_connect --insecure and RemoteKernel.insecure (plaintext to a
# non-loopback host). Set False to forbid plaintext beyond this machine whatever the
# command says.
c.RPyCPolicy.allow_insecure = True

# Honour %rpyc_connect --classic and RemoteKernel.classic (a server that runs anything;
# never a default).
c.RPyCPolicy.allow_classic = True

# Extra RPyC config keys for new connections: what this notebook grants servers (e.g.
# {"allow_public_attrs": False}). The defaults are the restrictive ones; servers can
# call only the callbacks the magics hand them.
c.RPyCPolicy.connection_config = {}

# Size guard for one %rpyc_pull value.
c.RPyCPolicy.max_pull_bytes = 64 << 20  # 64 MiB

# Size guard for one %rpyc_push value.
c.RPyCPolicy.max_push_bytes = 64 << 20  # 64 MiB

# Largest display value (one MIME type) accepted from a server.
c.RPyCPolicy.max_bundle_bytes = 8 << 20  # 8 MiB

# Characters of a cell's output held in the notebook, waiting to be shown (or, with
# --no-stream, until the cell ends). Output a server sends faster than that is dropped,
# and a note in the cell says how much.
c.RPyCPolicy.max_output_backlog = 32 << 20  # 32 Mi characters

# Characters of output one cell shows (IPython keeps what a cell shows in memory, and so
# does the browser); what a server sends past it is not shown, and the cell ends with a
# note saying how much.
c.RPyCPolicy.max_cell_output = 64 << 20  # 64 Mi characters

# Characters of a netref's repr shown at the prompt (the rest is cut).
c.RPyCPolicy.max_repr_chars = 10000

# Names of a netref's dir() kept for completion and browsing.
c.RPyCPolicy.max_dir_names = 5000

# Children shown per node in %rpyc_browse.
c.RPyCPolicy.max_items = 100

# Seconds a remote repr or display may take before the prompt shows a placeholder.
c.RPyCPolicy.display_timeout = 5.0
# -- RPyCMagics: how %rpyc_connect, %%remote and the other magics behave ----------------------

# The session %remote/%%remote use without -s (%rpyc_use sets it).
c.RPyCMagics.default_session = ""

# Seconds a %%remote cell may run before it is cancelled (0: no limit).
c.RPyCMagics.default_timeout = 0.0

# Seconds for a short request (completion, push, pull, browse, ping).
c.RPyCMagics.request_timeout = 30.0

# Seconds to connect and authenticate.
c.RPyCMagics.connect_timeout = 10.0

# Seconds a cell may take to stop after the stop button (a SIGINT in the session's
# worker) before the worker is restarted, which loses the session's namespace; a second
# stop restarts at once. On servers without workers (classic ones): how long to wait for
# the server to confirm the cancel.
c.RPyCMagics.interrupt_grace = 5.0

# Seconds the server waits between cancel escalation steps.
c.RPyCMagics.cancel_grace = 0.25

# Show remote output while a cell runs (else at the end).
c.RPyCMagics.stream = True

# Seconds between output batches sent by the server while a cell runs.
c.RPyCMagics.stream_interval = 0.05

# Also capture C-level output (file descriptors 1 and 2) on the server.
c.RPyCMagics.capture_fd = True

# Completion on netrefs and in %%remote cells: 'cached' (dir and attribute lookups are
# cached for completion_ttl), 'live' (asked every time), 'off'.
c.RPyCMagics.completion = "cached"

# Seconds a cached completion lookup stays valid.
c.RPyCMagics.completion_ttl = 10.0

# Seconds one completion request may take (TAB never hangs longer).
c.RPyCMagics.completion_timeout = 2.0

# Show the session card after %rpyc_connect.
c.RPyCMagics.show_card = True

# Seconds long work (connecting, %rpyc_push/%rpyc_pull, %%remote on several sessions)
# runs before a progress line appears; quicker work shows none. 0: always.
c.RPyCMagics.progress_delay = 0.5
# -- RemoteKernel: the connection of the remote kernel (python -m rpyc_ipy.kernel) --------------
# A kernelspec installed with `python -m rpyc_ipy.kernel install ...` carries these on its
# command line (--RemoteKernel.host=...), which wins over this file; set them here only
# for a kernelspec that does not. They apply to the remote kernel only: an ordinary
# IPython kernel ignores them. There is no password setting, on purpose: the password
# comes from the environment variable named by password_env, from an owner-only
# credentials_file, or from a prompt in the notebook.
# The remote kernel also follows the RPyCPolicy and RPyCMagics settings above (display
# trust, size limits, timeouts, streaming).

# The server to run cells on (an rpyc_ipy execution service).
# c.RemoteKernel.host = "gpu.example.org"

# Its TCP port.
# c.RemoteKernel.port = 18821

# Log in with TLS-SRP as this user (the password comes from password_env,
# credentials_file or a prompt; never from the configuration).
# c.RemoteKernel.srp_user = "alice"

# Name of the environment variable that holds the SRP password.
# c.RemoteKernel.password_env = "GPU_PASSWORD"

# A file whose first line is the SRP password. It must be yours and owner-only (chmod
# 600): one that the group or others can read is refused.
# c.RemoteKernel.credentials_file = ""

# TLS client certificate (PEM).
# c.RemoteKernel.cert = ""

# TLS client private key (PEM).
# c.RemoteKernel.key = ""

# CA bundle that signed the server certificate (PEM).
# c.RemoteKernel.ca = ""

# Pin the server certificate by its SHA-256 fingerprint.
# c.RemoteKernel.fingerprint = ""

# TLS verified against the system CA store (no client certificate).
# c.RemoteKernel.tls = False

# The server is a classic RPyC server (it runs anything sent to it). Never a default; a
# warning is shown when the kernel connects.
# c.RemoteKernel.classic = False

# Allow plaintext TCP to a host that is not this machine (anyone on the path can read
# and change the traffic).
# c.RemoteKernel.insecure = False

# Seconds to connect and authenticate, and for the liveness check before each cell.
# c.RemoteKernel.timeout = 10.0

# The name the session is bound to in %%local cells (and in the %rpyc_* magics).
# c.RemoteKernel.session_name = "remote"
