"""Blind pairwise evaluation: pairs made once and stored with their key, an LLM rater
asked in both orders and counted only when consistent, its votes stored as ratings
by llm:<model> and filterable in Results, and the blind sheet out and back in."""

from __future__ import annotations

import csv
import json
import re
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from engine.training import blind, sheet
from scoring.conftest_server import llama_server  # noqa: F401  (fixture; tests/engine is on sys.path)

BASE_TEXT = "Hello! How can I assist you today?"
ADAPTER_TEXT = "lol nothing much, u?"
LOOPY = "again again again again again"


class FakeSampler:
    """Base replies are stiff, adapter replies casual; one prompt makes the adapter loop."""

    name = "fake"

    def __init__(self):
        self.calls = []

    def generate(self, prompts, seeds, adapter, settings, cancelled=lambda: False, on_done=lambda n: None):
        self.calls.append((adapter, list(seeds), settings))
        out = []
        for msgs in prompts:
            text = msgs[-1]["content"]
            if adapter is None:
                out.append(f"{BASE_TEXT} ({text[:12]})")
            else:
                out.append(LOOPY if "[loop]" in text else f"{ADAPTER_TEXT} ({text[:12]})")
            on_done(len(out))
        return out

    def close(self):
        pass


class ContentRater:
    """An OpenAI-compatible endpoint whose answer depends on the question: the casual
    ("lol") reply is the human; the prompt's tag decides how well it keeps to that."""

    def __init__(self, model="fake-rater"):
        self.asked: list[str] = []
        rater = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_a):
                pass

            def _send(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": model}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                question = body["messages"][1]["content"]
                rater.asked.append(question)
                content = json.dumps({"verdict": rater.answer(question)})
                self._send({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def answer(q: str) -> str:
        a = re.search(r"Speaker A:\n(.*?)\n\nSpeaker B:", q, re.S).group(1)
        human = "A" if "lol" in a else "B"
        if "[biased]" in q:
            return "Likely A"  # position bias: says A whichever reply is there
        if "[tie]" in q:
            return "Tie"
        if "[mixed]" in q:  # sure in one order, less so in the other: counted as likely
            return "Certainly A" if human == "A" else "Likely B"
        if "[fail]" in q:
            return "no idea"
        if "[base]" in q:  # this time the stiff reply reads as the human
            return "Certainly B" if human == "A" else "Certainly A"
        return f"Certainly {human}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rater_server():
    s = ContentRater()
    yield s
    s.close()


@pytest.fixture
def adapter_dir(tmp_path):
    folder = tmp_path / "adapters" / "a1b2c3d4e5f60718"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return folder


@pytest.fixture
def fake_sampler(monkeypatch):
    s = FakeSampler()
    monkeypatch.setattr(blind, "_open_sampler", lambda config, base, row: (s, "ADAPTER"))
    return s


def write_prompts(path, tags):
    path.write_text("".join(json.dumps({"id": f"t{i}", "text": f"opener {i} {tag}"}) + "\n"
                            for i, tag in enumerate(tags)))
    return path


@pytest.fixture(autouse=True)
def _no_key(monkeypatch):
    monkeypatch.delenv("HAL_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def hal(*argv) -> int:
    from engine.cli import main

    return main([str(a) for a in argv])


def cfg(tmp_path, **kw):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"rater_concurrency": 2, **kw}))
    return path


# ---------------------------------------------------------------- pure logic
@pytest.mark.parametrize("answer, shown, side, score", [
    ("Certainly A", "A", "A", 1.0), ("Certainly A", "B", "A", 0.0), ("Likely B", "B", "A", 0.75),
    ("Likely B", "A", "B", 0.75), ("Tie", "B", "B", 0.5), ("Certainly B", "B", "B", 0.0)])
def test_an_answer_becomes_the_adapters_score(answer, shown, side, score):
    assert blind.adapter_score(answer, shown, side) == score


@pytest.mark.parametrize("first, second, counted", [
    (1.0, 1.0, 1.0), (1.0, 0.75, 0.75), (0.25, 0.0, 0.25), (0.5, 0.5, 0.5),
    (0.75, 0.25, None), (0.5, 0.75, None), (1.0, 0.0, None)])
def test_orders_count_only_when_they_agree_at_the_weaker_strength(first, second, counted):
    assert blind.combine(first, second) == counted


# ---------------------------------------------------- hal eval --rater api
def test_llm_rater_both_orders_consistency_and_results(tmp_path, adapter_dir, fake_sampler, rater_server,
                                                       capsys, monkeypatch, store):
    fake_loops = types.ModuleType("engine.scoring.loops")
    fake_loops.is_looping = lambda text: "again again" in text
    fake_loops.loop_reason = lambda text: "repeated_phrase: 'again'" if "again again" in text else None
    monkeypatch.setitem(sys.modules, "engine.scoring.loops", fake_loops)
    prompts = write_prompts(tmp_path / "p.jsonl", ["[consistent]", "[biased]", "[tie]", "[mixed]", "[fail]",
                                                   "[loop]", "[base]"])
    db = store.path
    rc = hal("eval", "--adapter", adapter_dir, "--rater", "api", "--api-base", rater_server.base,
             "--prompts", prompts, "--config", cfg(tmp_path, rater_retries=0), "--db", db, "--json")
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    # the [fail] pair is reported (exit 3, its reason on stderr) while the rest went on
    assert rc == 3 and out["rater"] == "llm:fake-rater" and out["n_pairs"] == 7 and not out["reused_pairs"]
    assert len(out["errors"]) == 1 and "malformed answer" in out["errors"][0]["reason"]
    assert f"pair {out['errors'][0]['pair_id']}: the rater failed: malformed answer" in captured.err
    # each pair asked twice, the second time with the sides swapped
    assert len(rater_server.asked) == 14
    # the adapter's reply is shown first exactly once per pair (6 pairs where it says "lol")
    assert sum("Speaker A:\nlol" in q for q in rater_server.asked) == 6
    # counted: [consistent] 1, [mixed] 0.75, [tie] 0.5, [base] 0; inconsistent: [biased], and [loop]
    # (neither reply has "lol", so the fake says B in both orders); [fail] never answers
    assert (out["n_counted"], out["inconsistent"], out["failed"]) == (4, 2, 1)
    assert (out["adapter_preferred"], out["base_preferred"], out["ties"]) == (2, 1, 1)
    assert out["win_rate"] == pytest.approx(2.25 / 4)
    from engine.results.stats import wilson

    assert out["ci"] == pytest.approx(list(wilson(2.25, 4)), abs=1e-4)
    assert out["looping"]["adapter"]["looping"] == 1 and out["looping"]["base"]["looping"] == 0
    assert out["looping"]["adapter"]["ci"] == pytest.approx(list(wilson(1, 7)), abs=1e-4)
    # same seeds for base and adapter
    (a0, seeds0, st0), (a1, seeds1, st1) = fake_sampler.calls
    assert a0 is None and a1 == "ADAPTER" and seeds0 == seeds1 and st0.max_tokens == 160

    # stored as ratings by llm:fake-rater, beside the researcher's own, and filterable in Results
    rows = list(store.db.query("SELECT rater, blind FROM ratings"))
    assert len(rows) == 4 and {r["rater"] for r in rows} == {"llm:fake-rater"} and all(r["blind"] for r in rows)
    assert store.db.execute("SELECT COUNT(*) FROM rater_answers").fetchone()[0] == 14
    turn = store.db.execute("SELECT turn_id, left_reply_id, right_reply_id FROM ratings").fetchone()
    mine = store.rate(turn[0], turn[1], turn[2], "certainly_right")  # the researcher rates the same pair
    assert store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 5
    assert store.rating_for_turn(turn[0])["id"] == mine
    assert hal("results", "--db", db, "--rater", "llm:fake-rater", "--json", "--bootstrap", "20") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_ratings"] == 4 and res["pairs"][0]["win_rate"] == pytest.approx(out["win_rate"])
    assert res["pairs"][0]["a"] == out["adapter_model"] and res["filters"]["rater"] == "llm:fake-rater"
    assert hal("results", "--db", db, "--rater", "me", "--json", "--bootstrap", "20") == 0
    assert json.loads(capsys.readouterr().out)["n_ratings"] == 1
    from engine.results.data import raters

    assert raters(store) == ["me", "llm:fake-rater"]

    # a second run reuses the same pairs (and replaces the rater's verdicts, keeping history)
    rc = hal("eval", "--adapter", adapter_dir, "--rater", "api", "--api-base", rater_server.base,
             "--prompts", prompts, "--config", cfg(tmp_path, rater_retries=0), "--db", db)
    text = capsys.readouterr().out
    assert rc == 3 and "pairs reused" in text and "inconsistent (the two orders disagreed): 2" in text
    assert "looping replies: adapter 1/7" in text and "win rate 56.2%" in text
    assert len(fake_sampler.calls) == 2
    assert store.db.execute("SELECT COUNT(*) FROM ratings WHERE rater='llm:fake-rater'").fetchone()[0] == 4


@pytest.mark.parametrize("argv, message", [
    (["--rater", "api"], "--api-base"),
    (["--rater", "api", "--api-base", "ftp://x"], "http(s) base URL"),
    (["--api-base", "http://127.0.0.1:9/v1"], "go with --rater api"),
    (["--rater", "api", "--api-base", "http://127.0.0.1:9/v1", "--prompts", "/nonexistent.jsonl"],
     "/v1/models failed"),
])
def test_bad_eval_input_is_one_line_and_exit_2(argv, message, adapter_dir, capsys, store):
    rc = hal("eval", "--adapter", adapter_dir, "--db", store.path, *argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_missing_prompt_set_and_missing_default_set_are_clear(adapter_dir, rater_server, capsys, store,
                                                              monkeypatch, tmp_path):
    rc = hal("eval", "--adapter", adapter_dir, "--rater", "api", "--api-base", rater_server.base,
             "--prompts", tmp_path / "none.jsonl", "--db", store.path)
    assert rc == 2 and "cannot read prompt set" in capsys.readouterr().err
    monkeypatch.setattr(blind, "blind_openers_path", lambda: tmp_path / "absent.jsonl")
    rc = hal("eval", "sheet", "export", "--adapter", adapter_dir, "--out", tmp_path / "s.csv", "--db", store.path)
    assert rc == 2 and "pass --prompts" in capsys.readouterr().err


# ------------------------------------------------------------ the blind sheet
MODEL_WORDS = ("SmolLM", "fake", "a1b2c3d4", "adapter", "base", "llm:")


def test_sheet_export_holds_only_the_blind_columns(tmp_path, adapter_dir, fake_sampler, store, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", [f"[consistent] -{i}" for i in range(40)])
    out = tmp_path / "sheet.csv"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", out,
               "--db", store.path, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["pairs"] == 40 and info["format"] == "csv"
    raw = out.read_text(encoding="utf-8")
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["pair_id", "prompt", "reply_A", "reply_B", "verdict"]
    body = table[1:]
    assert len(body) == 40 and all(len(r) == 5 and r[4] == "" for r in body)
    key = {p["id"]: p for p in blind.load_pairs(store)}
    assert {r[0] for r in body} == set(key)
    for word in MODEL_WORDS:
        assert word.lower() not in raw.lower(), word
    for table_name, col in (("replies", "id"), ("turns", "id"), ("conversations", "id")):
        for (rid,) in store.db.execute(f"SELECT {col} FROM {table_name}").fetchall():
            assert rid not in raw
    sides = {key[r[0]]["adapter_side"] for r in body}
    assert sides == {"A", "B"}  # drawn per pair (all 40 on one side: chance 2**-39)
    for r in body:  # the two replies are the base's and the adapter's, formatted alike
        assert {r[2].split(" (")[0], r[3].split(" (")[0]} == {BASE_TEXT, ADAPTER_TEXT}
        texts = {key[r[0]]["a_text"]: "A", key[r[0]]["b_text"]: "B"}
        assert texts[r[2]] == "A" and texts[r[3]] == "B"
    order = [key[r[0]]["idx"] for r in body]
    assert order == list(range(40))
    prompt_order = [int(r[1].split()[1]) for r in body]
    assert prompt_order != list(range(40))  # rows are shuffled too
    # exporting again gives the same pairs and sides (the run is reused)
    again = tmp_path / "again.csv"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", again,
               "--db", store.path) == 0
    assert again.read_text(encoding="utf-8") == raw and len(fake_sampler.calls) == 2


def test_html_sheet_is_standalone_and_blind(tmp_path, adapter_dir, fake_sampler, store, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ["<b>hi</b> & bye", "two"])
    out = tmp_path / "sheet.html"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", out,
               "--db", store.path) == 0
    page = out.read_text(encoding="utf-8")
    assert "&lt;b&gt;hi&lt;/b&gt; &amp; bye" in page and "<b>hi</b>" not in page
    assert not re.search(r"https?://|src=|<link|@import|fetch\(|XMLHttpRequest", page)
    assert page.count('type="radio"') == 2 * 6 and "data:text/csv" in page
    assert '"pair_id","prompt","reply_A","reply_B","verdict"' in page  # the CSV the button downloads
    for name in sheet.NAMES:
        assert f'value="{name}"' in page
    for word in MODEL_WORDS:
        assert word.lower() not in page.lower().replace("speaker a", "").replace("speaker b", ""), word
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts,
               "--out", tmp_path / "s.txt", "--db", store.path) == 2
    assert ".csv or .html" in capsys.readouterr().err


