"""RPyC's ``rpyc.utils.classic`` (also ``rpyc.classic``): this is :mod:`rpyc_ipy.classic`.

Our classic client exposes nothing to the server unless ``expose_local=True``.
"""

from rpyc_ipy.classic import *  # noqa: F403
from rpyc_ipy.classic import __all__  # noqa: F401
