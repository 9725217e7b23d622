"""``python -m rpyc_ipy.kernel``: manage kernelspecs, or (as Jupyter runs it) start the kernel.

``install``, ``list``, ``remove`` (and ``-h``) manage kernelspecs
(:mod:`rpyc_ipy.kernel.install`); anything else starts the kernel with those
arguments (``-f CONNECTION_FILE --RemoteKernel.host=...``).
"""

from __future__ import annotations

import sys

from rpyc_ipy.kernel.install import ACTIONS, main


def _run() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ACTIONS or args[0] in ("-h", "--help"):
        sys.exit(main(args))
    from rpyc_ipy.kernel.kernel import launch

    launch(args)


if __name__ == "__main__":
    _run()
