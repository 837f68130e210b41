"""A standalone HTML results report (tables + inline SVG plots) to attach to a draft.

One file, no scripts, no external assets; every text from the store is escaped.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from engine.results import svg
from engine.store import now

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a202c; margin: 32px auto;
       max-width: 980px; line-height: 1.45; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 30px; border-bottom: 1px solid #e2e8f0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #edf2f7; padding: 4px 10px; text-align: left; }
th { background: #f7fafc; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.method { color: #4a5568; font-size: 12px; margin: 4px 0 10px; }
.warn { background: #fffaf0; border: 1px solid #f6ad55; padding: 6px 10px; border-radius: 4px; }
.muted { color: #718096; }
"""


def _num(x, fmt="{:.3f}"):
    return "–" if x is None else fmt.format(x)


def _ci(ci, fmt="{:.3f}"):
    return "–" if not ci else f"{fmt.format(ci[0])} – {fmt.format(ci[1])}"


def _table(headers, rows) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{escape(str(c))}</td>' if isinstance(c, (int, float)) or
        (isinstance(c, str) and c[:1].isdigit()) else f"<td>{escape(str(c))}</td>" for c in row)
        + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _method(text) -> str:
    return f'<p class="method">How this is computed: {escape(text)}</p>' if text else ""


def render(results: dict, title: str = "HAL studio — human ratings") -> str:
    r = results
    m = r["methods"]
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{escape(title)}</h1>",
           f"<p class='muted'>Generated {escape(now())} from {r['n_ratings']} ratings. "
           f"Filters: {escape(str(r['filters'] or 'none'))}.</p>"]

    out.append("<h2>Win rate of each pairing</h2>")
    pairs = r["pairs"]
    if pairs:
        out.append(svg.interval_chart([(f"{p['a']} vs {p['b']}", p["win_rate"], p["ci"]) for p in pairs],
                                      0.0, 1.0, ref=0.5,
                                      axis_label="A's win rate with its 95% Wilson interval (0.5: no preference)"))
        out.append(_table(["A", "B", "votes", "A's win rate", "95% CI (Wilson)", "CI (bootstrap)",
                           "votes needed", "more needed", "both bad"],
                          [(p["a"], p["b"], p["n"], _num(p["win_rate"]), _ci(p["ci"]),
                            _ci(p["ci_bootstrap"]), p["votes_needed"] or "–",
                            "–" if p["more_votes_needed"] is None else p["more_votes_needed"],
                            p["both_bad"]) for p in pairs]))
    else:
        out.append("<p>No pairings with votes.</p>")
    out += [_method(m["win_rate"]), _method(m["ci"]), _method(m["votes_needed"])]

    bt = r["bradley_terry"]
    out.append("<h2>Leaderboard (Bradley-Terry)</h2>")
    if bt:
        lo = min(row["ci"][0] for row in bt)
        hi = max(row["ci"][1] for row in bt)
        out.append(svg.interval_chart([(row["model"], row["score"], row["ci"]) for row in bt],
                                      min(lo, 1000), max(hi, 1000), ref=1000, value_fmt="{:.0f}",
                                      axis_label="Bradley-Terry score, Elo scale, with its 95% interval "
                                                 "(1000: the models' mean)"))
        out.append(_table(["rank", "model", "score", "95% CI", "votes"],
                          [(row["rank"], row["model"], _num(row["score"], "{:.1f}"),
                            _ci(row["ci"], "{:.1f}"), row["n"]) for row in bt]))
    meta = r["bradley_terry_meta"]
    if meta.get("message"):
        out.append(f"<p class='warn'>{escape(meta['message'])}</p>")
    out += [_method(m["bradley_terry"]), _method(m["bradley_terry_ci"])]

    elo = r["elo"]
    out.append("<h2>Online Elo</h2>")
    if elo["models"]:
        names = [row["model"] for row in elo["models"]]
        series = {n: [step.get(n, elo["init"]) for step in elo["trajectory"]] for n in names}
        out.append(svg.line_chart(series, y_label="Elo"))
        out.append(_table(["model", "Elo"], [(row["model"], _num(row["score"], "{:.1f}"))
                                            for row in elo["models"]]))
    out.append(_method(m["elo"]))

    pb = r["position_bias"]
    out.append("<h2>Position bias</h2>")
    if pb.get("warning"):
        out.append(f"<p class='warn'>Warning: {escape(pb['warning'])}</p>")
    out.append(_table(["ratings", "decisive votes", "left wins", "left share", "95% CI", "p (binomial)"],
                      [(label, pb[k]["n"], pb[k]["left_wins"], _num(pb[k]["left_rate"]),
                        _ci(pb[k]["ci"]), _num(pb[k]["p_value"], "{:.3g}"))
                       for k, label in (("all", "all"), ("blind", "blind"), ("not_blind", "not blind"))]))
    out.append(_method(m["position_bias"]))

    c = r["consistency"]
    out.append("<h2>Rater consistency</h2>")
    out.append(f"<p>{c['n']} repeats; agreement {_num(c['agreement'])} (95% CI {_ci(c['ci'])}); "
               f"exact agreement {_num(c['exact_agreement'])}.</p>" if c["n"] else
               f"<p>{escape(c['message'] or '')}</p>")
    out.append(_method(m["consistency"]))

    lk = r["leaks"]
    out.append("<h2>Identity leaks</h2>")
    out.append(f"<p>{lk['n']} ratings with a reply naming a model; {lk['blind_excluded']} blind ones "
               "counted as not blind.</p>")
    if lk["ratings"]:
        out.append(_table(["rating", "blind", "what"], [(h["rating_id"][:12], "yes" if h["blind"] else "no",
                                                        h["what"]) for h in lk["ratings"][:50]]))
    out.append(_method(m["leaks"]))

    sa = r["score_agreement"]
    out.append("<h2>Human-likeness score vs the researcher</h2>")
    for j in sa["judges"]:
        out.append(f"<p><b>{escape(j['judge'])}</b>: agrees on {j['agree']} of {j['n']} decisive votes "
                   f"({_num(j['agreement'])}, 95% CI {_ci(j['ci'])}); equal scores: {j['equal_scores']}.</p>")
        if j["traits"]:
            out.append(_table(["trait", "votes where it differs", "agreement", "95% CI"],
                              [(t["trait"], t["n"], _num(t["agreement"]), _ci(t["ci"]))
                               for t in j["traits"]]))
    if not sa["judges"]:
        out.append(f"<p>{escape(sa['message'] or '')}</p>")
    out.append(_method(m["score_agreement"]))

    out.append(f"<h2>Both bad</h2><p>{r['both_bad']['n']} votes marked both bad.</p>")
    out.append(_method(m["both_bad"]))
    sv = r.get("self_votes") or {}
    if sv.get("n"):
        out.append(f"<h2>Same model on both sides</h2><p class='warn'>{escape(sv['message'])}</p>")
    if r["problems"]:
        out.append("<h2>Ratings left out (they cannot be read)</h2>")
        out.append(_table(["rating", "why"], [(p["rating_id"], p["reason"]) for p in r["problems"]]))
    out.append("</body></html>")
    return "\n".join(out)


def write(results: dict, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(results), encoding="utf-8")
    return path
