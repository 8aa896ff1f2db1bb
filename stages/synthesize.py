"""Stage `synthesize`: instruction records written by an LLM from the documents in `synth.documents`, each one
audited by an LLM. Writes data/synth/records.jsonl (kept; `prepare` reads it as one more source) and
data/synth/audit.jsonl (every candidate with its verdict), metrics/synthesize.json (counts, accepted share)
and metrics/breakdown/synthesize.json (per reason, per task, samples). Without documents it writes empty
outputs and loads no model. LLM answers are cached in data/synth_cache/ (scratch, git-ignored, keyed by
content): a rerun on unchanged inputs makes no call, and a killed run resumes.
"""

from pathlib import Path

from instruct_tune.cli import run_stage
from instruct_tune.params import load_params, read_yaml
from instruct_tune.synthesize import check_tracked, summary, synthesize, write_outputs


def main() -> None:
    params = load_params("params.yaml").synth
    if params.documents is not None and Path("dvc.yaml").exists():
        stage = (read_yaml("dvc.yaml").get("stages") or {}).get("synthesize")
        if stage is not None:
            check_tracked(params.documents, [d for d in stage.get("deps", []) if isinstance(d, str)])
    result = synthesize(params, Path("data/synth_cache"))
    write_outputs(result, Path("data/synth"), Path("metrics/synthesize.json"),
                  Path("metrics/breakdown/synthesize.json"))
    print(summary(result))


if __name__ == "__main__":
    run_stage(main)
