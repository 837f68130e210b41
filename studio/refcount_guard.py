"""Keep ``None``, ``True`` and ``False`` alive under PySide6 6.12.0 on CPython 3.11.

Measured on this build: each call of a void Qt method from Python drops one
reference to ``None`` (``QWidget.setEnabled`` 1000 times: -1000), and
pyqtgraph's paint path drops references to ``True``. A long session, or a test
run with a few plot redraws, then reaches zero and the process aborts with
"none_dealloc" / "bool_dealloc" (often at exit). CPython 3.12 makes these
objects immortal; on 3.11 we add a reserve of references once, which no
session can use up. Remove this module when PySide6 is fixed or Python >= 3.12.
"""

from __future__ import annotations

import ctypes
import sys

RESERVE = 1 << 40  # references added to each singleton (the count is a 64-bit integer)
_installed = False


def install() -> bool:
    """Add the reserve (once per process); False where it is not needed or possible."""
    global _installed
    if _installed or sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return _installed
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += RESERVE
    _installed = True
    return True
