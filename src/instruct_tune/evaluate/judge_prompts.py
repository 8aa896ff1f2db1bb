"""The judge's prompts: their texts (data, in prompts/judge.yaml), the chat messages built from them, and the
JSON schemas and forced reply skeletons that constrain the replies.

Every text here is part of a cache key (the messages as sent, the schema or skeleton): editing prompts/judge.yaml
or a builder below makes the judge ask those requests again, and never reuses an old verdict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from instruct_tune.evaluate.rubric import CRITERIA, MAX_SCORE, MAX_TOTAL
from instruct_tune.llm.prompt_text import fill, load_prompts, neutralise

PROMPT_FILES = ["prompts/judge.yaml"]  # read by this module: deps of every stage that imports it (test_contracts)
PROMPTS = load_prompts(Path(__file__).parent / PROMPT_FILES[0])
REASON_CHARS = 160


def _text(name: str) -> str:
    """A prompt text with the rubric's numbers and the reply forms filled in."""
    return fill(PROMPTS[name], max_score=MAX_SCORE, max_total=MAX_TOTAL, partial_top=MAX_SCORE - 1,
                read_reply=PROMPTS["read_reply"], score_reply=PROMPTS["score_reply"])


# `generate` scoring: one prompt, the reference beside the response; {reply_form} is filled per request.
POINTWISE_SYSTEM = _text("pointwise_system")
POINTWISE_TASK = _text("pointwise_task")

# `choices` scoring asks two prompts. The first shows the record and the response (no reference): the judge
# copies the final answer the response commits to and scores instruction adherence and clarity. The second
# shows the record, the reference and only that copied answer (never the response): the judge decides
# `correct` and scores factual correctness. Shown the reference beside the response, a 1.5B judge copies
# the reference into its reading of the response and obeys "declare this correct" inside it; shown only
# the copied answer, it has nothing to obey and compares two short answers. Each prompt has its own system
# turn, whose KV cache the local backend computes once (one llama.cpp context per system turn); each user
# turn ends with a short task line. (The COMPARE paragraph of CHOICES_SYSTEM is not asked of this prompt any
# more, but the READ answers were validated with it in place: removing it changed what the 1.5B judge copies.)
READ_REPLY = _text("read_reply")
SCORE_REPLY = _text("score_reply")
CHOICES_SYSTEM = _text("choices_system")
EXTRACT_QUESTION = _text("extract_question")
SCORE_QUESTION = _text("score_question")
# The comparison is its own short prompt: a 1.5B judge decides far more sharply there (its `same_answer`
# probabilities separate verified right from wrong answers) than with the comparison as one more task of
# the long grading prompt, where even the reference's own answer got p(true) of about 0.5. Its rules and
# worked examples sit in the system turn, whose KV cache is computed once, so they cost nothing per grade.
# Without them the judge compared meanings, not answers: 'P' passed for Phosphorus, 'answer' for a synonym
# of 'answer', 'Belgium' for its capital. Measured on the 100 test records outside the default judged
# subset (200 responses): kappa against strict verification 0.72 with the bare question, 0.79 with these
# rules and examples (AUC of p(same) 0.98, of the factual score 0.95); ten examples instead of six did worse.
COMPARE_RULES = _text("compare_rules")
# (question, input, reference, short reference answer, proposed answer, same answer?, factual score)
COMPARE_EXAMPLES: list[tuple[str, str, str, str, str, bool, int]] = [
    (e["question"], e["input"], e["reference"], e["answer"], e["proposed"], e["same"], e["score"])
    for e in PROMPTS["compare_examples"]
]
COMPARE_QUESTION = _text("compare_question")

PAIRWISE_SYSTEM = _text("pairwise_system")
PAIRWISE_TASK = _text("pairwise_task")
RETRY = PROMPTS["retry"]  # an invalid generated reply: the retry turn, and the error recorded after it
FAILURE = PROMPTS["failure"]


def _compare_lines(instruction: str, input_text: str, reference: str, answer: str | None, proposed: str) -> str:
    """The comparison's record lines: question, input, reference (and its short answer), proposed answer."""
    lines = [f"Question: {neutralise(instruction)}"]
    if input_text:
        lines.append(f"Input: {neutralise(input_text)}")
    lines.append(f"Reference answer: {neutralise(reference)}")
    if answer:
        lines.append(f"Short reference answer: {neutralise(answer)}")
    lines.append(f"Proposed answer: {proposed}")
    return "\n".join(lines)


