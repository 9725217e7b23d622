"""``rpyc-ipy kernel``: the kernelspec commands of :mod:`rpyc_ipy.kernel.install`.

Importing this module registers the subcommand (see :mod:`rpyc_ipy.cli`).
"""

from __future__ import annotations

import argparse

from rpyc_ipy.cli.common import command


@command("kernel", help="install, list and remove kernelspecs of the remote kernel",
         description="Manage Jupyter kernelspecs whose cells run on an rpyc_ipy server "
                     "(the same as python -m rpyc_ipy.kernel).")
def _kernel_command(parser: argparse.ArgumentParser) -> None:
    from rpyc_ipy.kernel.install import add_arguments, run

    add_arguments(parser)
    parser.set_defaults(run=run)
