"""The one LLM client (llm/client.py) keeps every cache key and every cached entry exactly as the judge's and the
synthesizer's own loops wrote them before it existed: data/judge_cache and data/synth_cache keep hitting.

The digests below were computed by the code before the client (commit b3d0615), on the same scripted runs: the
keys, the cached entries (fields and values, errors included) and every message sent (retry turns included, so the
prompt texts, now in prompts/*.yaml, and the retry wording are byte-identical).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from instruct_tune.evaluate import judge as J
from instruct_tune.io import read_jsonl, write_jsonl
from instruct_tune.params import JudgeParams, SynthLLMParams, SynthParams
from instruct_tune.synth import synthesize as S

RECORDS = [  # id, instruction, input, reference, tuned response, base response
    ("p1", "What is 7 times 8?", "", "7 times 8 is 56.", "7 times 8 is 56.", "It is 54."),
    ("p2", "Name the capital of France.", "", "The capital of France is Paris.", "Paris.", "Lyon."),
    ("p3", "Sort these numbers in ascending order.", "9, 2, 5", "2, 5, 9", "2, 5, 9", "9, 5, 2"),
]
GRADE = json.dumps({"reason": "r", "correct": True, "factual_correctness": 5, "instruction_adherence": 4,
                    "clarity_usefulness": 3})
VERDICT = json.dumps({"response_a": {"factual_correctness": 5, "instruction_adherence": 4, "clarity_usefulness": 4,
                                     "total": 13},
                      "response_b": {"factual_correctness": 1, "instruction_adherence": 2, "clarity_usefulness": 3,
                                     "total": 6}, "winner": "A", "justification": "A is right."})


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class Fake:
    """A backend that answers by what it is shown (never by call order), and keeps every message list sent."""

    max_workers = 1

    def __init__(self, reply: Any, model_id: str = "fake:judge") -> None:
        self.reply, self.model_id, self.sent = reply, model_id, []

    def complete(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> str:
        self.sent.append([messages, temperature, max_tokens])
        return self.reply(messages)

    def close(self) -> None:
        pass


class FakeChooser(Fake):
    def choose(self, messages: list[dict[str, str]], steps: list[tuple[str, Any]], shared: str = "") -> list[Any]:
        self.sent.append([messages, steps])
        response = messages[-1]["content"].split("<<<RESPONSE>>>\n", 1)[-1].split("\n<<<END RESPONSE>>>")[0]
        return [None if isinstance(s, dict) else response.rstrip(".") if isinstance(s, int)
                else {o: 0.8 if i == 0 else 0.2 / (len(s) - 1) for i, o in enumerate(s)} for _, s in steps]


def generated(messages: list[dict[str, str]]) -> str:
    """Garbage for the base model's wrong answers; after a retry, a grade for Lyon only."""
    shown = messages[1]["content"]
    if messages[-1]["content"].startswith("That reply"):
        return VERDICT if "RESPONSE A" in shown else GRADE if "Lyon" in shown else "still no JSON"
    if "Lyon" in shown or "9, 5, 2" in shown:
        return "Sure: 5/5/5"
    return VERDICT if "RESPONSE A" in shown else GRADE


def judge_run(tmp_path: Path, fake: Fake, **params: Any) -> tuple[list[dict[str, Any]], Fake]:
    folder = tmp_path / "gens"
    for name, col in (("tuned", 4), ("base", 5)):
        write_jsonl(folder / f"{name}.jsonl", [{"id": r[0], "instruction": r[1], "input": r[2], "reference": r[3],
                                                "response": r[col]} for r in RECORDS])
    J.judge_generations(folder / "tuned.jsonl", folder / "base.jsonl", ("tuned", "base"),
                        JudgeParams(max_pairs=None, controls=0, **params), tmp_path / "cache", backend=fake,
                        progress=False)  # controls: 0, so the entries and messages are exactly the old code's
    return read_jsonl(tmp_path / "cache" / "judgments.jsonl"), fake


SERVER = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "scoring": "generate"}


