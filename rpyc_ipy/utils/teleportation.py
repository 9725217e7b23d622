"""RPyC's ``rpyc.utils.teleportation``: functions as brine data, from
:mod:`rpyc_ipy.core.teleport` (RPyC 6.0.2's layout, Python 3.11+ on both sides)."""

from rpyc_ipy.core.teleport import CODE_MARKER as CODEOBJ_MAGIC
from rpyc_ipy.core.teleport import export_function, import_function

__all__ = ["CODEOBJ_MAGIC", "export_function", "import_function"]
