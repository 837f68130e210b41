"""The blind sheet: a blind eval run's pairs for colleagues to rate offline.

Export (CSV or a standalone HTML page) holds, per pair, only the opaque pair id, the
prompt, reply A, reply B and an empty verdict: no model names, no reply ids, the same
formatting for both sides, pairs in the run's shuffled order. Which side is the
adapter stays in the store (``blind_pairs``), never in the sheet.

Import reads the filled sheet back (columns ``pair_id`` and ``verdict``, others
ignored; the HTML page's download has the same columns), maps each verdict through
the key and stores it as a rating by the named rater. Verdicts use the paper's names:
Certainly A, Likely A, Tie, Likely B, Certainly B, and Both bad (any case; spaces,
hyphens or underscores). A line with an unknown pair id or an unreadable verdict is
reported with its line number and the rest are stored; an empty verdict is a pair
left unrated.
"""

from __future__ import annotations

import csv
import io
import json
import re
from html import escape
from pathlib import Path

from engine.errors import BadRequest
from engine.training import blind

COLUMNS = ("pair_id", "prompt", "reply_A", "reply_B", "verdict")
NAMES = tuple(blind.TO_STORE)  # Certainly A ... Certainly B, Both bad


def neutralise(value: str) -> str:
    """Keep spreadsheet programs from running a cell as a formula (the same rule as the
    ratings CSV export, applied to every cell alike, so both sides look the same)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def rows(pairs: list[dict]) -> list[list[str]]:
    return [[p["id"], p["prompt"] or "", (p["a_text"] or "").strip(), (p["b_text"] or "").strip(), ""]
            for p in pairs]


def write_csv(pairs: list[dict], out: Path) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows(pairs):
        writer.writerow([neutralise(c) for c in row])
    out.write_text(buf.getvalue(), encoding="utf-8")


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:58rem;margin:2rem auto;padding:0 1rem;
color:#1a202c;line-height:1.45}
h1{font-size:1.4rem}.intro{color:#4a5568}
.pair{border:1px solid #cbd5e0;border-radius:6px;padding:.8rem 1rem;margin:1.2rem 0}
.pid{color:#718096;font-size:.8rem;font-family:monospace}
.prompt{font-weight:600;margin:.3rem 0 .7rem;white-space:pre-wrap}
.replies{display:grid;grid-template-columns:1fr 1fr;gap:.8rem}
.reply{border:1px solid #e2e8f0;border-radius:4px;padding:.5rem .7rem;background:#f7fafc}
.reply h3{margin:0 0 .3rem;font-size:.9rem;color:#4a5568}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
.scale{margin-top:.7rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem}
.scale label{cursor:pointer;white-space:nowrap}
.bar{position:sticky;bottom:0;background:#fff;border-top:1px solid #cbd5e0;padding:.7rem 0;display:flex;gap:1rem;
align-items:center}
button{font-size:1rem;padding:.4rem 1rem;cursor:pointer}
"""

_JS = """
function cell(v){v=String(v);if(/^[=+\\-@\\t\\r]/.test(v))v="'"+v;
 return /[",\\r\\n]/.test(v)?'"'+v.replace(/"/g,'""')+'"':v;}
function collect(){var out=[["pair_id","prompt","reply_A","reply_B","verdict"]],done=0;
 document.querySelectorAll(".pair").forEach(function(p){var t=p.querySelectorAll(".text");
  var c=p.querySelector("input:checked");if(c)done++;
  out.push([p.dataset.pair,p.querySelector(".prompt").textContent,t[0].textContent,t[1].textContent,c?c.value:""]);});
 return [out,done];}
function count(){var r=collect();document.getElementById("count").textContent=
 r[1]+" of "+(r[0].length-1)+" pairs answered";}
function download(){var r=collect(),csv=r[0].map(function(row){return row.map(cell).join(",");}).join("\\r\\n")+"\\r\\n";
 var a=document.createElement("a");a.href="data:text/csv;charset=utf-8,"+encodeURIComponent(csv);
 a.download="blind-sheet-filled.csv";document.body.appendChild(a);a.click();a.remove();}
document.addEventListener("change",count);document.addEventListener("DOMContentLoaded",count);
"""