def judge_runs(tmp_path: Path) -> dict[str, tuple[list[dict[str, Any]], Fake]]:
    return {"generate": judge_run(tmp_path / "g", Fake(generated), **SERVER),
            "choices": judge_run(tmp_path / "c", FakeChooser(generated)),
            "choices_no_reference": judge_run(tmp_path / "n", FakeChooser(generated), use_reference=False),
            "pairwise": judge_run(tmp_path / "p", Fake(generated), mode="pairwise", **SERVER)}


PASSAGES = {
    "lighthouse.txt": "The Lighthouse of Alexandria, also called the Pharos, was built by the Ptolemaic Kingdom of "
                      "Egypt during the reign of Ptolemy II, around 280 BC. It stood on the island of Pharos.",
    "kilimanjaro.txt": "Mount Kilimanjaro is a dormant volcano in Tanzania with three volcanic cones: Kibo, Mawenzi "
                       "and Shira. Its highest point, Uhuru Peak on Kibo, rises 5,895 metres above sea level.",
    "canal.txt": "The Grand Canal of China runs for about 1,776 kilometres from Beijing to Hangzhou, linking the "
                 "Yellow River and the Yangtze River. Its oldest parts were dug in the 5th century BC.",
}


def synth_reply(messages: list[dict[str, str]]) -> str:
    """Examples (none for the canal: always cut off), then audits (a keep, and one reply that needs a retry)."""
    shown = "\n".join(m["content"] for m in messages)
    if messages[0]["content"].startswith("You write"):
        if "Grand Canal" in shown:
            return '{"example_1": {"task": "question"'
        subject = "the Pharos" if "Pharos" in shown else "Kibo"
        sentence = shown.split("<<<PASSAGE>>>\n")[1].split(". ")[0] + "."
        return json.dumps({f"example_{k}": {"task": "question", "instruction": f"What is {subject}? ({k})",
                                            "input": "", "output": sentence} for k in (1, 2)})
    if "(2)" in messages[1]["content"] and not messages[-1]["content"].startswith("That reply"):
        return '{"evidence": "x", "verdict": "maybe"}'
    return json.dumps({"evidence": "The first sentence.", "verdict": "keep"})


def synth_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict[str, Any]], list[Fake]]:
    docs = tmp_path / "docs"
    docs.mkdir(parents=True)
    for name, text in PASSAGES.items():
        (docs / name).write_text(text, encoding="utf-8")
    made: list[Fake] = []
    monkeypatch.setattr(S, "make_backend", lambda llm, schema, section: made.append(
        Fake(synth_reply, f"fake:{section}")) or made[-1])
    server = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1"}
    params = SynthParams(documents=str(docs), passage_chars=450, min_passage_chars=100, per_passage=2,
                         input_share=0.0, generator=SynthLLMParams(model="writer", **server),
                         auditor=SynthLLMParams(model="checker", **server))
    S.synthesize(params, tmp_path / "cache", progress=False)
    return read_jsonl(tmp_path / "cache" / "judgments.jsonl"), made


