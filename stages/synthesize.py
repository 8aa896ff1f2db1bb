"""Stage `synthesize`: instruction records written by an LLM from the documents in `synth.documents` (a folder
inside --documents, the stage's dep), each one audited by an LLM. Writes --out/records.jsonl (kept; `prepare` reads
it as one more source) and --out/audit.jsonl (every candidate with its verdict), --metrics (counts, accepted share)
and --breakdown (per reason, per task, samples). Without documents it writes empty outputs and loads no model. LLM
answers are cached in --cache (scratch, git-ignored, not a DVC out; keyed by content): a rerun on unchanged inputs
makes no call, and a killed run resumes.
"""

from __future__ import annotations

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.params import load_params
from instruct_tune.synth.synthesize import check_failures, check_tracked, summary, synthesize, write_outputs


def main(argv: list[str] | None = None) -> None:
    paths = stage_paths(argv, __doc__, "documents", "out", "cache", "metrics", "breakdown")
    params = load_params().synth
    if params.documents is not None:
        check_tracked(params.documents, [str(paths.documents)])
    result = synthesize(params, paths.cache)
    check_failures(result, paths.cache)  # too many failed calls: exit 2, every success cached
    write_outputs(result, paths.out, paths.metrics, paths.breakdown)
    print(summary(result))


if __name__ == "__main__":
    run_stage(main)