def write_html(pairs: list[dict], out: Path) -> None:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
             'style-src \'unsafe-inline\'; script-src \'unsafe-inline\'">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>Blind sheet: which speaker is the human?</title>", f"<style>{_CSS}</style>",
             f"<script>{_JS}</script></head><body>",
             "<h1>Which speaker is the human?</h1>",
             '<p class="intro">Each pair below starts with an opening line; two speakers, A and B, answered it. '
             "For each pair, pick whether A or B is the human, and how sure you are (Tie: you cannot tell; "
             "Both bad: neither reads as a person). Sides were drawn at random for every pair. When you are done, "
             "press <b>Download filled CSV</b> and send that file back. Nothing leaves this page otherwise.</p>"]
    for n, (pid, prompt, a, b, _) in enumerate(rows(pairs), 1):
        parts.append(f'<section class="pair" data-pair="{escape(pid)}">'
                     f'<div class="pid">pair {n} &middot; {escape(pid)}</div>'
                     f'<div class="prompt">{escape(prompt)}</div><div class="replies">'
                     f'<div class="reply"><h3>Speaker A</h3><div class="text">{escape(a)}</div></div>'
                     f'<div class="reply"><h3>Speaker B</h3><div class="text">{escape(b)}</div></div></div>'
                     '<div class="scale">'
                     + "".join(f'<label><input type="radio" name="{escape(pid)}" value="{escape(name)}"> '
                               f"{escape(name)}</label>" for name in NAMES)
                     + "</div></section>")
    parts.append('<div class="bar"><button type="button" onclick="download()">Download filled CSV</button>'
                 '<span id="count"></span></div></body></html>')
    out.write_text("\n".join(parts), encoding="utf-8")


def export(store, run_id: str, out: str | Path) -> dict:
    """Write the run's pairs to ``out`` (.csv, or .html/.htm); returns what was written."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".html", ".htm"):
        raise BadRequest(f"--out must end in .csv or .html, not {out.name!r}")
    pairs = blind.load_pairs(store, run_id)
    try:
        (write_csv if suffix == ".csv" else write_html)(pairs, out)
    except OSError as exc:
        raise BadRequest(f"cannot write {out}: {exc.strerror or exc}") from None
    return {"out": str(out), "format": "csv" if suffix == ".csv" else "html",
            "pairs": len(pairs), "run_id": run_id}


def check_rater(name: str) -> str:
    """The stored rater for a colleague's name; refuses names that are empty or reserved."""
    from engine.results.data import rater_key

    name = (name or "").strip()
    if not name:
        raise BadRequest("--rater needs a name (the colleague who filled the sheet, or 'me')")
    if len(name) > 100 or not name.isprintable():
        raise BadRequest("--rater must be a printable name of at most 100 characters")
    if name.lower().startswith("llm:"):
        raise BadRequest("rater names starting with 'llm:' are kept for LLM raters (hal eval --rater api)")
    return rater_key(name)


def _verdict(text: str) -> str | None:
    key = re.sub(r"[\s_\-]+", " ", text or "").strip().lower()
    return next((n for n in NAMES if n.lower() == key), None)


