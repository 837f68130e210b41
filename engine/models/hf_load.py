"""Loading base models into transformers, shared by chat serving and training.

A GGUF file is dequantized once through transformers and kept as a plain
safetensors folder in the cache, so later loads (and training, which
transformers refuses on a model it thinks is quantized) read ordinary fp32
weights. A HF folder is loaded as it is, never running remote code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
import uuid
from pathlib import Path

from engine.errors import ModelFileError
from engine.models.spec import check_gguf_file, check_hf_folder
from engine.paths import cache_dir

CACHE_FORMAT = 1  # bump to re-convert every cached GGUF after a layout change
MARKER = "hal_dequantized.json"  # written last: a folder without it is not a cache
_TMP_PREFIX = ".tmp-"
_convert_lock = threading.Lock()  # one conversion at a time inside this process


def _offline() -> None:
    """The studio never reaches a hub; make sure transformers does not try."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def gguf_cache_key(gguf_path: Path) -> str:
    """Key for a GGUF's cache folder: its path, size and mtime, so an edited
    or replaced file is converted again."""
    path = Path(gguf_path).resolve()
    st = path.stat()
    raw = f"{CACHE_FORMAT}|{path}|{st.st_size}|{st.st_mtime_ns}"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:40]
    return f"{stem}-{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:16]}"


def dequantized_dir(gguf_path: Path) -> Path:
    """Where the safetensors copy of this GGUF lives (whether or not it exists yet)."""
    return cache_dir() / "dequantized" / gguf_cache_key(gguf_path)


def is_cached(folder: Path) -> bool:
    """True when ``folder`` is a complete cache written by ``dequantize_gguf``."""
    return (folder / MARKER).is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale_temps(root: Path) -> None:
    """Remove temp folders left by a conversion whose process died mid-write."""
    for tmp in root.glob(_TMP_PREFIX + "*"):
        try:
            pid = int(tmp.name.split("-")[-2])
        except (ValueError, IndexError):
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True)


def strip_quantization(model) -> None:
    """Make a GGUF-loaded model an ordinary trainable one: transformers keeps a
    quantizer on it (and a quantization_config) and then refuses to train."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions
            pass
    config = model.config
    if hasattr(config, "quantization_config"):
        try:
            delattr(config, "quantization_config")
        except AttributeError:
            config.quantization_config = None
    for attr in ("_pre_quantization_dtype",):
        if hasattr(config, attr):
            try:
                delattr(config, attr)
            except AttributeError:
                pass


_quiet_lock = threading.Lock()
_quiet_depth = 0


@contextlib.contextmanager
def _quiet_transformers():
    """No load-report table or progress bars on stderr while we load: we check the
    report ourselves and say in one line what is wrong."""
    global _quiet_depth
    from transformers.utils import logging as tlog

    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_transformers.saved = (tlog.get_verbosity(), tlog.is_progress_bar_enabled())
            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                level, bars = _quiet_transformers.saved
                tlog.set_verbosity(level)
                if bars:
                    tlog.enable_progress_bar()


def _names(keys, limit: int = 3) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_loading_info(info: dict, what: str) -> None:
    """Refuse a load whose report shows weights the config asks for but the files lack
    (transformers would fill them with random numbers), weights the files hold but the
    architecture has no place for, or weights of another shape."""
    missing = set(info.get("missing_keys") or ())
    unexpected = set(info.get("unexpected_keys") or ())
    mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys") or ()}
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing from the weights ({_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} in the weights but not in the architecture ({_names(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} of the wrong shape ({_names(mismatched)})")
    if parts:
        raise ModelFileError(
            f"{what} does not match its config.json: " + "; ".join(parts)
            + ". Loading it would run with random weights; fix config.json or the weight files.",
            kind="model_invalid")


@contextlib.contextmanager
def _one_gguf_parse():
    """Within the block, one parse of each GGUF header and one gguf tensor-name map per
    (architecture, blocks) serve every reader.

    Loading a GGUF through transformers parses its header three times (config,
    tokenizer, weights; pure Python over ~100k vocabulary entries for SmolLM2)
    and rebuilds gguf's tensor-name map once per module of the model (397 times
    for SmolLM2-135M). Under a profiler those two took about 55 of the first
    load's 83 seconds; the tensors themselves dequantize in about two. Both
    are looked up as ``from gguf import ...`` at call time, so swapping the
    package's attributes for caching ones is enough; they are put back after."""
    try:
        import gguf
    except ImportError:
        yield
        return
    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}
    maps: dict = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = real_reader(path, *args, **kwargs)
        return readers[key]

    def name_map(arch, n_blocks):
        if (arch, n_blocks) not in maps:
            maps[arch, n_blocks] = real_map(arch, n_blocks)
        return maps[arch, n_blocks]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map
        readers.clear()