def test_sheet_import_maps_through_the_key_and_reports_bad_lines(tmp_path, adapter_dir, fake_sampler, store,
                                                                 capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ["one", "two", "three", "four", "five", "six"])
    out = tmp_path / "sheet.csv"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", out,
               "--db", store.path) == 0
    capsys.readouterr()
    key = {p["id"]: p for p in blind.load_pairs(store)}
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    # the colleague: adapter "certainly" on two pairs, base "likely" on one, a tie, both bad, one left empty
    wanted = ["certainly adapter", "certainly adapter", "likely base", "tie", "both bad", ""]
    for row, want in zip(table[1:], wanted):
        side = key[row[0]]["adapter_side"]
        other = "B" if side == "A" else "A"
        row[4] = {"certainly adapter": f"Certainly {side}", "likely base": f"likely_{other.lower()}",
                  "tie": "TIE", "both bad": "Both bad", "": ""}[want]
    table.append(["pdeadbeef00", "x", "y", "z", "Likely A"])
    table.append([table[1][0], "x", "y", "z", "Certainly B" if key[table[1][0]]["adapter_side"] == "A"
                  else "Certainly A"])  # the same pair again, with another verdict
    table.append([table[2][0], "", "", "", "probably A"])
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="", encoding="utf-8-sig") as fh:  # as a spreadsheet saves it, with a BOM
        csv.writer(fh).writerows(table)
    rc = hal("eval", "sheet", "import", filled, "--rater", "Dana", "--db", store.path, "--json")
    report = json.loads(capsys.readouterr().out)
    assert rc == 3
    assert report["imported"] == 5 and report["unrated"] == 1 and report["unknown_pair_ids"] == ["pdeadbeef00"]
    reasons = {b["line"]: b["reason"] for b in report["bad"]}
    assert set(reasons) == {8, 9, 10} and reasons[8] == "unknown pair id"
    assert "twice" in reasons[9] and "unknown verdict" in reasons[10]
    [res] = report["results"]
    assert res["n"] == 4 and res["both_bad"] == 1
    assert (res["adapter_preferred"], res["base_preferred"], res["ties"]) == (2, 1, 1)
    assert res["win_rate"] == pytest.approx((1 + 1 + 0.25 + 0.5) / 4)
    rows = list(store.db.query("SELECT rater, verdict FROM ratings"))
    assert len(rows) == 5 and {r["rater"] for r in rows} == {"Dana"}
    # importing again changes nothing; the text report names the lines
    rc = hal("eval", "sheet", "import", filled, "--rater", "Dana", "--db", store.path)
    text = capsys.readouterr().out
    assert rc == 3 and "0 verdicts stored" in text and "5 already stored" in text
    assert "line 8: unknown pair id (pdeadbeef00)" in text and "win rate 68.8%" in text
    assert store.db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 5
    assert hal("results", "--db", store.path, "--rater", "Dana", "--json", "--bootstrap", "20") == 0
    assert json.loads(capsys.readouterr().out)["n_ratings"] == 5


