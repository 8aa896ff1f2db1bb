"""Benchmark: `prepare` + `eda` on Alpaca 52k — wall time and peak memory of each, printed.

Each phase runs in its own child process, so its peak resident memory (getrusage ru_maxrss) is its own;
the baseline (after imports, before work) is printed beside it. The prepare phase goes through
`instruct_tune.data.prepare.prepare` with the file as a local alpaca source; without that module it falls back to
loading the JSON directly (and says so). Usage:

    python bench/bench_prepare_eda.py [--data ../shared/data/alpaca/alpaca_52k_en.json] [--lda-max-docs N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpaca" / "alpaca_52k_en.json"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def phase_prepare(data: Path, out: Path) -> dict:
    from instruct_tune.io import write_jsonl

    try:
        from instruct_tune.params import DataParams, SourceParams
        from instruct_tune.data.prepare import prepare
    except ImportError as exc:
        prepare, how = None, f"direct json.load (instruct_tune.data.prepare not importable: {exc})"
    else:
        how = "instruct_tune.data.prepare.prepare (local alpaca source)"
    base = rss_mib()
    start = time.perf_counter()
    if prepare is not None:
        records, metrics = prepare(DataParams(sources=[SourceParams(uri=str(data), format="alpaca", name="alpaca")]))
        extra = {"kept": metrics.get("kept"), "dropped": metrics.get("dropped")}
    else:
        records, seen = [], set()
        for r in json.loads(data.read_text(encoding="utf-8")):
            rec = {"source": "alpaca", "instruction": r["instruction"], "input": r.get("input") or "",
                   "output": r["output"], "answer": None, "task": None}
            rec["id"] = hashlib.sha1(json.dumps([rec["instruction"], rec["input"], rec["output"]]).encode()).hexdigest()
            if rec["id"] not in seen:
                seen.add(rec["id"])
                records.append(rec)
        extra = {"kept": len(records)}
    wall = time.perf_counter() - start
    write_jsonl(out, records)
    return {"phase": "prepare", "how": how, "records": len(records), "wall_s": wall, "baseline_mib": base,
            "peak_mib": rss_mib(), **extra}


def phase_eda(records_path: Path, lda_max_docs: int | None) -> dict:
    from instruct_tune.data.eda import describe, flesch_scores, write_eda_plots
    from instruct_tune.params import EdaParams
    from instruct_tune.data.split import read_records

    import gensim  # noqa: F401  (imported before the baseline, as the stage does)
    import textstat  # noqa: F401 (likewise)

    params = EdaParams() if lda_max_docs is None else EdaParams(lda_max_docs=lda_max_docs)
    records = read_records(records_path)
    base = rss_mib()
    t0 = time.perf_counter()
    flesch = flesch_scores([r["output"] for r in records])
    t1 = time.perf_counter()
    overall = describe(records, flesch, params)  # lengths, verbs, Flesch summary and LDA (one source: no repeat)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_eda_plots(records, {"overall": overall, "by_source": {}}, tmp)
    t3 = time.perf_counter()
    return {"phase": "eda", "records": len(records), "wall_s": t3 - t0, "flesch_s": t1 - t0,
            "describe_lda_s": t2 - t1, "plots_s": t3 - t2, "lda_documents": overall["lda"]["documents"],
            "lda_max_docs": params.lda_max_docs, "lda_passes": params.lda_passes, "lda_topics": params.lda_topics,
            "baseline_mib": base, "peak_mib": rss_mib()}


def child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"child {args[:2]} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--lda-max-docs", type=int, default=None, help="override eda.lda_max_docs (default: params')")
    ap.add_argument("--phase", choices=["prepare", "eda"], help=argparse.SUPPRESS)
    ap.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase == "prepare":
        print(json.dumps(phase_prepare(a.data, a.records)))
        return
    if a.phase == "eda":
        print(json.dumps(phase_eda(a.records, a.lda_max_docs)))
        return
    if not a.data.exists():
        sys.exit(f"{a.data}: not found (the real datasets sit in ../shared/data beside the checkout)")
    with tempfile.TemporaryDirectory() as tmp:
        records = Path(tmp) / "records.jsonl"
        p = child(["--phase", "prepare", "--data", str(a.data), "--records", str(records)])
        extra = [] if a.lda_max_docs is None else ["--lda-max-docs", str(a.lda_max_docs)]
        e = child(["--phase", "eda", "--records", str(records), *extra])
    print(f"data: {a.data} ({a.data.stat().st_size / 2**20:.1f} MiB)")
    print(f"prepare via {p['how']}")
    print(f"  records kept      {p['records']:>10,}")
    print(f"  wall              {p['wall_s']:>10.2f} s   ({p['records'] / p['wall_s']:,.0f} records/s)")
    print(f"  peak RSS          {p['peak_mib']:>10.1f} MiB (baseline after imports {p['baseline_mib']:.1f} MiB)")
    print(f"eda (lda_max_docs={e['lda_max_docs']}, {e['lda_topics']} topics, {e['lda_passes']} passes, "
          f"{e['lda_documents']} LDA documents)")
    print(f"  wall              {e['wall_s']:>10.2f} s   ({e['records'] / e['wall_s']:,.0f} records/s)")
    print(f"    flesch          {e['flesch_s']:>10.2f} s   ({e['flesch_s'] / e['wall_s']:.0%})")
    print(f"    stats + LDA     {e['describe_lda_s']:>10.2f} s   ({e['describe_lda_s'] / e['wall_s']:.0%})")
    print(f"    plots           {e['plots_s']:>10.2f} s   ({e['plots_s'] / e['wall_s']:.0%})")
    print(f"  peak RSS          {e['peak_mib']:>10.1f} MiB "
          f"(baseline after imports and reading {e['baseline_mib']:.1f} MiB)")
    print(f"prepare + eda wall  {p['wall_s'] + e['wall_s']:>10.2f} s")


if __name__ == "__main__":
    main()
