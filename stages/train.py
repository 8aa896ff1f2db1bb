"""Stage `train`: fine-tune `model.name` on data/split -> models/tuned, metrics/train.json (+ breakdown), plots/train/.

Runs from the repository root (paths are relative to the working directory); resumes from
models/checkpoints after an interruption. Also runs under `torchrun --nproc_per_node=N` and
`accelerate launch` (only rank 0 writes outputs).
"""

from instruct_tune.cli import run_stage
from instruct_tune.params import load_params
from instruct_tune.training import train


def main() -> None:
    metrics = train(load_params())
    if metrics is not None:
        print(f"train: {metrics['steps']} steps, train loss {metrics['train_loss']:.4f}, val loss "
              f"{metrics['base_val_loss']:.4f} (base) -> {metrics['val_loss']:.4f} (tuned, perplexity "
              f"{metrics['val_perplexity']:.2f}), "
              f"{metrics['train_tokens_per_s']:.0f} tokens/s, {metrics['runtime_s']:.0f} s")


if __name__ == "__main__":
    run_stage(main)