@pytest.mark.parametrize("content, rater, message", [
    ("pair_id,verdict\n", "llm:me", "kept for LLM raters"),
    ("pair_id,verdict\n", " ", "needs a name"),
    ("prompt,reply_A\nx,y\n", "Dana", "pair_id and verdict are needed"),
    ("", "Dana", "is empty"),
])
def test_bad_sheets_are_refused_in_one_line(tmp_path, store, capsys, content, rater, message):
    path = tmp_path / "f.csv"
    path.write_text(content)
    assert hal("eval", "sheet", "import", path, "--rater", rater, "--db", store.path) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_researchers_own_sheet_is_stored_as_me(tmp_path, adapter_dir, fake_sampler, store, capsys):
    prompts = write_prompts(tmp_path / "p.jsonl", ["one", "two"])
    out = tmp_path / "sheet.csv"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", out,
               "--db", store.path) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    filled = tmp_path / "mine.csv"
    filled.write_text("\n".join([lines[0]] + [ln + "Tie" for ln in lines[1:]]) + "\n")
    assert hal("eval", "sheet", "import", filled, "--rater", "me", "--db", store.path) == 0
    assert [r["rater"] for r in store.db.query("SELECT rater FROM ratings")] == [None, None]
    assert "win rate 50.0%" in capsys.readouterr().out


