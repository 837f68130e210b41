"""The rating bar: buttons and keys give the right verdicts; typing is left alone."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit, QPushButton, QVBoxLayout, QWidget

from studio.rating_bar import VERDICTS, RatingBar


@pytest.fixture
def bar(qtbot):
    window = QWidget()
    layout = QVBoxLayout(window)
    rating = RatingBar()
    other = QPushButton("elsewhere")
    text = QLineEdit()
    for widget in (rating, other, text):
        layout.addWidget(widget)
    rating.install_shortcuts(window)
    rating.set_target(True, "Turn 1")
    qtbot.addWidget(window)
    window.show()
    window.activateWindow()
    qtbot.waitExposed(window)
    qtbot.waitUntil(window.isActiveWindow, timeout=3000)
    window.other, window.text, window.rating = other, text, rating
    got = []
    rating.sig_rated.connect(lambda v, n: got.append((v, n)))
    window.got = got
    return window


def test_buttons_emit_their_verdicts_with_the_note(qtbot, bar):
    bar.text.setText("")
    bar.rating.note.setText("B sounds like a chatbot")
    for verdict, _text, _key in VERDICTS:
        qtbot.mouseClick(bar.rating.buttons[verdict], Qt.MouseButton.LeftButton)
    assert [v for v, _ in bar.got] == [v for v, _, _ in VERDICTS]
    assert all(n == "B sounds like a chatbot" for _, n in bar.got)
    assert bar.rating.buttons["both_bad"].isChecked()


def test_buttons_show_their_shortcut():
    bar = RatingBar()
    assert bar.buttons["certainly_left"].text().endswith("[1]")
    assert bar.buttons["both_bad"].text().endswith("[0]")


@pytest.mark.parametrize("key,verdict", [(Qt.Key.Key_1, "certainly_left"),
                                         (Qt.Key.Key_2, "likely_left"), (Qt.Key.Key_3, "tie"),
                                         (Qt.Key.Key_4, "likely_right"),
                                         (Qt.Key.Key_5, "certainly_right"),
                                         (Qt.Key.Key_0, "both_bad")])
def test_digit_keys_rate_when_no_text_field_has_focus(qtbot, bar, key, verdict):
    bar.other.setFocus()
    qtbot.keyClick(bar.other, key)
    assert bar.got == [(verdict, "")]


def test_digits_typed_in_a_text_field_stay_text(qtbot, bar):
    bar.text.setFocus()
    qtbot.keyClicks(bar.text, "1234")
    assert bar.text.text() == "1234"
    assert bar.got == []
    qtbot.keyClicks(bar.rating.note, "50")
    assert bar.rating.note.text() == "50" and bar.got == []


def test_alt_digits_rate_even_while_typing(qtbot, bar):
    bar.text.setFocus()
    qtbot.keyClick(bar.text, Qt.Key.Key_4, Qt.KeyboardModifier.AltModifier)
    assert bar.got == [("likely_right", "")]
    assert bar.text.text() == ""


def test_disabled_bar_ignores_keys_and_clicks(qtbot, bar):
    bar.rating.set_target(False, "waiting")
    bar.other.setFocus()
    qtbot.keyClick(bar.other, Qt.Key.Key_1)
    bar.rating.on_verdict("tie")
    assert bar.got == []


def test_saved_rating_is_shown_checked_with_time(bar):
    rating = {"verdict": "likely_left", "note": "warmer", "updated_at": "2026-01-02T10:11:12+00:00"}
    bar.rating.set_target(True, "Turn 1", rating)
    assert bar.rating.buttons["likely_left"].isChecked()
    assert bar.rating.saved.text().startswith("✓ saved ")
    assert "Likely left" in bar.rating.saved.text()
    assert bar.rating.note.text() == "warmer"
