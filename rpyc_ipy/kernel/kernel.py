"""``RemoteKernel``: ipykernel's ``IPythonKernel`` with :class:`RemoteKernelMixin` in front.

Jupyter starts it from a kernelspec (``python -m rpyc_ipy.kernel install ...``
writes one) as::

    python -m rpyc_ipy.kernel -f {connection_file} --RemoteKernel.host=H --RemoteKernel.port=P ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ipykernel.ipkernel import IPythonKernel

from rpyc_ipy._version import __version__
from rpyc_ipy.kernel.mixin import RemoteKernelMixin

__all__ = ["RemoteKernel", "launch"]


class RemoteKernel(RemoteKernelMixin, IPythonKernel):
    """An IPython kernel whose cells run on a remote rpyc_ipy execution service."""

    implementation = "rpyc_ipy"
    implementation_version = __version__

    @property
    def banner(self) -> str:  # type: ignore[override]
        user = f"{self.srp_user}@" if self.srp_user else ""
        return (f"{super().banner}\nrpyc_ipy remote kernel: cells run on {user}{self.where}; "
                "a cell starting with %%local runs here.\n")


def launch(argv: Sequence[str] | None = None, **kwargs: Any) -> None:
    """Start the kernel application (what ``python -m rpyc_ipy.kernel -f ...`` does)."""
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(argv=list(argv) if argv is not None else None,
                                kernel_class=RemoteKernel, **kwargs)
