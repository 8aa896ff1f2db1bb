"""A real judge run (the judge CLI's `main`, backend `openai`) SIGKILLed at random moments until a kill lands
inside a cache append; the rerun must lose nothing but the torn entry (which it judges again).

The fake server answers at once with a valid verdict padded by whitespace, so each cache line is a few MB and
its write takes long enough for a random kill to land inside it now and then (a short line is written in one
step that a kill cannot split). Each judge process imports its modules while the previous one runs and starts
judging on a signal, so a kill costs a fraction of a second instead of a full start-up. The kill comes at a
random moment 0-10 ms after the run's first append became visible (appends are what this test is about; a
moment drawn over the whole run would mostly land in imports and HTTP). Bounded: at most 200 kills or 60 s.

Lost entries are counted the way the judge would see them: an entry written whole (its JSON followed by a
newline, even glued after a fragment, as the old code did) that a line-by-line read cannot recover is lost.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_openai import VERDICT, FakeOpenAI
from instruct_tune.io import write_jsonl

pytest.importorskip("openai")

REPO = Path(__file__).resolve().parents[1]
PAIRS = 30
PAD = 3_000_000  # characters of whitespace before the verdict: the judge keeps the raw reply in its cache line
MAX_KILLS, MAX_SECONDS = 200, 60.0


def _setup(root: Path, base_url: str) -> None:
    for name, answer in (("tuned", "yes"), ("base", "no")):
        write_jsonl(root / "gens" / f"{name}.jsonl", [
            {"id": f"r{i}", "instruction": f"Is {i} a number?", "input": "", "reference": "yes", "response": f"{answer} {i}"}
            for i in range(PAIRS)
        ])
    (root / "params.yaml").write_text(
        "judge:\n  backend: openai\n  mode: pairwise\n  model: judge-model\n  api_key_env: JUDGE_KILL_TEST_KEY\n"
        f"  base_url: {base_url}\n  concurrency: 1\n  max_retries: 0\n  timeout_s: 30\n"
        # the reply cap is 64 bytes per max_token: room for the padded replies that make each append slow
        f"  max_tokens: {PAD // 32}\n")


# `python -m instruct_tune.evaluate.head_to_head ARGS`, except that it waits for "go" on stdin after its imports.
_BOOT = """
import sys
import openai  # noqa: F401 (imported by the backend on the first run: done before "go")
from instruct_tune.evaluate import head_to_head
from instruct_tune.cli import run_stage
if sys.stdin.readline().strip() == "go":
    run_stage(lambda: head_to_head.main(sys.argv[1:]))
"""


def _start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _BOOT, "--a", "gens/tuned.jsonl", "--b", "gens/base.jsonl",
         "--names", "tuned,base", "--out", "out", "--cache", "cache"],
        cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _go(proc: subprocess.Popen) -> None:
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


def _complete_keys(data: bytes) -> list[str]:
    """Keys of the entries a line-by-line reader recovers (lines that parse and end with a newline)."""
    keys = []
    for line in data.split(b"\n")[:-1]:
        try:
            keys.append(json.loads(line)["key"])
        except ValueError:
            pass
    return keys


def _whole_keys(data: bytes) -> set[str]:
    """Keys of the entries written whole, also one glued onto the fragment of a torn append."""
    keys = set()
    for line in data.split(b"\n")[:-1]:
        start = line.rfind(b'{"error": ')  # an entry's first key (keys are sorted)
        try:
            keys.add(json.loads(line[start:])["key"])
        except ValueError:
            pass
    return keys


@pytest.mark.slow
def test_sigkill_mid_append_loses_only_the_torn_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "judgments.jsonl"
    rng = random.Random(8)
    kills = torn = 0
    seen: set[str] = set()  # every entry that was ever readable in the file
    lost: set[str] = set()  # entries written whole but not readable
    compactions = expected_drops = 0  # torn tails dropped by the next run; tails that do not parse
    with FakeOpenAI(lambda n, body: " " * PAD + VERDICT) as server:
        _setup(tmp_path, server.base_url)
        started = time.monotonic()
        spare = _start(tmp_path)
        while kills < MAX_KILLS and time.monotonic() - started < MAX_SECONDS and not (torn >= 1 and kills >= 10):
            proc, spare = spare, _start(tmp_path)  # the next one imports while this one runs
            before = cache.stat().st_size if cache.exists() else 0
            _go(proc)
            # Wait until this run appends (after it reads and compacts the cache), then kill at a random moment.
            while proc.poll() is None and (cache.stat().st_size if cache.exists() else 0) <= before:
                time.sleep(0.001)
            if proc.poll() is not None:
                break  # the run finished: nothing left to kill
            time.sleep(rng.uniform(0.0, 0.01))
            proc.send_signal(signal.SIGKILL)
            _, err = proc.communicate()
            compactions += b"dropped 1 unreadable line" in err
            kills += 1
            data = cache.read_bytes()
            if data and not data.endswith(b"\n"):
                torn += 1
                try:
                    json.loads(data.rsplit(b"\n", 1)[-1])  # cut just before its newline: kept whole
                except ValueError:
                    expected_drops += 1
            seen.update(_complete_keys(data))
            lost |= _whole_keys(data) - set(_complete_keys(data))
        elapsed = time.monotonic() - started
        _go(spare)  # the final run, to completion
        _, err = spare.communicate(timeout=300)
        assert spare.returncode == 0, err.decode()[-2000:]
        compactions += b"dropped 1 unreadable line" in err
    data = cache.read_bytes()
    final = _complete_keys(data)
    lost |= (_whole_keys(data) | seen) - set(final)
    cache.unlink()  # hundreds of MB: not worth keeping in pytest's temporary folders
    metrics = json.loads((tmp_path / "out" / "judge.json").read_text())
    print(f"\njudge kill loop: {kills} SIGKILLs in {elapsed:.0f} s, {torn} landed mid-write "
          f"(cache ended without a newline), {compactions} torn line(s) dropped and compacted on restart; "
          f"entries complete before a kill: {len(seen)}, lost: {len(lost)}; final cache {len(final)} entries "
          f"for {PAIRS} pairs x 2 orders, {metrics['errors']} errors")
    assert torn >= 1, f"no kill landed inside a write in {kills} kills"
    assert lost == set()  # nothing written whole was lost
    assert len(final) == len(set(final)) == 2 * PAIRS  # the torn entries were judged again; no duplicates
    assert metrics["n_pairs"] == PAIRS and metrics["errors"] == 0
    assert compactions == expected_drops  # each torn tail was dropped by the next run (the last by the final run)
