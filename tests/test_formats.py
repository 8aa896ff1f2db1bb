"""Each format's normalisation into records, and its errors (which name the row and the field)."""

from __future__ import annotations

import pytest

from instruct_tune.errors import UserError
from instruct_tune.data.formats import (
    Row,
    detect_format,
    detokenize,
    dialogue_turns,
    normalise_rows,
)


def rows(*items):
    return [Row(f"f.json: record {i}", item) for i, item in enumerate(items, 1)]


def triple(record):
    return record["instruction"], record["input"], record["output"]


def test_alpaca_with_and_without_input():
    out = normalise_rows(rows({"instruction": "A", "input": "B", "output": "C"}, {"instruction": "D", "output": "E"},
                              {"instruction": "F", "input": None, "output": "G", "answer": "G", "task": "t"}), "alpaca")
    assert [triple(r) for r in out] == [("A", "B", "C"), ("D", "", "E"), ("F", "", "G")]
    assert (out[0]["answer"], out[0]["task"]) == (None, None)
    assert (out[2]["answer"], out[2]["task"]) == ("G", "t")


def test_alpaca_missing_field_names_record_and_field():
    with pytest.raises(UserError, match=r"f.json: record 2: missing field 'output'"):
        normalise_rows(rows({"instruction": "A", "output": "C"}, {"instruction": "B", "input": ""}), "alpaca")


def test_alpaca_mistyped_field():
    with pytest.raises(UserError, match=r"f.json: record 1: field 'output': expected a string, got a number \(3\)"):
        normalise_rows(rows({"instruction": "A", "output": 3}), "alpaca")
    with pytest.raises(UserError, match=r"field 'answer': expected a string or null"):
        normalise_rows(rows({"instruction": "A", "output": "3", "answer": 3}), "alpaca")
    with pytest.raises(UserError, match=r"record 1: expected an object with field 'instruction', got a list"):
        normalise_rows(rows(["A", "B"]), "alpaca")


def test_dolly_and_qa():
    out = normalise_rows(rows({"instruction": "A", "context": "B", "response": "C", "category": "x"}), "dolly")
    assert [triple(r) for r in out] == [("A", "B", "C")]
    out = normalise_rows(rows({"question": "Q1", "answer": "A1"}, {"q": "Q2", "a": "A2", "context": "C2"}), "qa")
    assert [triple(r) for r in out] == [("Q1", "", "A1"), ("Q2", "C2", "A2")]
    with pytest.raises(UserError, match=r"record 1: missing field 'response'"):
        normalise_rows(rows({"instruction": "A", "output": "C"}), "dolly")
    with pytest.raises(UserError, match=r"missing field 'answer' \(or 'a'\)"):
        normalise_rows(rows({"question": "Q"}), "qa")


SHAREGPT = {"conversations": [
    {"from": "system", "value": "Be brief."},
    {"from": "human", "value": "Hi"},
    {"from": "gpt", "value": "Hello!"},
    {"from": "human", "value": "Name a colour."},
    {"from": "gpt", "value": "Blue."},
    {"from": "human", "value": "Thanks"},  # no reply: no record
]}


def test_sharegpt_one_record_per_reply_with_earlier_turns_as_context():
    out = normalise_rows(rows(SHAREGPT), "sharegpt")
    assert [triple(r) for r in out] == [
        ("Hi", "<|system|>\nBe brief.", "Hello!"),
        ("Name a colour.", "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!", "Blue."),
    ]


