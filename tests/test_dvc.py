"""Bad inputs through `dvc repro prepare`, as a user meets them, not only through the stage script.

A scratch repository holds this checkout's `prepare` stage (its dvc.yaml entry, params.yaml, stages/prepare.py
and src/), with the source file added to the stage's deps as the README says to. After one good run is
committed, each case writes a malformed source and checks that `dvc repro prepare` fails with the message
naming the file, line and field, and no traceback.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("dvc")


def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(root / "src"), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org", "OMP_NUM_THREADS": "1"}


def _run(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=root, env=_env(root), capture_output=True, text=True, timeout=300)


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return _run(root, sys.executable, "-m", "dvc", *args)


def _set_sources(root: Path, sources: list[dict], judge: dict | None = None) -> None:
    yaml = YAML()
    params = yaml.load(root / "params.yaml")
    params["data"]["sources"] = sources
    params["judge"].update(judge or {})
    yaml.dump(params, root / "params.yaml")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed scratch repository whose `dvc repro prepare` succeeded once."""
    root = tmp_path_factory.mktemp("dvc_repo")
    shutil.copytree(REPO / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (root / "stages").mkdir()
    shutil.copy(REPO / "stages" / "prepare.py", root / "stages" / "prepare.py")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    yaml = YAML()
    stage = yaml.load(REPO / "dvc.yaml")["stages"]["prepare"]
    stage["deps"].append("data/raw")  # a local source is a dep of the stage (README: "Your data")
    yaml.dump({"stages": {"prepare": stage}}, root / "dvc.yaml")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "in.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi!"}\n')
    (root / "data" / "synth").mkdir()
    (root / "data" / "synth" / "records.jsonl").write_text("")  # what `synthesize` writes without documents
    _set_sources(root, [{"uri": "data/raw/in.jsonl", "name": "mine"}])
    assert _run(root, "git", "init", "-q").returncode == 0
    assert _dvc(root, "init", "-q").returncode == 0
    done = _dvc(root, "repro", "prepare")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _run(root, "git", "add", "-A").returncode == 0
    assert _run(root, "git", "commit", "-qm", "a good prepare").returncode == 0
    return root


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


CASES = {
    "wrong type": ("in.jsonl", '{"instruction": "Say hi.", "output": 7}\n', {},
                   "data/raw/in.jsonl: line 1: field 'output': expected a string, got a number (7)"),
    "one-turn dialogue": ("in.txt", "Hi! __eou__ Hello. __eou__\nAnyone there? __eou__\n", {"format": "dialogue"},
                          "data/raw/in.txt: line 2: a dialogue needs at least two turns (a message and its reply), found 1"),
    "NUL in a CSV": ("in.csv", "instruction,output\nSay hi.,Hi!\nAdd 2 and 3.,5\x00\n", {},
                     "data/raw/in.csv: line 3: field 'output': contains a NUL byte (\\x00)"),
    "deep nesting": ("in.jsonl", '{"instruction": "x", "input": %s}\n' % _nested(100_000), {},
                     "data/raw/in.jsonl: line 1: JSON nested deeper than 64 levels"),
    "all whitespace": ("in.jsonl", '{"instruction": "  ", "output": "\\t"}\n{"instruction": "\\u200b", "output": " "}\n',
                       {}, "prepare: no records kept after cleaning and filtering; per source: 'mine' "
                           "(data/raw/in.jsonl): 2 loaded, dropped empty 2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_dvc_repro_prepare_fails_with_a_message_naming_file_line_and_field(template: Path, tmp_path: Path,
                                                                          case: str) -> None:
    name, content, source, message = CASES[case]
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    (root / "data" / "raw" / "in.jsonl").unlink()
    (root / "data" / "raw" / name).write_text(content, encoding="utf-8")
    _set_sources(root, [{"uri": f"data/raw/{name}", "name": "mine", **source}])
    failed = _dvc(root, "repro", "prepare")
    output = failed.stdout + failed.stderr
    print(f"{case}: dvc exit {failed.returncode}; {next(x for x in output.splitlines() if x.startswith('error:'))}")
    assert failed.returncode != 0
    assert f"error: {message}" in output, output
    assert "failed to reproduce 'prepare'" in output and "exited with 2" in output  # a UserError, not a crash
    assert "Traceback" not in output


@pytest.mark.slow
def test_a_failed_repro_removes_the_outputs_and_checkout_brings_them_back(template: Path, tmp_path: Path) -> None:
    """What README says: DVC removes a stage's outputs before running it, so a failure leaves none."""
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    good = {p: (root / p).read_bytes() for p in ("data/prepared/records.jsonl", "metrics/prepare.json")}
    (root / "data" / "raw" / "in.jsonl").write_text('{"instruction": "x", "output": 7}\n')
    assert _dvc(root, "repro", "prepare").returncode != 0
    assert not (root / "data" / "prepared").exists() and not (root / "metrics" / "prepare.json").exists()
    assert _dvc(root, "checkout").returncode == 0  # cached outputs, from dvc.lock
    assert _run(root, "git", "checkout", "metrics/prepare.json").returncode == 0  # metrics: cache false, in git
    assert {p: (root / p).read_bytes() for p in good} == good


@pytest.mark.slow
def test_a_pasted_api_key_fails_the_stage_and_never_reaches_dvc_lock(template: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(template, root, symlinks=True)
    key = "sk-proj-" + "Zx9" * 16
    _set_sources(root, [{"uri": "data/raw/in.jsonl", "name": "mine"}], judge={"api_key_env": key})
    failed = _dvc(root, "repro", "--force", "prepare")  # prepare does not track `judge`: every stage loads it all
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "judge.api_key_env must be the NAME of an environment variable" in output
    assert key not in output and key not in (root / "dvc.lock").read_text()


@pytest.mark.slow
def test_a_changed_url_source_fails_its_pinned_sha256(template: Path, tmp_path: Path) -> None:
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "data.jsonl").write_text('{"instruction": "Say hi.", "output": "Hi!"}\n')
    def handler(*a):
        return http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "repo"
        shutil.copytree(template, root, symlinks=True)
        url = f"http://127.0.0.1:{server.server_address[1]}/data.jsonl"
        _set_sources(root, [{"uri": url, "name": "web", "sha256": "0" * 64}])
        failed = _dvc(root, "repro", "prepare")
    finally:
        server.shutdown()
        server.server_close()
    assert failed.returncode != 0
    assert f"error: {url}: SHA-256 mismatch: expected {'0' * 64}, downloaded " in failed.stdout + failed.stderr