# Computed by the code before llm/client.py (commit b3d0615) on the runs above: per run, its first two cache keys,
# the digest of every cached entry (key, model, raw replies, verdict or parsed answer, error) and of every message
# list sent (with the retry turns).
PINNED = {
    "generate": ("bff4ed6e2a3e275a9bd551395597a0f2c64b2169dd38120dcd7e271f6edd8c63",
                  "1611c2fa2754deb5b13c79411bc8774db91494806120e1771c998485d21c3412",
                  "9256ec62788acb93a05336e671bf3bc979054ed2441072c60d6dc6f628431273",
                  "2394f240d428c3270c2ffa19b0120556cf6df551d0fc0292b7e07f853f49849b"),
    # The local judge now evaluates each prompt's record part as its own batch (shared by a record's grades), which
    # moves its logits a little: `choices` keys carry that split, so they and the entries changed on purpose (were
    # f1e99dfb... and f8bf0512...); the messages sent are still the old code's.
    "choices": ("9c240f44791c57779a39239cd3949f3370e482907d77b3351c335f73a0cc4234",
                 "4e558323a13865b0ce0e6ca8f27bc540edb98123f72b0c85fc69d4d6a64ed74f",
                 "31ab03ed6271a600e3bcdeb88fc756ace5b0c696d3875ebf7407a8c0115cb27f",
                 "ca4428804883eb14148252a3141b794cc4aae91d38c7ffc79701a9def9077f69"),
    "choices_no_reference": ("0450363f9270c0d779fcdb76935c55d06b713ccc565d0e3816e2a3631fe06be2",
                              "d169cfb30597d7479eaae42a39cacc64084ecdeeb8bdd724f9d25852d7bb5dde",
                              "45cff09de9aed313604060d308924192dfb949360250cf73babd3587dd49c2bf",
                              "20945009294b24d179691b795e3bb779e533a90cb81d841d1f350623f61f7b2d"),
    "pairwise": ("e62d1c8ed88322b8457e0b8433004c04eac5ba88eb22545fa895fc0b08feb74e",
                  "e7ae6d01c7893370c93aeddba2f8d8ebd64837d67d0fcf42fc2fc70488822ace",
                  "587cf6dbbdd7ed2b74f08e85669a70cca3ff8ca46dbe4409512eb94c5c968e73",
                  "0f4de7c4adc5d26b10b28151524f877127a871d1043252dc31148716af3e37f0"),
    # The auditor's passage moved from its system turn to its user turn (document text never in a system turn):
    # its keys, entries and messages changed on purpose (were 00166a09... and 116b6639...); the generator's are
    # still the old code's, pinned apart in GENERATOR_ONLY.
    "synth": ("8a41603702569d3fef647a6dd68f93a985f033ce62600b4703d86737c30ef933",
               "967e81540934d37e017956a872fc6896174cd6e45b0ace955f87749f2c4bfeda",
               "6caba1dca4514a38e7f9f75aca6b3233635fc83fdf0fe0ece4c9c97a7089e681",
               "bde6f3b1b265baf9b221c6515db627acec95d9111b9e9d090943e412658a956f"),
}


# The generator's cached entries and messages alone, computed by the code before llm/client.py (commit b3d0615).
GENERATOR_ONLY = ("a4df69e0051b72e7d2a40a14865c13e98460690d6b3593875940311acf0d04e3",
                  "646358b28df6ccf86ef4e47be30e221984d36617635bfd8048de0bbc47e7910b")


def pinned(entries: list[dict[str, Any]], sent: Any) -> tuple[str, str, str, str]:
    return entries[0]["key"], entries[1]["key"], digest(entries), digest(sent)


@pytest.mark.parametrize("run", ["generate", "choices", "choices_no_reference", "pairwise"])
def test_judge_cache_keys_and_entries_are_the_ones_the_old_code_wrote(tmp_path: Path, run: str) -> None:
    entries, fake = judge_runs(tmp_path)[run]
    assert {tuple(sorted(e)) for e in entries} == {("error", "judge_model", "key", "raw", "verdict")}
    assert pinned(entries, fake.sent) == PINNED[run]
    if run == "generate":
        assert {e["error"] for e in entries} == {None, "invalid reply after a retry at temperature 0: no JSON object in the reply"}


def test_synth_cache_keys_and_entries_are_the_ones_the_old_code_wrote(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    entries, made = synth_run(tmp_path, monkeypatch)
    assert {tuple(sorted(e)) for e in entries} == {("error", "key", "model", "parsed", "raw")}
    assert pinned(entries, [f.sent for f in made]) == PINNED["synth"]
    generator = [e for e in entries if e["model"] == "fake:synth.generator"]
    assert (digest(generator), digest(made[0].sent)) == GENERATOR_ONLY
    assert {e["error"] for e in entries} == {None, "invalid reply after 1 retry at temperature 0: malformed JSON: the "
                                             "object is not closed (the reply was cut off: too few max_tokens?)"}
