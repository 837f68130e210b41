"""The HAL studio: a Qt window onto the background engine.

Never imports the ML stack; everything heavy runs in the engine process,
reached through ``studio.engine_client.EngineClient``.
"""

from studio.refcount_guard import install as _install_refcount_guard

_install_refcount_guard()  # before any Qt call: see studio/refcount_guard.py
