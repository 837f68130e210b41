"""Human-likeness scoring: traits as data, judges that rate them, learned weights.

The score of a speaker is ``sum(w[t] * rating[t] for t) + bias`` over trait ids;
everything here keys traits by id so that reordering a file changes nothing.
No Qt and no model libraries are imported at this level.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """The HAL reference data beside the repository (``HAL_SHARED_DATA`` overrides).

    It is read at run time only; nothing from it is ever copied into the repo.
    """
    override = os.environ.get("HAL_SHARED_DATA")
    if override:
        return Path(override)
    import engine

    return Path(engine.__file__).resolve().parents[2] / "shared" / "data" / "hal"