def _load_gguf_direct(gguf_path: Path, dtype):
    """Read a GGUF through transformers (dequantized): (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        with _one_gguf_parse():
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            with _quiet_transformers():
                model, info = AutoModelForCausalLM.from_pretrained(
                    folder, gguf_file=name, dtype=dtype, local_files_only=True, trust_remote_code=False,
                    output_loading_info=True)
    except Exception as exc:  # transformers raises many kinds on an unsupported file
        raise ModelFileError(
            f"transformers cannot read {gguf_path.name}: {exc}",
            "The transformers backend supports the GGUF architectures and quantization "
            "types that transformers can dequantize; the llama.cpp backend may still serve it.",
            kind="model_invalid") from None
    check_loading_info(info, gguf_path.name)
    if not tokenizer.chat_template:
        template = _gguf_chat_template(gguf_path)
        if template:
            tokenizer.chat_template = template
    return model, tokenizer


def _gguf_chat_template(gguf_path: Path) -> str | None:
    """The chat template stored in the GGUF header, if transformers dropped it."""
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
        if field is None:
            return None
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except Exception:
        return None


def dequantize_gguf(gguf_path: Path, *, dtype=None) -> Path:
    """Convert ``gguf_path`` into a cached safetensors folder (once) and return it.

    The folder is written under a temporary name and renamed into place after
    a marker file, so a kill mid-write never leaves a cache that gets used.
    """
    import torch

    _offline()
    gguf_path = Path(gguf_path)
    target = dequantized_dir(gguf_path)
    if is_cached(target):  # the key holds size and mtime, so the file is unchanged
        return target
    check_gguf_file(gguf_path)
    dtype = dtype or torch.float32
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    with _convert_lock:
        if is_cached(target):
            return target
        _sweep_stale_temps(root)
        started = time.perf_counter()
        model, tokenizer = _load_gguf_direct(gguf_path, dtype)
        strip_quantization(model)
        tmp = root / f"{_TMP_PREFIX}{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            st = gguf_path.stat()
            meta = {"format": CACHE_FORMAT, "source": str(gguf_path.resolve()),
                    "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "dtype": str(dtype).replace("torch.", ""),
                    "convert_s": round(time.perf_counter() - started, 2)}
            (tmp / MARKER).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            if is_cached(target):  # another process finished first: keep its copy
                return target
            if target.exists():  # an incomplete leftover from an older crash
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(tmp, target)
            except OSError:
                if not is_cached(target):  # unless another process just won the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        del model
        print(f"[hf_load] dequantized {gguf_path.name} into {target} "
              f"in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return target


def _load_folder(folder: Path, dtype, what: str):
    """Load a safetensors model folder and its tokenizer, offline and without remote code."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(folder), local_files_only=True, trust_remote_code=False)
        with _quiet_transformers():
            model, info = AutoModelForCausalLM.from_pretrained(
                str(folder), dtype=dtype, use_safetensors=True, local_files_only=True,
                trust_remote_code=False, output_loading_info=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{what} cannot be loaded: {first}", str(exc),
                             kind="model_invalid") from None
    check_loading_info(info, what)
    return model, tokenizer


def load_base(path, source_kind: str, *, dtype=None):
    """(model, tokenizer) for a base model: fp32, eval mode, with no quantizer,
    ready for inference or for attaching a LoRA to train.

    ``source_kind`` is "gguf" (dequantized through the cache) or "hf" (a local
    Hugging Face folder with safetensors weights).
    """
    import torch

    _offline()
    path = Path(path)
    dtype = dtype or torch.float32
    if source_kind == "gguf":
        folder = dequantize_gguf(path, dtype=dtype)
        model, tokenizer = _load_folder(folder, dtype, f"The cached copy of {path.name}")
        strip_quantization(model)  # the cache has none; a second guard costs nothing
    elif source_kind == "hf":
        check_hf_folder(path)
        model, tokenizer = _load_folder(path, dtype, f"The model folder {path}")
    else:
        raise ValueError(f"unknown source kind {source_kind!r}")
    model.eval()
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token  # batching and TRL need a pad token
    return model, tokenizer
