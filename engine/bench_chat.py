"""``hal bench chat``: what the studio costs over plain llama-cpp-python.

One run measures, on the same model and prompts: llama-cpp-python called
directly (the baseline), one pane through the engine process, and two panes
streaming at once, plus the engine's peak memory with one pane vs both.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time

PROMPTS = [
    "Tell me about the best trip you ever took, with as much detail as you like.",
    "What do you usually do on a rainy Sunday? Describe it step by step.",
    "Explain to a friend how you would plan a small birthday dinner.",
]


def _rate(times: list[float]) -> tuple[int, float]:
    """(tokens, decode tokens/s) from arrival times of streamed tokens."""
    if len(times) < 2:
        return len(times), 0.0
    return len(times), (len(times) - 1) / (times[-1] - times[0])


def bench_raw(model_path: str, max_tokens: int, seed: int, threads: int) -> dict:
    """llama-cpp-python's own streaming chat completion, no studio code."""
    from llama_cpp import Llama

    llm = Llama(model_path=model_path, n_ctx=4096, n_threads=threads, verbose=False, seed=seed)
    n_total, t_total, ttfts = 0, 0.0, []
    for prompt in PROMPTS:
        start = time.perf_counter()
        times = []
        for chunk in llm.create_chat_completion(
                messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                temperature=0.7, top_p=0.9, seed=seed, stream=True):
            if chunk["choices"][0]["delta"].get("content"):
                times.append(time.perf_counter())
        if times:
            ttfts.append((times[0] - start) * 1000)
        if len(times) > 1:
            n_total += len(times) - 1
            t_total += times[-1] - times[0]
    del llm
    gc.collect()
    return {"tok_s": n_total / t_total if t_total else 0.0, "ttft_ms": statistics.median(ttfts)}


def bench_engine(panes: int, max_tokens: int, seed: int, env: dict) -> dict:
    """One engine process; each prompt sent to ``panes`` panes at once."""
    from engine.client import EngineProcess

    eng = EngineProcess(env=env)
    try:
        hello = eng.request("hello", timeout=60)
        spec = {"source": "bundled", "backend": "llamacpp"}
        for _ in range(panes):
            final = eng.request("load", {"model": spec}, timeout=300)
            if final.type == "error":
                raise RuntimeError(final.content.get("message"))
        rates, ttfts, tokens = [], [], 0
        sampling = {"temperature": 0.7, "top_p": 0.9, "max_tokens": max_tokens, "seed": seed}
        for prompt in PROMPTS:
            msgs = [{"role": "user", "content": prompt}]
            replies = [eng.send("generate", {"model": spec, "messages": msgs, "sampling": sampling})
                       for _ in range(panes)]
            for reply in replies:
                reply.done.wait(300)
                if reply.final is None or reply.final.type != "result":
                    raise RuntimeError(f"generate failed: {reply.final and reply.final.content}")
            for reply in replies:
                times = reply.token_times()
                n, _ = _rate(times)
                tokens += n
                rates.append((times, reply.sent_at))
                if times:
                    ttfts.append((times[0] - reply.sent_at) * 1000)
        # Per-pane decode rate: tokens after the first over the time after the first.
        n_dec = sum(max(len(t) - 1, 0) for t, _ in rates)
        t_dec = sum(t[-1] - t[0] for t, _ in rates if len(t) > 1)
        return {"tok_s_per_pane": n_dec / t_dec if t_dec else 0.0,
                "ttft_ms": statistics.median(ttfts) if ttfts else None,
                "peak_rss_mb": eng.peak_rss_mb(), "tokens": tokens, "protocol": hello.content}
    finally:
        eng.close()


def run(max_tokens: int = 160, seed: int = 1234, threads: int | None = None) -> dict:
    from engine.models.spec import bundled_gguf_path

    cores = os.cpu_count() or 1
    threads = threads or cores
    model_path = str(bundled_gguf_path())
    with tempfile.TemporaryDirectory(prefix="hal-bench-") as tmp:
        env = {"HAL_STUDIO_DATA": tmp}
        raw = bench_raw(model_path, max_tokens, seed, threads)
        single = bench_engine(1, max_tokens, seed, env)
        pair = bench_engine(2, max_tokens, seed, env)
    out = {
        "model": os.path.basename(model_path),
        "cores": cores,
        "threads": threads,
        "max_tokens": max_tokens,
        "raw_tok_s": round(raw["tok_s"], 2),
        "single_tok_s": round(single["tok_s_per_pane"], 2),
        "pair_tok_s_per_pane": round(pair["tok_s_per_pane"], 2),
        "ttft_ms_raw": round(raw["ttft_ms"], 1),
        "ttft_ms_single": round(single["ttft_ms"], 1),
        "ttft_ms_pair": round(pair["ttft_ms"], 1),
        "single_peak_rss_mb": round(single["peak_rss_mb"], 1),
        "pair_peak_rss_mb": round(pair["peak_rss_mb"], 1),
    }
    out["single_vs_raw"] = round(out["single_tok_s"] / out["raw_tok_s"], 3) if raw["tok_s"] else None
    out["pair_total_vs_single"] = (round(2 * out["pair_tok_s_per_pane"] / out["single_tok_s"], 3)
                                   if out["single_tok_s"] else None)
    out["pair_rss_vs_single"] = round(out["pair_peak_rss_mb"] / out["single_peak_rss_mb"], 3)
    out["targets"] = {
        "single_tok_s >= 0.9 * raw_tok_s": bool(out["single_vs_raw"] and out["single_vs_raw"] >= 0.9),
        "2 * pair_tok_s_per_pane >= single_tok_s": bool(
            out["pair_total_vs_single"] and out["pair_total_vs_single"] >= 1.0),
        "pair_peak_rss_mb <= 1.15 * single_peak_rss_mb": out["pair_rss_vs_single"] <= 1.15,
    }
    return out


def _cmd(args: argparse.Namespace) -> int:
    result = run(max_tokens=args.max_tokens, seed=args.seed, threads=args.threads)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:32s} {value}")
    return 0


def register(bench_sub) -> None:
    p = bench_sub.add_parser("chat", help="chat speed and memory: raw llama.cpp vs the engine")
    p.add_argument("--json", action="store_true")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    p.set_defaults(func=_cmd)


if __name__ == "__main__":
    sys.exit(_cmd(argparse.Namespace(json=True, max_tokens=160, seed=1234, threads=None)))