# ------------------------------------------- real llama.cpp, GGUF LoRA, real rater
def bundled_lora(folder):
    """A rank-2 PEFT LoRA for the bundled SmolLM2-135M (q and v projections, random A
    and B so it moves the model), written by hand, and its GGUF LoRA twin."""
    import numpy as np
    from safetensors.numpy import save_file

    from engine.models.gguf_lora import convert_peft_to_gguf
    from engine.models.spec import bundled_gguf_path

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    tensors = {}
    for i in range(30):
        for proj, out_dim in (("q_proj", 576), ("v_proj", 192)):
            name = f"base_model.model.model.layers.{i}.self_attn.{proj}"
            tensors[f"{name}.lora_A.weight"] = rng.normal(0, 0.3, (2, 576)).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = rng.normal(0, 0.3, (out_dim, 2)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"],
        "task_type": "CAUSAL_LM", "base_model_name_or_path": "bundled"}))
    convert_peft_to_gguf(folder, bundled_gguf_path(), folder / "adapter.gguf")
    return folder


@pytest.mark.slow
def test_real_pairs_on_llamacpp_with_the_gguf_lora_rated_by_a_real_server(tmp_path, store, llama_server, capsys):
    from engine.models.spec import bundled_gguf_path

    folder = bundled_lora(tmp_path / "adapters" / "0123456789abcdef")
    prompts = write_prompts(tmp_path / "p.jsonl", ["hey whats up", "any plans tonight?", "ugh mondays"])
    config = cfg(tmp_path, blind_max_tokens=12, sample_threads=1, rater_concurrency=1, rater_retries=1)
    rc = hal("eval", "--adapter", folder / "adapter.gguf", "--rater", "api", "--api-base", llama_server,
             "--prompts", prompts, "--config", config, "--db", store.path, "--json")
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["n_pairs"] == 3 and out["rater"].startswith("llm:")
    assert out["consistent"] + out["inconsistent"] + out["failed"] == 3 and out["failed"] == 0
    assert out["response_format"] == "json_object+schema"  # the server refused json_schema
    replies = list(store.db.query("SELECT turn_id, backend, model_name, adapter, seed, text FROM replies"))
    assert len(replies) == 6 and {r["backend"] for r in replies} == {"llamacpp"}
    assert {r["model_name"] for r in replies} == {blind.gguf_name(bundled_gguf_path())}
    assert {r["adapter"] for r in replies} == {"", str(folder)}
    by_turn = {}
    for r in replies:
        by_turn.setdefault(r["turn_id"], []).append(r)
    assert all(len({r["seed"] for r in two}) == 1 for two in by_turn.values())  # same seed for both
    assert any(len({r["text"] for r in two}) == 2 for two in by_turn.values())  # the LoRA moved the model
    assert out["adapter_model"].endswith("+ 0123456789abcdef")


