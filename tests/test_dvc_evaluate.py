"""Scoring is its own stage: in a scratch repository holding this checkout's `generate` and `evaluate` stages (their
dvc.yaml entries, params.yaml, stages/ and src/), an edit to a verification rule makes `dvc repro` rerun `evaluate`
and skip `generate`, whose outputs (model inference, minutes on a CPU in the real study) stay as they were.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from test_dvc import REPO, _run

pytest.importorskip("dvc")

TEST_RECORDS = [
    {"id": "t1", "instruction": "What is 7 times 8?", "input": "", "output": "56", "answer": "56", "task": "arithmetic"},
    {"id": "t2", "instruction": "Is 9 even or odd?", "input": "", "output": "odd", "answer": "odd", "task": "even_odd"},
    {"id": "t3", "instruction": "Give the plural of 'mouse'.", "input": "", "output": "mice", "answer": "mice",
     "task": "plural"},
]


def _ok(root: Path, *args: str) -> subprocess.CompletedProcess:
    done = _run(root, *args)
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done


def _ran(output: str) -> dict[str, bool]:
    """Which stages `dvc repro` ran (True) or skipped as unchanged (False), from its output."""
    found: dict[str, bool] = {}
    for line in output.splitlines():
        for stage in ("generate", "evaluate"):
            if f"Running stage '{stage}'" in line:
                found[stage] = True
            elif f"Stage '{stage}' didn't change, skipping" in line:
                found[stage] = False
    return found


@pytest.mark.slow
def test_a_verify_rule_edit_reruns_evaluate_and_not_generate(tmp_path: Path, tiny_llama_dir: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    yaml = YAML()
    spec = yaml.load(REPO / "dvc.yaml")["stages"]
    yaml.dump({"stages": {name: spec[name] for name in ("generate", "evaluate")}}, root / "dvc.yaml")
    params = yaml.load(REPO / "params.yaml")
    params["model"]["name"] = str(tiny_llama_dir)  # a tiny random model: generation takes a second
    params["generate"].update({"max_new_tokens": 8, "batch_size": 4})
    yaml.dump(params, root / "params.yaml")
    (root / "data" / "split").mkdir(parents=True)
    (root / "data" / "split" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in TEST_RECORDS))
    shutil.copytree(tiny_llama_dir, root / "models" / "tuned")
    _ok(root, "git", "init", "-q")
    _ok(root, sys.executable, "-m", "dvc", "init", "-q")
    first = _ok(root, sys.executable, "-m", "dvc", "repro")
    assert _ran(first.stdout) == {"generate": True, "evaluate": True}, first.stdout
    generations = {p.name: p.read_bytes() for p in (root / "data" / "generations").iterdir()}
    _ok(root, "git", "add", "-A")
    _ok(root, "git", "commit", "-qm", "first run")

    # A rule edit: the arithmetic family now reads answers with the comparison family's rule.
    verify = root / "src" / "instruct_tune" / "tasks" / "verify.py"
    verify.write_text(verify.read_text() + '\n_FAMILY_RULES["arithmetic"] = _FAMILY_RULES["comparison"]\n')
    second = _ok(root, sys.executable, "-m", "dvc", "repro")
    print(second.stdout)
    assert _ran(second.stdout) == {"generate": False, "evaluate": True}, second.stdout
    assert {p.name: p.read_bytes() for p in (root / "data" / "generations").iterdir()} == generations
    assert json.loads((root / "metrics" / "evaluate.json").read_text())["n"] == len(TEST_RECORDS)
