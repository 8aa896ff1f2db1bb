"""Stage `train`: fine-tune `model.name` on --train (evaluated on --val) -> --model-dir, --metrics (+ --breakdown),
--plots.

Resumes from --checkpoints (scratch state, git-ignored, not a DVC out) after an interruption. Also runs under
`torchrun --nproc_per_node=N` and `accelerate launch` (only rank 0 writes outputs).
"""

from __future__ import annotations

from dataclasses import fields

from instruct_tune.cli import run_stage, stage_paths
from instruct_tune.lm.preview import add_example_to_breakdown
from instruct_tune.lm.training import TrainPaths, train
from instruct_tune.params import load_params


def main(argv: list[str] | None = None) -> None:
    paths = TrainPaths(**vars(stage_paths(argv, __doc__, *(f.name for f in fields(TrainPaths)))))
    params = load_params()
    metrics = train(params.model, params.train, paths)
    if metrics is not None:
        # REPORT.md's "What the model sees": one training example as the trainer saw it, loss-bearing tokens marked
        add_example_to_breakdown(paths.train, paths.model_dir, paths.breakdown, params.train,
                                 params.model.chat_template)
        print(f"train: {metrics['steps']} steps, train loss {metrics['train_loss']:.4f}, val loss "
              f"{metrics['base_val_loss']:.4f} (base) -> {metrics['val_loss']:.4f} (tuned, perplexity "
              f"{metrics['val_perplexity']:.2f}), "
              f"{metrics['train_tokens_per_s']:.0f} tokens/s, {metrics['runtime_s']:.0f} s")


if __name__ == "__main__":
    run_stage(main)
