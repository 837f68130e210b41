"""Test-wide settings: offline, and every data directory in a temp folder."""

import os
import tempfile

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HAL_STUDIO_DATA", tempfile.mkdtemp(prefix="hal-test-data-"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
