"""``python -m rpyc_ipy.cli`` (what :func:`rpyc_ipy.classic.connect_subproc` runs)."""

import sys

from rpyc_ipy.cli import main

sys.exit(main())
