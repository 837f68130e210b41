"""Rebuild the numbers shipped in resources/ from the paper's reference data.

    python scripts/build_resources.py            # rewrite the shipped files
    python scripts/build_resources.py --check    # rebuild in memory, compare, exit 1 on a difference

Needs the reference data beside the checkout (../shared/data/hal) or
HAL_SHARED_DATA. Only numbers are written: fitted weights and their metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.errors import EngineError  # noqa: E402
from engine.scoring import shipped  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare a rebuild with what is shipped")
    args = ap.parse_args(argv)
    failed = False
    try:
        # the distilled judge first: the distilled weights are fitted on its ratings
        model = shipped.build_distilled()
        if args.check:
            diff = shipped.distilled_differences(model)
            print(f"judge {shipped.DISTILLED_ID}: " + ("matches" if not diff else "DIFFERS: " + "; ".join(diff)))
            failed |= bool(diff)
        else:
            print(f"judge {shipped.DISTILLED_ID}: wrote {shipped.write_distilled(model)}")
        for item in shipped.SHIPPED_WEIGHTS:
            built = shipped.build_weights(item)
            path = shipped.weights_path(item)
            if args.check:
                old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
                diff = shipped.differences(built, old)
                print(f"{item.id}: " + ("matches" if not diff else "DIFFERS: " + "; ".join(diff[:8])))
                failed |= bool(diff)
            else:
                shipped.write_weights(built, item)
                print(f"{item.id}: wrote {path} (cv accuracy {built['metrics']['cv_accuracy']:.3f})")
    except EngineError as exc:
        print(f"build_resources: {exc.message}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
