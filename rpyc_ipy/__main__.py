"""``python -m rpyc_ipy``: the ``rpyc-ipy`` command line (see :mod:`rpyc_ipy.cli`)."""

import sys

from rpyc_ipy.cli import main

sys.exit(main())
