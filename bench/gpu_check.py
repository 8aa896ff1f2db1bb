"""Prove the CUDA-only paths of the train stage and time them: bf16, LoRA, QLoRA (4-bit), 8-bit, adamw_8bit.

Runs `stages/train.py` unchanged, once per configuration, each in its own scratch folder holding a copy of
`data/split` and a params.yaml that differs from the repository's only in the keys named below. Prints one
row per configuration (status, tokens/s, peak memory, losses) and writes them to --out as JSON.

    python bench/gpu_check.py --model bundled:smollm2-135m-instruct --steps 30
    python bench/gpu_check.py --random-from path/to/config_dir   # same architecture, random weights

With --random-from, a model with the architecture in that folder (config.json + tokenizer) is built with
random weights: timings and memory are those of the real architecture, the losses are meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]

CONFIGS: dict[str, dict[str, dict]] = {
    "full-bf16": {"model": {"dtype": "bfloat16"}},
    "full-fp32": {"model": {"dtype": "float32"}},
    "lora-bf16": {"model": {"dtype": "bfloat16"}, "train": {"lora": {"enabled": True}}},
    "qlora-4bit": {"model": {"dtype": "bfloat16", "load_in": "4bit"}, "train": {"lora": {"enabled": True}}},
    "lora-8bit": {"model": {"dtype": "bfloat16", "load_in": "8bit"}, "train": {"lora": {"enabled": True}}},
    "full-bf16-adamw8bit": {"model": {"dtype": "bfloat16"}, "train": {"optimizer": "adamw_8bit"}},
}


def merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict):
            merge(base.setdefault(key, {}), value)
        else:
            base[key] = value
    return base


def build_random_model(config_dir: Path, out: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(config_dir))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def run_config(name: str, overrides: dict, model_name: str, steps: int, split_dir: Path, batch_size: int) -> dict:
    yaml = YAML()
    params = yaml.load((REPO / "params.yaml").read_text())
    merge(params, {"model": {"name": model_name, "device": "cuda"},
                   "train": {"max_steps": steps, "eval_steps": steps, "save_steps": steps, "logging_steps": 5,
                             "batch_size": batch_size}})
    merge(params, json.loads(json.dumps(overrides)))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shutil.copytree(split_dir, work / "data" / "split")
        with open(work / "params.yaml", "w") as fh:
            yaml.dump(params, fh)
        start = time.perf_counter()
        _, script, *args = shlex.split(yaml.load(REPO / "dvc.yaml")["stages"]["train"]["cmd"])  # as DVC runs it
        proc = subprocess.run([sys.executable, str(REPO / script), *args], cwd=work,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))})
        wall = time.perf_counter() - start
        row = {"config": name, "rc": proc.returncode, "wall_s": round(wall, 1)}
        metrics_path = work / "metrics" / "train.json"
        if proc.returncode == 0 and metrics_path.exists():
            m = json.loads(metrics_path.read_text())
            keys = ("train_tokens_per_s", "peak_memory_mb", "train_loss", "val_loss", "steps")
            row.update({k: m.get(k) for k in keys})
            tuned = work / "models" / "tuned"
            row["saved"] = sorted(p.name for p in tuned.iterdir()) if tuned.exists() else []
        else:
            row["error"] = (proc.stderr or proc.stdout)[-1500:]
        return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--random-from", type=Path,
                        help="config + tokenizer folder: random weights of that architecture")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--split", type=Path, default=REPO / "data" / "split")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; these paths are CUDA-only (on CPU they fail early by design)")
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    model_name = args.model
    if args.random_from:
        model_name = str(build_random_model(args.random_from, Path(tempfile.mkdtemp()) / "random-model"))
    rows = []
    for name in args.configs.split(","):
        row = run_config(name, CONFIGS[name], model_name, args.steps, args.split, args.batch_size)
        rows.append(row)
        summary = {k: v for k, v in row.items() if k != "error"}
        print(json.dumps(summary), flush=True)
        if "error" in row:
            print(f"  error tail: {row['error'][-600:]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
