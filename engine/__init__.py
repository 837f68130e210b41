"""The HAL studio's background engine: models, scoring, training and the store.

Runs as a child process of the studio (``python -m engine``) or in-process
for the ``hal`` command line. Never imports Qt.
"""

__version__ = "0.1.0"
