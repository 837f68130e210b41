"""Errors that cross the wire as data, each with a stable ``kind``."""

from __future__ import annotations


class EngineError(Exception):
    """An expected failure with a message fit to show a researcher."""

    kind = "engine_error"

    def __init__(self, message: str, detail: str = "", kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if kind:
            self.kind = kind

    def as_content(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message, "detail": self.detail}


class BadRequest(EngineError):
    kind = "bad_request"


class ModelFileError(EngineError):
    """A model file or folder that is missing, truncated or not a model."""

    kind = "model_invalid"


class AdapterError(EngineError):
    """An adapter that is missing or does not match its base model."""

    kind = "adapter_invalid"


class PromptTooLong(EngineError):
    kind = "prompt_too_long"


class Cancelled(EngineError):
    kind = "cancelled"
