"""Loaded base models, shared by every pane that uses them.

Both panes on the same base (with or without adapters) share one copy of its
weights: the pool keys models by (backend, resolved path) and hands adapters
to ``generate`` per call.
"""

from __future__ import annotations

import threading
from pathlib import Path

from engine.errors import AdapterError, BadRequest
from engine.models.base import LoadedModel
from engine.models.spec import ModelSpec, check_adapter_path, resolve_source


def choose_backend(spec: ModelSpec) -> tuple[str, str, Path, str | None]:
    """(backend, source kind, path, adapter path) for a spec, checked on disk."""
    kind, path = resolve_source(spec.source)
    adapter_path: str | None = None
    adapter_kind = None
    if spec.adapter:
        adapter_kind, apath = check_adapter_path(spec.adapter)
        adapter_path = str(apath)
    backend = spec.backend
    if backend == "auto":
        if kind == "hf":
            backend = "transformers"
        elif adapter_kind == "peft":
            gguf_twin = sorted(Path(adapter_path).glob("*.gguf"))
            if gguf_twin:  # rounds write a GGUF LoRA beside the PEFT files
                adapter_path, adapter_kind = str(gguf_twin[0]), "gguf"
                backend = "llamacpp"
            else:
                backend = "transformers"
        else:
            backend = "llamacpp"
    if backend == "llamacpp":
        if kind != "gguf":
            raise BadRequest("The llama.cpp backend needs a .gguf model; use transformers for a folder.")
        if adapter_kind == "peft":
            twins = sorted(Path(adapter_path).glob("*.gguf"))
            if not twins:
                raise AdapterError(
                    "This adapter has no GGUF LoRA file; the llama.cpp backend cannot serve it. "
                    "Choose the transformers backend.")
            adapter_path = str(twins[0])
    if backend == "transformers" and adapter_kind == "gguf":
        raise AdapterError("A GGUF LoRA file can only be served by the llama.cpp backend.")
    return backend, kind, path, adapter_path


class ModelPool:
    """Thread-safe cache of loaded base models."""

    def __init__(self, llama_options: dict | None = None):
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str], LoadedModel] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self.llama_options = dict(llama_options or {})

    def get(self, spec: ModelSpec) -> tuple[LoadedModel, str | None]:
        """The loaded base for ``spec`` (loading it once) and the adapter path."""
        backend, kind, path, adapter = choose_backend(spec)
        key = (backend, str(path.resolve()))
        with self._lock:
            if key in self._models:
                model = self._models[key]
                if adapter:
                    model.check_adapter(adapter)
                return model, adapter
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per model even when two panes ask at once
            with self._lock:
                model = self._models.get(key)
            if model is None:
                model = self._load(backend, kind, path)
                with self._lock:
                    self._models[key] = model
        if adapter:
            model.check_adapter(adapter)
        return model, adapter

    def _load(self, backend: str, kind: str, path: Path) -> LoadedModel:
        if backend == "llamacpp":
            from engine.models.llamacpp import LlamaCppModel

            return LlamaCppModel(path, **self.llama_options)
        from engine.models.hf import HFModel

        return HFModel(path, source_kind=kind)

    def loaded(self) -> list[dict]:
        with self._lock:
            return [m.info() for m in self._models.values()]

    def close(self) -> None:
        with self._lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            model.close()
