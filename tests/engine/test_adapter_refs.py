"""How an adapter reference becomes what a backend serves, on the defaults a
newcomer has: backend ``auto``, the bundled GGUF base, and a round's adapter
folder (PEFT files with their GGUF LoRA twin ``adapter.gguf``), named by its
folder, its ``.gguf`` file, its id or a unique prefix of the id."""

from __future__ import annotations

import json

import pytest

from engine.errors import AdapterError
from engine.models.pool import choose_backend
from engine.models.spec import ModelSpec, resolve_adapter_ref


def _round_adapter(root, adapter_id="3f9a0c1d2e4b5a69"):
    folder = root / "adapters" / adapter_id
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (folder / "adapter.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    return folder


@pytest.fixture
def adapter(tmp_path, monkeypatch):
    monkeypatch.setenv("HAL_STUDIO_DATA", str(tmp_path))
    return _round_adapter(tmp_path)


@pytest.mark.parametrize("ref", ["folder", "gguf", "id", "prefix"])
def test_auto_backend_serves_a_round_adapter_on_the_bundled_gguf(adapter, ref):
    value = {"folder": str(adapter), "gguf": str(adapter / "adapter.gguf"),
             "id": adapter.name, "prefix": adapter.name[:6]}[ref]
    backend, kind, _path, served = choose_backend(ModelSpec(adapter=value))
    assert (backend, kind) == ("llamacpp", "gguf")
    assert served == str(adapter / "adapter.gguf")


def test_explicit_llamacpp_backend_takes_the_folder_too(adapter):
    backend, _kind, _path, served = choose_backend(ModelSpec(adapter=str(adapter), backend="llamacpp"))
    assert backend == "llamacpp" and served == str(adapter / "adapter.gguf")


def test_a_folder_without_gguf_twin_goes_to_transformers_under_auto(adapter):
    (adapter / "adapter.gguf").unlink()
    backend, _kind, _path, served = choose_backend(ModelSpec(adapter=str(adapter)))
    assert backend == "transformers" and served == str(adapter)


def test_unknown_and_ambiguous_ids_are_clear_errors(adapter, tmp_path):
    _round_adapter(tmp_path, "3f9a0c1d2e4b5a70")
    with pytest.raises(AdapterError, match="ambiguous"):
        resolve_adapter_ref("3f9a0c")
    with pytest.raises(AdapterError, match="not found"):
        resolve_adapter_ref("deadbeef00")
    with pytest.raises(AdapterError, match="not found"):  # a path-like value is never an id
        resolve_adapter_ref("../adapters/3f9a0c1d2e4b5a69x")
