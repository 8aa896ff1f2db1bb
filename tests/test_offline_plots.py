"""`python -m instruct_tune.report.offline_plots show` writes a DVC plots page that needs no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from instruct_tune.report.offline_plots import TEMPLATE_NAME, main

LOSS_CSV = "step,loss\n0,2.5\n1,1.9\n2,1.4\n3,0.875\n"


def _toy_repo(root: Path) -> None:
    """git + DVC repository with one CSV declared as a linear plot in dvc.yaml's top-level `plots:`."""
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=root, check=True, env=_env())
    (root / "plots").mkdir()
    (root / "plots" / "loss.csv").write_text(LOSS_CSV)
    (root / "dvc.yaml").write_text("plots:\n  - plots/loss.csv:\n      x: step\n      y: loss\n")


def _env() -> dict[str, str]:
    # No analytics ping from the DVC we start (the network may be unreachable; it would only slow the test).
    return {**os.environ, "DVC_NO_ANALYTICS": "1"}


def test_show_writes_self_contained_page(tmp_path: Path) -> None:
    _toy_repo(tmp_path)
    run = subprocess.run(
        [sys.executable, "-m", "instruct_tune.report.offline_plots", "show"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    page = tmp_path / "dvc_plots" / "index.html"
    assert str(page) in run.stdout
    html = page.read_text(encoding="utf-8")

    # The plot's data is in the page: DVC embeds the filled vega-lite spec in an inline script.
    specs = [json.loads(s) for s in re.findall(r"var spec = (\{.*\});\s*vegaEmbed", html)]
    assert len(specs) == 1
    rows = {(row["step"], row["loss"]) for row in specs[0]["data"]["values"]}
    assert rows == {("0", "2.5"), ("1", "1.9"), ("2", "1.4"), ("3", "0.875")}

    # Nothing is loaded from elsewhere: no script with a src, no stylesheet link, no CDN address.
    assert 'src="http' not in html and "//cdn" not in html
    tags = re.findall(r"<(?:script|link)\b[^>]*>", html, flags=re.IGNORECASE)
    assert tags  # the inline bundle's script and the plot's script
    for tag in tags:
        assert not re.search(r"\b(?:src|href)\s*=", tag, flags=re.IGNORECASE), tag
        assert "https://" not in tag and "http://" not in tag, tag
    assert "{scripts}" not in html  # the placeholder where DVC would have put its CDN tags

    # vegaEmbed is defined inline, in a script that runs before the plot's own script calls it.
    defined = html.find("window.vegaEmbed=")
    assert 0 <= defined < html.find("vegaEmbed('#")

    # The template lives in .dvc/tmp, which DVC keeps out of git.
    template = tmp_path / ".dvc" / "tmp" / TEMPLATE_NAME
    assert template.is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(template)], cwd=tmp_path)
    assert ignored.returncode == 0


def test_rejects_unknown_subcommand(capsys) -> None:
    assert main(["modify", "x"]) == 2
    assert "show,diff" in capsys.readouterr().err
