"""The studio's look: Fusion, a quiet light palette, readable text sizes."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#2b6cb0"

STYLE = f"""
QMainWindow, QDockWidget > QWidget {{ background: #f4f5f7; }}
QDockWidget::title {{ padding: 4px 8px; background: #e9ecf0; color: #4a5568; }}
#modelsFrame {{ background: #ffffff; border: 1px solid #dfe3e8; border-radius: 6px; }}
#modelPicker {{ background: transparent; }}
#pickerTitle {{ font-weight: 600; color: #2d3748; min-width: 64px; }}
#pickerStatus {{ color: #4a5568; font-size: 9pt; }}
#chatPane {{ background: #ffffff; border: 1px solid #dfe3e8; border-radius: 6px; }}
#paneHeader {{ background: #f8f9fb; border-bottom: 1px solid #e6e9ee;
               border-top-left-radius: 6px; border-top-right-radius: 6px; }}
#paneSide {{ font-weight: 700; color: #2d3748; min-width: 44px; }}
#paneModel {{ color: #4a5568; }}
#paneBody {{ background: #ffffff; }}
#turnCaption {{ color: #a0aec0; font-size: 8pt; font-weight: 600; }}
#promptBubble {{ background: #eef2f7; border-radius: 6px; }}
#youCaption {{ color: #5a6b80; font-size: 8.5pt; font-weight: 600; }}
#promptText {{ color: #1a202c; }}
#modelCaption {{ color: {ACCENT}; font-size: 8.5pt; font-weight: 600; }}
#replyText {{ color: #1a202c; }}
#statsLine {{ color: #718096; font-size: 8.5pt; }}
#loopMarker {{ color: #9c4221; background: #fffaf0; border: 1px solid #fbd38d; border-radius: 3px;
              padding: 0 4px; font-size: 8.5pt; }}
#errorText {{ color: #9b2c2c; background: #fff5f5; border: 1px solid #fed7d7;
              border-radius: 4px; padding: 6px 8px; }}
#emptyHint, #hint {{ color: #8a94a3; }}
#crashBanner {{ background: #fff5f5; border: 1px solid #feb2b2; border-radius: 6px; }}
#crashMessage {{ color: #822727; }}
#restartButton {{ background: #c53030; color: white; border: none; border-radius: 4px;
                  padding: 5px 14px; font-weight: 600; }}
#restartButton:hover {{ background: #9b2c2c; }}
#ratingBar {{ background: #ffffff; border: 1px solid #dfe3e8; border-radius: 6px; }}
#ratingCaption {{ font-weight: 600; color: #2d3748; }}
#ratingSaved[tone="ok"] {{ color: #2f855a; font-weight: 600; }}
#ratingSaved[tone="warn"] {{ color: #b7791f; }}
#ratingSaved[tone="error"] {{ color: #c53030; font-weight: 600; }}
QPushButton#verdictButton {{ padding: 5px 8px; border: 1px solid #cbd2da; border-radius: 4px;
                             background: #f8f9fb; color: #2d3748; }}
QPushButton#verdictButton:hover {{ background: #edf2f7; }}
QPushButton#verdictButton:checked {{ background: {ACCENT}; border-color: {ACCENT}; color: white; }}
QPushButton#verdictButton:disabled {{ color: #a0aec0; background: #f4f5f7; border-color: #e2e8f0; }}
QPushButton#sendButton {{ background: {ACCENT}; color: white; border: none; border-radius: 4px;
                          padding: 7px 16px; font-weight: 600; }}
QPushButton#sendButton:disabled {{ background: #a3bfdc; }}
QPlainTextEdit#promptBox {{ background: #ffffff; border: 1px solid #cbd2da; border-radius: 6px;
                            padding: 4px; }}
QPlainTextEdit#promptBox:focus {{ border-color: {ACCENT}; }}
QPlainTextEdit#logPanel {{ background: #1e2329; color: #d5dae0; border: none; }}
QPushButton#paneButton {{ padding: 3px 10px; }}
#engineStatus {{ padding: 0 8px; }}
QPushButton#logToggle {{ border: none; color: #4a5568; padding: 2px 8px; }}
QPushButton#logToggle:checked {{ color: #2b6cb0; }}
QListWidget#historyPanel {{ background: #ffffff; border: none; }}
"""


def apply(app: QApplication) -> None:
    app.setStyle("Fusion")
    palette = app.palette()
    palette.setColor(QPalette.ColorRole.Window, QColor("#f4f5f7"))
    palette.setColor(QPalette.ColorRole.Base, QColor("#ffffff"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor("#f7f8fa"))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.Text, QColor("#1a202c"))
    palette.setColor(QPalette.ColorRole.WindowText, QColor("#1a202c"))
    app.setPalette(palette)
    font = QFont(app.font())
    if font.pointSizeF() < 10:
        font.setPointSizeF(10)
    app.setFont(font)
    app.setStyleSheet(STYLE)
