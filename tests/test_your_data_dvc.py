"""A shop's product Q&A table, in its own columns, through `dvc repro` (prepare -> split -> train -> generate).

A scratch repository holds this checkout's src/, stage scripts and those four stages of dvc.yaml; the source is a
60-row CSV with `title`, `content`, `question`, `answer` columns built here (never a download), mapped with a
column map and trained under a custom Portuguese prompt template on a tiny random GPT-2 (2 steps). The judge,
evaluate and report stages are left out: they add nothing to what this test checks and minutes to its run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from test_dvc import REPO, _dvc, _run
from test_your_data import PRODUCT_COLUMNS, PRODUCT_TEMPLATE, product_rows, write_csv

pytest.importorskip("dvc")
STAGES = ("prepare", "split", "train", "generate")


@pytest.mark.slow
def test_a_product_table_with_a_column_map_and_a_custom_template_through_dvc_repro(tmp_path: Path,
                                                                                  tiny_gpt2_dir: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "stages").mkdir()
    for stage in STAGES:
        shutil.copy(REPO / "stages" / f"{stage}.py", root / "stages" / f"{stage}.py")
    yaml = YAML()
    stages = yaml.load(REPO / "dvc.yaml")["stages"]
    chosen = {name: stages[name] for name in STAGES}
    chosen["prepare"]["deps"].append("data/raw")  # a local source is a dep of the stage (README: "Your data")
    yaml.dump({"stages": chosen}, root / "dvc.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    write_csv(root / "data" / "raw" / "produtos.csv", product_rows(60))
    (root / "data" / "synth").mkdir()
    (root / "data" / "synth" / "records.jsonl").write_text("")  # what `synthesize` writes without documents
    params = yaml.load(REPO / "params.yaml")
    params["data"]["sources"] = [{"uri": "data/raw/produtos.csv", "format": "auto", "name": "produtos",
                                  "columns": PRODUCT_COLUMNS}]
    params["split"].update({"train_size": 40, "val_size": 8, "test_size": 8, "quartiles": 2})
    params["model"]["name"] = str(tiny_gpt2_dir)
    params["train"].update({"template": "custom", "prompt_template": PRODUCT_TEMPLATE, "max_length": 128,
                            "max_steps": 2, "batch_size": 4, "eval_steps": 2, "save_steps": 2, "logging_steps": 1})
    params["generate"].update({"max_new_tokens": 8, "batch_size": 8, "do_sample": False})
    yaml.dump(params, root / "params.yaml")
    assert _run(root, "git", "init", "-q").returncode == 0
    assert _dvc(root, "init", "-q").returncode == 0
    assert _run(root, "git", "add", "-A").returncode == 0
    assert _run(root, "git", "commit", "-qm", "scratch study").returncode == 0  # DVCLive needs a commit

    done = _dvc(root, "repro", "generate")
    assert done.returncode == 0, done.stdout + done.stderr

    prepared = [json.loads(line) for line in (root / "data/prepared/records.jsonl").read_text().splitlines()]
    assert len(prepared) == 60 and all(r["source"] == "produtos" for r in prepared)
    assert sum("### Descrição:" in r["input"] for r in prepared) == 60 - 9  # rows 0, 7, ... have no description
    example = json.loads((root / "metrics/breakdown/train.json").read_text())["example"]
    assert example["text"].startswith("Responda à pergunta sobre o produto")
    assert "### Resposta (baseada na descrição):\n[[" in example["text"] and example["text"].endswith("]]")
    assert example["settings"].startswith("template custom (custom prompt_template)")
    tuned = [json.loads(line) for line in (root / "data/generations/tuned.jsonl").read_text().splitlines()]
    assert len(tuned) == 8
    status = _dvc(root, "status")
    assert "changed" not in status.stdout, status.stdout  # everything it ran is up to date