def _dialect(text: str):
    """Plain CSV (what the export and Python's csv module write) whenever its header reads
    as one; the sniffer only for other separators. Guessing first misread quoted replies
    holding quotes, commas and apostrophes (it took the apostrophe for the quote mark)."""
    first = text.splitlines()[0] if text else ""
    for delimiter in (",", ";", "\t"):
        names = [h.strip().strip('"').lower() for h in first.split(delimiter)]
        if "verdict" in names and any(n in names for n in ("pair_id", "pair", "id")):
            return type("SheetDialect", (csv.excel,), {"delimiter": delimiter})
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _read(path: Path) -> list[tuple[int, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BadRequest(f"{path.name} is not a UTF-8 CSV file") from None
    if not text.strip():
        raise BadRequest(f"{path.name} is empty")
    dialect = _dialect(text)
    reader = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise BadRequest(f"{path.name}: line 1 is not CSV ({exc})") from None
    names = [re.sub(r"[\s\-]+", "_", h.strip().lower()) for h in header]
    col_id = next((names.index(c) for c in ("pair_id", "pair", "id") if c in names), None)
    col_v = names.index("verdict") if "verdict" in names else None
    if col_id is None or col_v is None:
        raise BadRequest(f"{path.name}: the first line must name the columns; pair_id and verdict are needed "
                         f"(found: {', '.join(header)[:200]})")
    out = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.append((reader.line_num, {"error": f"not CSV ({exc})"}))
            continue
        if not any(c.strip() for c in row):
            continue
        pid = row[col_id].strip() if col_id < len(row) else ""
        verdict = row[col_v].strip() if col_v < len(row) else ""
        out.append((reader.line_num, {"pair_id": pid.lstrip("'"), "verdict": verdict.lstrip("'")}))
    return out


def import_sheet(store, path: str | Path, rater: str) -> dict:
    """Store a filled sheet's verdicts as ratings by ``rater``; report per line."""
    rater = check_rater(rater)
    path = Path(path)
    lines = _read(path)
    known = {p["id"]: p for p in blind.load_pairs(store)}
    report = {"file": str(path), "rater": rater or "me", "imported": 0, "unchanged": 0, "unrated": 0,
              "bad": [], "unknown_pair_ids": [], "results": []}
    seen: dict[str, tuple[int, str]] = {}
    touched: dict[str, set] = {}
    for line, row in lines:
        if "error" in row:
            report["bad"].append({"line": line, "reason": row["error"]})
            continue
        pid, raw = row["pair_id"], row["verdict"]
        if not pid:
            report["bad"].append({"line": line, "reason": "no pair id"})
            continue
        if pid not in known:
            report["bad"].append({"line": line, "pair_id": pid[:80], "reason": "unknown pair id"})
            report["unknown_pair_ids"].append(pid[:80])
            continue
        if not raw:
            report["unrated"] += 1
            continue
        name = _verdict(raw)
        if name is None:
            report["bad"].append({"line": line, "pair_id": pid, "reason": f"unknown verdict {raw[:40]!r} (use "
                                  + ", ".join(NAMES) + ")"})
            continue
        if pid in seen:
            if seen[pid][1] != name:
                report["bad"].append({"line": line, "pair_id": pid, "reason": f"pair given twice with different "
                                      f"verdicts (also line {seen[pid][0]}); the first is kept"})
            continue
        seen[pid] = (line, name)
        p = known[pid]
        _, changed = store.rate_as(rater, p["turn_id"], p["a_reply_id"], p["b_reply_id"], blind.TO_STORE[name],
                                   note=f"blind sheet {path.name[:80]}, line {line}")
        report["imported" if changed else "unchanged"] += 1
        touched.setdefault(p["run_id"], set()).add(p["turn_id"])
    for run_id in touched:
        run = blind.run_row(store, run_id)
        wr = blind.win_rate(store, run_id, rater)
        report["results"].append({"run_id": run_id, "adapter": run["adapter"], "prompt_set": run["prompt_set"],
                                   **{k: v for k, v in wr.items() if k != "rating_ids"}})
    return report


def describe(report: dict) -> str:
    """The import report as lines for a person."""
    out = [f"{report['imported']} verdicts stored as rater {report['rater']!r} from {Path(report['file']).name}"
           + (f"; {report['unchanged']} already stored" if report["unchanged"] else "")
           + (f"; {report['unrated']} pairs left unrated" if report["unrated"] else "")
           + (f"; {len(report['bad'])} lines not used" if report["bad"] else "")]
    for b in report["bad"][:50]:
        out.append(f"  line {b['line']}: {b['reason']}" + (f" ({b['pair_id']})" if b.get("pair_id") else ""))
    if len(report["bad"]) > 50:
        out.append(f"  ... and {len(report['bad']) - 50} more")
    for r in report["results"]:
        if r["n"]:
            out.append(f"  adapter {r['adapter']} vs base ({r['prompt_set']}): win rate {100 * r['win_rate']:.1f}% "
                       f"[{100 * r['ci'][0]:.1f}, {100 * r['ci'][1]:.1f}] (95% Wilson), {r['n']} votes: adapter "
                       f"{r['adapter_preferred']}, base {r['base_preferred']}, tie {r['ties']}, both bad "
                       f"{r['both_bad']}")
        else:
            out.append(f"  adapter {r['adapter']} vs base ({r['prompt_set']}): no votes but 'both bad' "
                       f"({r['both_bad']})")
    return "\n".join(out)


def dumps(report: dict) -> str:
    return json.dumps(report)
