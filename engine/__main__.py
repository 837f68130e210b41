"""``python -m engine``: the background engine, speaking JSON lines on stdio."""

import sys

from engine.server import main

if __name__ == "__main__":
    sys.exit(main())
