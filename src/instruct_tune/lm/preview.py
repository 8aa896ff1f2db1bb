"""See what is trained: `instruct-tune-preview` renders training examples exactly as the trainer sees them.

Each record goes through the trainer's own code (`examples.training_text` and `examples.encode_example`, under the
`train` params: template, custom prompt template, system prompt, `max_length`, `overlong`, `loss_on`) and is shown
as text with the tokens that carry loss marked: `[[...]]` around them in plain output, green on a terminal. Below
each: its token counts (prompt, loss-bearing, total). At the end: how many records of the file the length limit
trims (prompt cut from the left) or drops, by reason.

    instruct-tune-preview                       # 3 examples of data/split/train.jsonl under params.yaml
    instruct-tune-preview -n 5 --records data/prepared/records.jsonl --color never

The train stage writes one such example into metrics/breakdown/train.json (`example`), and REPORT.md shows it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

from instruct_tune.errors import UserError
from instruct_tune.lm.examples import IGNORE_INDEX, encode_example, read_split, training_text
from instruct_tune.params import PARAMS_FILE, TrainParams, load_params

DEFAULT_RECORDS = "data/split/train.jsonl"  # the train stage's input
PLAIN = ("[[", "]]")  # around loss-bearing tokens when the output is not a terminal
ANSI = ("\x1b[1;32m", "\x1b[0m")  # bold green on a terminal


def spans(example: dict[str, list[int]]) -> list[tuple[bool, list[int]]]:
    """The example's tokens as runs of (carries loss, token ids), in order."""
    runs: list[tuple[bool, list[int]]] = []
    for token, label in zip(example["input_ids"], example["labels"]):
        loss = label != IGNORE_INDEX
        if runs and runs[-1][0] == loss:
            runs[-1][1].append(token)
        else:
            runs.append((loss, [token]))
    return runs


def render(example: dict[str, list[int]], tokenizer: Any, marks: tuple[str, str] = PLAIN) -> str:
    """The example's text (special tokens shown as their text), loss-bearing runs between `marks`."""
    out = []
    for loss, ids in spans(example):
        text = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        out.append(f"{marks[0]}{text}{marks[1]}" if loss else text)
    return "".join(out)


def preview_record(record: dict[str, Any], tokenizer: Any, train: TrainParams, chat_template: str | None = None,
                   marks: tuple[str, str] = PLAIN) -> dict[str, Any]:
    """One record as the trainer sees it: `text` (marked), token counts, and whether the length limit trimmed
    or dropped it (`status`: kept | trimmed | dropped: <reason>)."""
    prompt, response = training_text(record, tokenizer, train, chat_template)
    example, reason = encode_example(prompt, response, tokenizer, train.max_length, train.loss_on, train.overlong)
    out: dict[str, Any] = {"id": record.get("id"), "status": f"dropped: {reason}" if example is None else "kept"}
    if example is None:
        return out
    full, _ = encode_example(prompt, response, tokenizer, sys.maxsize, train.loss_on, train.overlong)
    if full is not None and len(full["input_ids"]) > len(example["input_ids"]):
        out["status"] = "trimmed"
        out["tokens_before_trim"] = len(full["input_ids"])
    n_loss = sum(1 for label in example["labels"] if label != IGNORE_INDEX)
    out.update({"text": render(example, tokenizer, marks), "tokens": len(example["input_ids"]),
                "loss_tokens": n_loss, "prompt_tokens": len(example["input_ids"]) - n_loss
                if train.loss_on == "response" else None})
    return out


def length_summary(records: list[dict[str, Any]], tokenizer: Any, train: TrainParams,
                   chat_template: str | None = None) -> dict[str, Any]:
    """How many records the length limit keeps whole, trims, or drops (by reason)."""
    counts: Counter = Counter()
    for record in records:
        status = preview_record(record, tokenizer, train, chat_template)["status"]
        counts[status] += 1
    return {"records": len(records), "kept_whole": counts["kept"], "trimmed": counts["trimmed"],
            "dropped": {k.removeprefix("dropped: "): v for k, v in sorted(counts.items()) if k.startswith("dropped")}}


def add_example_to_breakdown(records_path: Any, model_dir: Any, breakdown_path: Any, train: TrainParams,
                             chat_template: str | None = None) -> None:
    """The train stage's `example` in metrics/breakdown/train.json: its first record that trains, rendered with
    plain marks by the tokenizer saved beside the tuned model (REPORT.md's "What the model sees")."""
    from transformers import AutoTokenizer

    from instruct_tune.io import read_json, write_json

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for record in read_split(records_path):
        shown = preview_record(record, tokenizer, train, chat_template)
        if "text" in shown:
            breakdown = read_json(breakdown_path)
            breakdown["example"] = {"settings": describe_settings(train), **shown}
            write_json(breakdown_path, breakdown)
            return


def describe_settings(train: TrainParams) -> str:
    extra = " (custom prompt_template)" if train.template == "custom" else ""
    system = ", system prompt set" if train.system_prompt else ""
    return (f"template {train.template}{extra}{system}, max_length {train.max_length}, overlong {train.overlong}, "
            f"loss on {train.loss_on}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="examples to show (default 3)")
    parser.add_argument("--records", default=DEFAULT_RECORDS, help=f"a JSON Lines file (default {DEFAULT_RECORDS})")
    parser.add_argument("--params", default=PARAMS_FILE)
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        from instruct_tune.lm.modeling import load_tokenizer

        try:
            records = read_split(args.records)
        except UserError as exc:
            hint = " (run `dvc repro split` first, or pass --records data/prepared/records.jsonl)" \
                if args.records == DEFAULT_RECORDS else ""
            raise UserError(f"{exc}{hint}") from None
        tokenizer = load_tokenizer(params.model)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    marks = ANSI if colour else PLAIN
    train, chat_template = params.train, params.model.chat_template
    print(f"{args.records}: {describe_settings(train)}; tokens that carry loss are "
          f"{'green' if colour else 'between [[ and ]]'}")
    for i, record in enumerate(records[: args.n], 1):
        shown = preview_record(record, tokenizer, train, chat_template, marks)
        print(f"\n----- example {i} (id {shown['id']}): {shown['status']}")
        if "text" in shown:
            print(shown["text"])
            trimmed = f", {shown['tokens_before_trim']} before trimming" if "tokens_before_trim" in shown else ""
            print(f"----- {shown['tokens']} tokens, {shown['loss_tokens']} carry loss{trimmed}")
    summary = length_summary(records, tokenizer, train, chat_template)
    dropped = ", ".join(f"{reason} {n}" for reason, n in summary["dropped"].items()) or "none"
    print(f"\nlength limit (train.max_length {train.max_length}, train.overlong {train.overlong}): of "
          f"{summary['records']} records {summary['kept_whole']} kept whole, {summary['trimmed']} trimmed, dropped: "
          f"{dropped}")


if __name__ == "__main__":
    main()