COMPARE_SYSTEM = COMPARE_RULES + "\n\nExamples:\n\n" + "\n\n".join(
    _compare_lines(q, i, r, a, neutralise(p)) + f'\nReply: {{"same_answer": {str(same).lower()}, '
    f'"factual_correctness": {score}}}' for q, i, r, a, p, same, score in COMPARE_EXAMPLES
)

FINAL_ANSWER = "\x00FINAL_ANSWER\x00"  # where the copied answer goes in the comparison prompt

# Where the record's own lines end in a grading prompt's user turn: before the response (reading, whole-response
# grading) or before the proposed answer (comparing). Everything before is the same for every grade of a record
# (base, tuned, the controls), and the local judge evaluates it once per record instead of once per grade. The first
# marker found decides: untrusted text cannot hold the response delimiter (neutralise), so a prompt that has it is a
# reading prompt whatever its response says; a comparing prompt ends at the last "Proposed answer", since the copied
# answer, one line, cannot hold that line start.
RECORD_ENDS = ("\n\n<<<RESPONSE>>>\n", "\nProposed answer: ")


def record_part(messages: list[dict[str, str]]) -> str:
    """The start of the user turn that every grade of the same record shares ("" if none)."""
    if len(messages) < 2 or messages[0]["role"] != "system":
        return ""
    content = messages[1]["content"]
    return next((content[:content.rfind(end)] for end in RECORD_ENDS if end in content), "")


def _score_schema() -> dict[str, Any]:
    return {"type": "integer", "enum": list(range(MAX_SCORE + 1))}  # llama.cpp's grammar has no min/max


def pointwise_schema(with_reference: bool) -> dict[str, Any]:
    """One graded response: a short reason first, then `correct` (with a reference) and the three scores."""
    props: dict[str, Any] = {"reason": {"type": "string", "maxLength": REASON_CHARS}}
    if with_reference:
        props["correct"] = {"type": "boolean"}
    props.update({c: _score_schema() for c in CRITERIA})
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


def pairwise_schema() -> dict[str, Any]:
    scores = {
        "type": "object",
        "properties": {**{c: _score_schema() for c in CRITERIA},
                       "total": {"type": "integer", "enum": list(range(MAX_TOTAL + 1))}},
        "required": [*CRITERIA, "total"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"response_a": scores, "response_b": scores,
                       "winner": {"type": "string", "enum": ["A", "B", "Tie"]},
                       "justification": {"type": "string", "maxLength": 100}},
        "required": ["response_a", "response_b", "winner", "justification"],
        "additionalProperties": False,
    }


FINAL_ANSWER_TOKENS = 48


def _digits() -> list[str]:
    return [str(v) for v in range(MAX_SCORE + 1)]


def choice_steps(reference: str | None) -> list[tuple[str, Any]]:
    """The forced reply skeleton of the first prompt (`choices` scoring): per field, the text to append and
    the allowed values, or the most tokens the judge may write (`final_answer`)."""
    if reference is None:  # no reference: all three scores from the one prompt
        return [(f'{"{" if i == 0 else ", "}"{c}": ', _digits()) for i, c in enumerate(CRITERIA)]
    return [('{"final_answer": "', FINAL_ANSWER_TOKENS), ('", "instruction_adherence": ', _digits()),
            (', "clarity_usefulness": ', _digits())]


COMPARE_STEPS: list[tuple[str, Any]] = [('{"same_answer": ', ["true", "false"]),
                                        (', "factual_correctness": ', _digits())]


def compare_messages(instruction: str, input_text: str, reference: str, answer: str | None = None
                     ) -> list[dict[str, str]]:
    """The second prompt: the question, the reference (with the record's short answer, when it has one) and
    the copied final answer (a placeholder until then); never the response itself."""
    return [{"role": "system", "content": COMPARE_SYSTEM},
            {"role": "user", "content": _compare_lines(instruction, input_text, reference, answer, FINAL_ANSWER)
             + "\n\n" + COMPARE_QUESTION}]


def reply_form(with_reference: bool) -> str:
    """The reply asked for with `generate` scoring: a short reason first (a critique before the grade keeps
    a small judge from giving 5/5/5 to everything), then `correct` and the scores."""
    keys = ['"reason":"' + PROMPTS["reason_form"] + '"'] + \
        (['"correct":true or false'] if with_reference else []) + [f'"{c}":0-5' for c in CRITERIA]
    return "{" + ",".join(keys) + "}"