class _SheetPage:
    """What a browser would see of the sheet: per pair its id, prompt and the two texts."""

    def __init__(self, page: str):
        from html.parser import HTMLParser

        self.pairs, self.script = [], ""
        outer = self

        class P(HTMLParser):
            grab = None

            def handle_starttag(self, tag, attrs):
                a = dict(attrs)
                if tag == "section":
                    outer.pairs.append({"pair": a["data-pair"], "prompt": "", "texts": []})
                elif tag == "script":
                    self.grab = "script"
                elif tag == "div" and a.get("class") in ("prompt", "text"):
                    self.grab = a["class"]
                    if self.grab == "text":
                        outer.pairs[-1]["texts"].append("")

            def handle_endtag(self, tag):
                if tag in ("div", "script"):
                    self.grab = None

            def handle_data(self, data):
                if self.grab == "script":
                    outer.script += data
                elif self.grab == "prompt":
                    outer.pairs[-1]["prompt"] += data
                elif self.grab == "text":
                    outer.pairs[-1]["texts"][-1] += data

        P(convert_charrefs=True).feed(page)


NODE_STUB = r"""
const pairs = JSON.parse(require("fs").readFileSync(process.argv[2], "utf8"));
let href = null;
global.document = {
  addEventListener() {}, getElementById() { return {}; }, body: { appendChild() {} },
  createElement() { const a = { click() { href = a.href; }, remove() {} }; return a; },
  querySelectorAll(sel) {
    return sel !== ".pair" ? [] : pairs.map(p => ({
      dataset: { pair: p.pair },
      querySelectorAll: () => p.texts.map(t => ({ textContent: t })),
      querySelector: s => s === ".prompt" ? { textContent: p.prompt } : (p.checked ? { value: p.checked } : null),
    }));
  },
};
eval(require("fs").readFileSync(process.argv[3], "utf8"));
download();
const prefix = "data:text/csv;charset=utf-8,";
if (!href.startsWith(prefix)) throw new Error("not a data: URL");
process.stdout.write(decodeURIComponent(href.slice(prefix.length)));
"""


