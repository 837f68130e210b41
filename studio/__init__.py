"""The HAL studio: a Qt window onto the background engine.

Never imports the ML stack; everything heavy runs in the engine process,
reached through ``studio.engine_client.EngineClient``.
"""