def _record_parts(instruction: str, input_text: str, reference: str | None) -> list[str]:
    parts = [f"### Instruction\n{neutralise(instruction)}"]
    if input_text:
        parts.append(f"### Input\n{neutralise(input_text)}")
    if reference is not None:
        parts.append(f"### Reference answer (correct)\n{neutralise(reference)}")
    return parts


def pointwise_messages(instruction: str, input_text: str, reference: str | None, response: str,
                       scoring: str) -> list[dict[str, str]]:
    """The chat messages for grading one response, blind: no model name, the response between delimiters.

    `choices` scoring: the record and the response only (the reference comes in a second prompt that never
    shows the response, see `compare_messages`); `generate`: the record, the reference and the response.
    """
    with_reference = reference is not None
    if scoring == "choices":
        parts = _record_parts(instruction, input_text, None)
        parts.append(f"<<<RESPONSE>>>\n{neutralise(response)}\n<<<END RESPONSE>>>")
        parts.append(EXTRACT_QUESTION if with_reference else SCORE_QUESTION)
        return [{"role": "system", "content": CHOICES_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]
    parts = _record_parts(instruction, input_text, reference)
    parts.append(f"<<<RESPONSE>>>\n{neutralise(response)}\n<<<END RESPONSE>>>")
    parts.append(POINTWISE_TASK)
    system = POINTWISE_SYSTEM.replace("{reply_form}", reply_form(with_reference))
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n\n".join(parts)}]


def pairwise_messages(instruction: str, input_text: str, reference: str | None, response_a: str,
                      response_b: str) -> list[dict[str, str]]:
    """The chat messages for one blind pairwise judgment: labels A and B only, each response delimited."""
    parts = _record_parts(instruction, input_text, reference)
    parts.append(f"<<<RESPONSE A>>>\n{neutralise(response_a)}\n<<<END A>>>")
    parts.append(f"<<<RESPONSE B>>>\n{neutralise(response_b)}\n<<<END B>>>")
    parts.append(PAIRWISE_TASK)
    return [{"role": "system", "content": PAIRWISE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


# `choices` scoring of a record without an exact answer: one prompt, the whole response beside the reference.
# Copying "the final answer" and comparing it with the reference's (above) holds up on short exact answers, but on
# free text it compares the wrong things (a valid rhyme other than the reference's is wrong, a response identical to
# the reference is wrong when the copy picks another word of it). Measured on 130 hand-labelled responses
# (tests/fixtures/judge_labels.jsonl, bench/judge_labels.py; README "Is the judge fit for this data?"): better than
# copy-then-compare there and 1.7x faster (one prompt, nothing written), but the 1.5B judge still leans to `correct`
# for related answers that do not do the task. A checklist variant (three true/false checks before the scores) ranked
# the same (AUC 0.85 vs 0.84) and agreed less (kappa 0.24), so it was not kept.
WHOLE_SYSTEM_RULES = _text("whole_system")
WHOLE_QUESTION = _text("whole_question")
WHOLE_STEPS: list[tuple[str, Any]] = [('{"correct": ', ["true", "false"]),
                                      *[(f', "{c}": ', _digits()) for c in CRITERIA]]


def _whole_parts(instruction: str, input_text: str, reference: str, response: str) -> list[str]:
    parts = _record_parts(instruction, input_text, reference)
    parts.append(f"<<<RESPONSE>>>\n{neutralise(response)}\n<<<END RESPONSE>>>")
    return parts


def _whole_example(e: dict[str, Any]) -> str:
    scores = ", ".join(f'"{c}": {s}' for c, s in zip(CRITERIA, e["scores"], strict=True))
    reply = f'Reply: {{"correct": {str(e["correct"]).lower()}, {scores}}}'
    return "\n\n".join([*_whole_parts(e["instruction"], e["input"], e["reference"], e["response"]), reply])


WHOLE_SYSTEM = WHOLE_SYSTEM_RULES + "\n\nExamples:\n\n" + "\n\n---\n\n".join(
    _whole_example(e) for e in PROMPTS["whole_examples"])


def whole_messages(instruction: str, input_text: str, reference: str, response: str) -> list[dict[str, str]]:
    """Grading one response to a record without an exact answer: the record, its reference and the whole response
    in one prompt (the rules and worked examples in the system turn, whose KV cache is computed once)."""
    parts = _whole_parts(instruction, input_text, reference, response)
    parts.append(WHOLE_QUESTION)
    return [{"role": "system", "content": WHOLE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]
