"""No file the studio reads can run code: our code never unpickles.

Parses every Python file of engine/, studio/ and scripts/ and fails on an
import of a pickle-style module, ``torch.load`` without ``weights_only=True``,
``np.load`` without ``allow_pickle=False``, ``read_pickle`` and
``trust_remote_code`` set to anything but False. Any of them on a path a user
or a file can steer runs whatever the file holds (issue 11, item 1).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("engine", "studio", "scripts")
UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _name(node: ast.AST) -> str:
    """``np.load`` -> "np.load"; anything else -> ""."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return "<absent>"


def problems_in(source: str, where: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            out += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNPICKLERS]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
            out.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _name(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in ("torch.load",) and _kw(node, "weights_only") is not True:
                out.append(f"{line}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") is not False:
                out.append(f"{line}: {name} without allow_pickle=False")
            if last in ("read_pickle", "load_pickle"):
                out.append(f"{line}: {name}")
            if _kw(node, "trust_remote_code") not in (False, "<absent>"):
                out.append(f"{line}: trust_remote_code is not False")
    return out


def test_the_checker_catches_each_form():
    bad = ("import pickle\nimport joblib\nfrom dill import loads\nimport numpy as np\nimport torch\n"
           "torch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p)\nnp.load(p, allow_pickle=True)\n"
           "pd.read_pickle(p)\nAutoModel.from_pretrained(p, trust_remote_code=True)\n")
    assert len(problems_in(bad, "x.py")) == 9
    good = ("import numpy as np\nnp.load(p, allow_pickle=False)\ntorch.load(p, weights_only=True)\n"
            "AutoModel.from_pretrained(p, trust_remote_code=False)\nmsg = 'holds only pickle weights'\n")
    assert problems_in(good, "y.py") == []


def test_no_unpickling_anywhere_in_our_code():
    found = []
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            found += problems_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == [], "code that can unpickle (run code from a file):\n" + "\n".join(found)
