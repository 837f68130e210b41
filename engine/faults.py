"""Faults that only tests turn on, to check how the studio survives them.

``HAL_ENGINE_FAULT`` holds comma-separated ``<fault>-on:<command>`` entries,
read once when the engine starts:

- ``abort-on:generate``: when a ``generate`` command starts, write a line
  naming the fault to stderr and abort the process (SIGABRT), as native code
  does on a failed assertion.
- ``oom-on:load``: run each ``load`` with the address space capped a little
  above what the engine uses now, so whatever the command allocates really
  fails; the cap is lifted when the command ends.
- ``reader-on:ping``: after the reader has handled a ``ping``, raise in the
  reader thread itself (outside every handler), as a bug there would; the
  engine must then end with a nonzero exit, not live on deaf.

With ``HAL_ENGINE_FAULT_ONCE=<file>`` a fault fires only if that file can be
created, so a restarted engine (same environment) runs normally. Nothing
here acts unless the variable is set, and the engine says so on stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

ENV = "HAL_ENGINE_FAULT"
ONCE_ENV = "HAL_ENGINE_FAULT_ONCE"
KINDS = ("abort", "oom", "reader")
OOM_HEADROOM_BYTES = 64 * 2**20
_rlimit_lock = threading.Lock()


class Faults:
    """The faults asked for, by command."""

    def __init__(self, spec: str, once_file: str | None = None):
        self.by_command: dict[str, str] = {}
        self.once_file = once_file or None
        for entry in filter(None, (e.strip() for e in spec.split(","))):
            kind, sep, command = entry.partition("-on:")
            if not sep or kind not in KINDS or not command:
                raise ValueError(f"{ENV}: {entry!r} is not <{'|'.join(KINDS)}>-on:<command>")
            self.by_command[command] = kind

    def _claim(self) -> bool:
        if not self.once_file:
            return True
        try:
            os.close(os.open(self.once_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True

    def after_read(self, command: str | None) -> None:
        """The reader thread calls this after each line; a ``reader`` fault raises here."""
        if command and self.by_command.get(command) == "reader" and self._claim():
            raise RuntimeError(f"injected fault ({ENV}): the reader thread fails after '{command}'")

    @contextlib.contextmanager
    def around(self, command: str):
        """Wrap one command's run with the fault asked for it, if any."""
        kind = self.by_command.get(command)
        if kind == "reader":
            kind = None  # acts in the reader, not around the command
        if kind is None or not self._claim():
            yield
        elif kind == "abort":
            sys.stderr.write(f"hal engine: FATAL injected fault ({ENV}): native abort while running "
                             f"'{command}'\n")
            sys.stderr.flush()
            os.abort()
        else:
            with _address_space_capped():
                yield


def _vm_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def _address_space_capped():
    import resource

    with _rlimit_lock:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = _vm_bytes() + OOM_HEADROOM_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def from_env(environ=os.environ) -> Faults | None:
    spec = environ.get(ENV, "").strip()
    if not spec:
        return None
    faults = Faults(spec, environ.get(ONCE_ENV))
    print(f"hal engine: test fault injection is on: {spec}", file=sys.stderr, flush=True)
    return faults