def test_the_html_sheets_download_imports_back(tmp_path, adapter_dir, fake_sampler, store, capsys):
    """The page's own script (run in node with a stub DOM) writes a CSV that import reads."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    prompts = write_prompts(tmp_path / "p.jsonl", ['=cmd|"quoted", comma', "line\nbreak", "three", "four"])
    out = tmp_path / "sheet.html"
    assert hal("eval", "sheet", "export", "--adapter", adapter_dir, "--prompts", prompts, "--out", out,
               "--db", store.path) == 0
    capsys.readouterr()
    page = _SheetPage(out.read_text(encoding="utf-8"))
    key = {p["id"]: p for p in blind.load_pairs(store)}
    assert [p["pair"] for p in page.pairs] == sorted(key, key=lambda k: key[k]["idx"])
    for p in page.pairs:  # the page shows each text exactly as stored
        assert p["texts"] == [key[p["pair"]]["a_text"], key[p["pair"]]["b_text"]]
        assert p["prompt"] == key[p["pair"]]["prompt"]
    # the person prefers the adapter everywhere, certainly; one pair left open
    for p in page.pairs[:3]:
        p["checked"] = f"Certainly {key[p['pair']]['adapter_side']}"
    (tmp_path / "pairs.json").write_text(json.dumps(page.pairs))
    (tmp_path / "sheet.js").write_text(page.script)
    (tmp_path / "stub.js").write_text(NODE_STUB)
    proc = subprocess.run([node, str(tmp_path / "stub.js"), str(tmp_path / "pairs.json"), str(tmp_path / "sheet.js")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    filled = tmp_path / "blind-sheet-filled.csv"
    filled.write_text(proc.stdout, encoding="utf-8", newline="")
    with open(filled, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    assert table[0] == list(sheet.COLUMNS) and len(table) == 5
    prompts_back = {r[1] for r in table[1:]}  # quotes, commas and line breaks survive
    assert 'opener 0 =cmd|"quoted", comma' in prompts_back and "opener 1 line\nbreak" in prompts_back
    assert hal("eval", "sheet", "import", filled, "--rater", "Ola", "--db", store.path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["imported"] == 3 and report["unrated"] == 1 and report["results"][0]["win_rate"] == 1.0


def test_blind_replies_sample_as_a_newcomers_chat_does():
    """The looping share a blind eval reports is the one a newcomer's chat would show."""
    from engine.models.base import CHAT_DEFAULTS
    from engine.training import evaluate

    c = evaluate.make_config("default")
    s = blind._settings(c)
    assert {k: s[k] for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")} == {
        k: CHAT_DEFAULTS[k] for k in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty")}


def test_a_sheet_filled_with_pythons_csv_reads_back_whole(tmp_path):
    """Replies with quotes, apostrophes, commas and line breaks (what a 135M model writes):
    the importer guessed the CSV dialect and took an apostrophe for the quote mark."""
    import csv

    from engine.training import sheet

    rows = [{"pair_id": "pc05e8a1a5e", "prompt": "do you sing in the shower?",
             "reply_A": "The most you can do is to sing in the shower.",
             "reply_B": 'I\'m so sorry. "DANGERA" is a genre, and its name means "dance with anger."',
             "verdict": "Likely A"},
            {"pair_id": "p331609850b", "prompt": "what's your favourite word?",
             "reply_A": "Your dear SmolLM, I'm not a word-wizard.\nIt's 'yes', I'd say, ok?",
             "reply_B": "That's, um, 'maybe'", "verdict": "Tie"}]
    path = tmp_path / "filled.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    got = sheet._read(path)
    assert [(r["pair_id"], r["verdict"]) for _line, r in got] == [("pc05e8a1a5e", "Likely A"),
                                                                 ("p331609850b", "Tie")]
