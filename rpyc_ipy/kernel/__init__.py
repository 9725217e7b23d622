"""The remote kernel: a Jupyter kernel whose cells run on a remote Python.

* :class:`~rpyc_ipy.kernel.mixin.RemoteKernelMixin`: put it in front of ipykernel's
  ``IPythonKernel`` (or a subclass of it) to run cells remotely;
* :class:`~rpyc_ipy.kernel.kernel.RemoteKernel`: that kernel, ready to use;
* :mod:`rpyc_ipy.kernel.install`: kernelspecs for it (``install``, ``list``, ``remove``).

From a shell::

    python -m rpyc_ipy.kernel install --name gpu --host 10.0.0.5 --port 18821 \\
        --srp-user alice --password-env GPU_PASSWORD --user
    python -m rpyc_ipy.kernel list
    python -m rpyc_ipy.kernel remove gpu

(``rpyc-ipy kernel ...`` is the same command.) Jupyter then offers "gpu" in its
kernel list; its cells run on the server, ``%%local`` cells in the kernel.
"""

from __future__ import annotations

from rpyc_ipy._lazy import lazy_attributes

__all__ = ["RemoteKernel", "RemoteKernelMixin", "install_kernel_spec"]

# ipykernel is imported only when the kernel itself is wanted
_LAZY = {
    "RemoteKernel": "rpyc_ipy.kernel.kernel",
    "RemoteKernelMixin": "rpyc_ipy.kernel.mixin",
    "install_kernel_spec": "rpyc_ipy.kernel.install",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
