"""Model picker: open a file or folder, recent entries, adapters, backend, cancel."""

import pytest

from studio.model_picker import OPEN_ADAPTER_DIR, OPEN_DIR, OPEN_FILE, ModelPicker
from studio.prefs import Prefs


@pytest.fixture
def picker(qtbot, data_dir):
    answers = {}
    p = ModelPicker("Model A", Prefs(data_dir / "prefs.json"),
                    ask_path=lambda what, _parent: answers.get(what, ""))
    qtbot.addWidget(p)
    specs = []
    p.sig_spec_changed.connect(specs.append)
    p.answers, p.specs = answers, specs
    return p


def activate(picker, combo, data):
    index = combo.findData(data)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_starts_on_the_bundled_model(picker):
    assert picker.spec() == {"source": "bundled", "adapter": None, "backend": "auto"}
    assert picker.source_combo.currentText() == "Bundled: SmolLM2-135M-Instruct"


def test_open_file_sends_spec_and_remembers_it(picker, data_dir):
    picker.answers[OPEN_FILE] = "/models/tiny.gguf"
    activate(picker, picker.source_combo, OPEN_FILE)
    assert picker.specs[-1]["source"] == "/models/tiny.gguf"
    assert picker.source_combo.currentText() == "tiny.gguf"
    again = ModelPicker("Model B", Prefs(data_dir / "prefs.json"))
    assert again.source_combo.findData("/models/tiny.gguf") > 0  # a recent entry


def test_cancelled_dialog_changes_nothing(picker):
    activate(picker, picker.source_combo, OPEN_DIR)  # no answer = cancelled
    assert picker.specs == []
    assert picker.spec()["source"] == "bundled"
    assert picker.source_combo.currentData() == "bundled"


def test_adapter_and_backend(picker):
    picker.answers[OPEN_ADAPTER_DIR] = "/adapters/round1"
    activate(picker, picker.adapter_combo, OPEN_ADAPTER_DIR)
    assert picker.specs[-1]["adapter"] == "/adapters/round1"
    activate(picker, picker.backend_combo, "transformers")
    assert picker.specs[-1] == {"source": "bundled", "adapter": "/adapters/round1",
                                "backend": "transformers"}
    activate(picker, picker.adapter_combo, None)
    assert picker.specs[-1]["adapter"] is None


def test_error_status_shows_the_message(picker):
    picker.set_status("error", "x.gguf is truncated: its tensors need 9 bytes but the file has 4.")
    assert picker.status.property("state") == "error"
    assert "is truncated" in picker.status.text()