def test_sharegpt_merged_and_role_content_turns():
    out = normalise_rows(rows(SHAREGPT), "sharegpt", merge_conversations=True)
    assert [triple(r) for r in out] == [
        ("Name a colour.", "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\nHello!", "Blue."),
    ]
    messages = {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    assert [triple(r) for r in normalise_rows(rows(messages), "sharegpt")] == [("Q", "", "A")]


def test_sharegpt_errors():
    with pytest.raises(UserError, match=r"record 1: field 'conversations\[1\]': field 'from': unknown role 'robot'"):
        normalise_rows(rows({"conversations": [{"from": "human", "value": "x"}, {"from": "robot", "value": "y"}]}),
                       "sharegpt")
    with pytest.raises(UserError, match=r"field 'conversations\[0\]': field 'value': expected a string"):
        normalise_rows(rows({"conversations": [{"from": "human", "value": 5}]}), "sharegpt")
    with pytest.raises(UserError, match=r"field 'conversations': expected a list of turns"):
        normalise_rows(rows({"conversations": "hi"}), "sharegpt")
    with pytest.raises(UserError, match=r"missing field 'conversations'"):
        normalise_rows(rows({"chat": []}), "sharegpt")


def test_dailydialog_line_becomes_consecutive_pairs():
    line = "The kitchen stinks . __eou__ I'll throw out the garbage . __eou__ Thanks , dear ! __eou__"
    out = normalise_rows([Row("d.txt: line 1", line)], "dialogue")
    assert [triple(r) for r in out] == [
        ("The kitchen stinks.", "", "I'll throw out the garbage."),
        # The reply's speaker (who said the first line too) is the assistant of the context.
        ("I'll throw out the garbage.", "<|assistant|>\nThe kitchen stinks.", "Thanks, dear!"),
    ]
    merged = normalise_rows([Row("d.txt: line 1", line)], "dialogue", merge_conversations=True)
    assert [triple(r) for r in merged] == [triple(out[-1])]  # the whole dialogue: its last reply


def test_dialogue_markers_and_errors():
    line = "<|user|> Hi <|assistant|> Hello <|user|> Bye <|assistant|> See you"
    out = normalise_rows([Row("d.txt: line 1", line)], "dialogue")
    assert [triple(r) for r in out] == [("Hi", "", "Hello"), ("Bye", "<|user|>\nHi\n<|assistant|>\nHello", "See you")]
    out = normalise_rows(rows({"dialogue": "A __eou__ B"}), "dialogue")
    assert [triple(r) for r in out] == [("A", "", "B")]
    with pytest.raises(UserError, match=r"d.txt: line 4: text before the first"):
        dialogue_turns("oops <|user|> hi", "d.txt: line 4")
    with pytest.raises(UserError, match=r"expected a line of dialogue text, got a number"):
        normalise_rows(rows(5), "dialogue")


def test_detokenize_dailydialog_spacing():
    assert detokenize("Well , how long will it be ? I ’ m sure it ’ s ( almost ) 5 % off .") == \
        "Well, how long will it be? I’m sure it’s (almost) 5% off."


@pytest.mark.parametrize("item, fmt", [
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
    ({"instruction": "a", "context": "", "response": "b"}, "dolly"),
    ({"conversations": []}, "sharegpt"),
    ({"messages": []}, "sharegpt"),
    ({"q": "a", "a": "b"}, "qa"),
    ("A __eou__ B", "dialogue"),
])
def test_detect_format(item, fmt):
    assert detect_format(Row("x", item)) == fmt
    assert normalise_rows([Row("x", item)], "auto") == normalise_rows([Row("x", item)], fmt)


def test_unknown_and_undetectable_formats():
    with pytest.raises(UserError, match=r"unknown format 'xml'"):
        normalise_rows(rows({"instruction": "a", "output": "b"}), "xml")
    with pytest.raises(UserError, match=r"f.json: record 1: cannot detect the format \(fields: foo\)"):
        normalise_rows(rows({"foo": 1}), "auto")
    with pytest.raises(UserError, match=r"format 'alpaca' needs records with fields"):
        normalise_rows([Row("d.txt: line 1", "just text")], "alpaca")


# ---------------------------------------------------------------- dialogues without a reply (issue 8)


@pytest.mark.parametrize("text, message", [
    ("Hello there __eou__", r"d.txt: line 4: a dialogue needs at least two turns \(a message and its reply\), found 1"),
    ("__eou__", r"d.txt: line 4: a dialogue needs at least two turns .* found 1"),
    ("<|user|>\nHi", r"d.txt: line 4: a dialogue needs at least two turns .* found 1"),
    ("<|assistant|>\nHi<|user|>\nBye", r"d.txt: line 4: no <\|user\|> turn is followed by an <\|assistant\|> reply"),
])
def test_a_dialogue_without_a_reply_is_an_error_naming_the_line(text, message):
    with pytest.raises(UserError, match=message):
        normalise_rows([Row("d.txt: line 1", "A __eou__ B"), Row("d.txt: line 4", text)], "dialogue")
    with pytest.raises(UserError, match=message):
        normalise_rows([Row("d.txt: line 4", {"dialogue": text})], "dialogue", merge_conversations=True)
