"""Judge throughput: pairs per minute, the in-process `local` backend against the `openai` backend
talking to a real `python -m llama_cpp.server` (same bundled GGUF, same threads) with concurrency 4.

Same pairs for both (default 20 from ../shared/data/raschka_ch07/eval-example-data.json, "model 1
response" vs "model 2 response", each judged in both orders), each with an empty cache. Prints pairs
per minute, judge calls, errors and the ratio; also how often the two backends reach the same outcome.

    python bench/bench_judge.py            # 20 pairs (several minutes on 2 CPU cores)
    python bench/bench_judge.py --quick    # 2 pairs, a smoke run
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from instruct_tune import judge as J
from instruct_tune.io import write_jsonl
from instruct_tune.judge_backends import OpenAIBackend
from instruct_tune.modeling import bundled_gguf_path
from instruct_tune.params import JudgeParams

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "raschka_ch07" / "eval-example-data.json"


def write_pairs(folder: Path, n: int) -> tuple[Path, Path]:
    rows = json.loads(DATA.read_text(encoding="utf-8"))[:n]
    for name, key in (("m1", "model 1 response"), ("m2", "model 2 response")):
        write_jsonl(folder / f"{name}.jsonl", [
            {"id": f"ex{i:03d}", "instruction": r["instruction"], "input": r["input"], "reference": r["output"],
             "response": r[key].strip()} for i, r in enumerate(rows)
        ])
    return folder / "m1.jsonl", folder / "m2.jsonl"


def start_server(n_threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gguf_path()), "--model_alias", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=2):
                return proc, f"{url}/v1"
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start within 120 s")


def timed(label: str, gens: tuple[Path, Path], params: JudgeParams, cache: Path, backend=None) -> dict:
    start = time.perf_counter()
    judgments, metrics, stats = J.judge_generations(gens[0], gens[1], ("m1", "m2"), params, cache, backend=backend,
                                                    progress=False)
    seconds = time.perf_counter() - start
    result = {"label": label, "seconds": seconds, "pairs_per_min": 60 * len(judgments) / seconds,
              "calls": stats.judge_calls, "errors": metrics["errors"], "outcomes": [j["outcome"] for j in judgments],
              "position_consistency": metrics["position_consistency"]}
    print(f"{label:<34} {len(judgments)} pairs in {seconds:7.1f} s = {result['pairs_per_min']:6.2f} pairs/min "
          f"({stats.judge_calls} calls, {metrics['errors']} errors, position consistency {metrics['position_consistency']})",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 pairs: a smoke run")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--n-threads", type=int, default=0, help="llama.cpp threads for both (0: its default)")
    args = parser.parse_args()
    n = 2 if args.quick else args.pairs
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found (../shared/data beside the checkout)")
    tmp = Path(tempfile.mkdtemp(prefix="bench_judge_"))
    gens = write_pairs(tmp, n)
    print(f"judge benchmark: {n} pairs x 2 orders, bundled SmolLM2-135M GGUF, n_threads={args.n_threads or 'default'}")

    local = timed("local (in-process llama-cpp)", gens, JudgeParams(n_threads=args.n_threads), tmp / "cache_local")

    proc, url = start_server(args.n_threads, tmp / "server.log")
    try:
        params = JudgeParams(backend="openai", base_url=url, model="smollm2", concurrency=args.concurrency,
                             timeout_s=600.0, api_key_env="BENCH_JUDGE_NO_KEY")
        backend = OpenAIBackend(params, J.SCHEMA)
        served = timed(f"openai -> llama_cpp.server (conc {args.concurrency})", gens, params, tmp / "cache_server",
                       backend=backend)
        fmt = backend.formats[backend._level]
        print(f"server response format used: {fmt['type'] if fmt else 'none'}{' + schema' if fmt and 'schema' in fmt else ''}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    same = sum(a == b for a, b in zip(local["outcomes"], served["outcomes"], strict=True))
    print(f"ratio local / server: {local['pairs_per_min'] / served['pairs_per_min']:.2f}x "
          f"(server / local: {served['pairs_per_min'] / local['pairs_per_min']:.2f}x)")
    print(f"same final outcome on {same}/{n} pairs")


if __name__ == "__main__":
    main()
