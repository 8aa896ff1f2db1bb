"""Text cleaning, placeholders, ids and each filter of `prepare`."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from instruct_tune.data.cleaning import (
    Deduplicator,
    clean_record,
    clean_text,
    drop_reason,
    is_leaky,
    is_placeholder,
    near_duplicate_key,
    record_id,
)


def rec(instruction="Do it.", input="", output="Done.", answer=None, source="s", **extra):
    record = {"instruction": instruction, "input": input, "output": output, "answer": answer, "task": None, **extra}
    record = clean_record(record)
    record["source"] = source
    return record


def test_html_tags_removed_with_breaks_and_entities():
    assert clean_text("<p>Hello <b>world</b> &amp; more</p>") == "Hello world & more"
    assert clean_text("one<br>two<br/>\nthree") == "one\ntwo\nthree"
    assert clean_text('See <a href="https://x.org">this</a>.') == "See this."


@pytest.mark.parametrize("text", ["Fill in the <mask> here.", "<|user|>\nhi", "Describe <a link to a painting>",
                                  "3 < 5 and 6 > 2", 'Output "title: <title>"'])
def test_angle_brackets_that_are_not_html_stay(text):
    assert clean_text(text) == text


def test_record_about_markup_keeps_its_tags():
    r = rec("Create a simple HTML page.", "", "<html><body><p>Hi</p></body></html>")
    assert r["output"] == "<html><body><p>Hi</p></body></html>"
    r = rec("Make the word ravioli bold.", "I ate ravioli.", "I ate <b>ravioli</b>.")
    assert r["output"] == "I ate <b>ravioli</b>."
    r = rec("Create a sign-up form.", "", '<form action="x">\n  <input name="a">\n</form>')
    assert r["output"].startswith("<form")  # a field that starts with markup is markup


def test_control_characters_and_whitespace():
    assert clean_text("a\x00b\u200bc\x07") == "abc"
    assert clean_text("  a  \t b \r\n\n\n\nc   ") == "a b\n\nc"
    code = "def f(x):\n    return x  \n"
    assert clean_text(code) == "def f(x):\n    return x"  # indentation kept, trailing spaces gone
    assert clean_text("e\u0301") == "\u00e9"  # NFC


@pytest.mark.parametrize("text", ["<noinput>", "No input", "No input.", "Noinput", "<no input>", "No input required",
                                  "N/A", "<N/A>", "none", "<none>", '""', "``", ".", "\\"])
def test_input_placeholders(text):
    assert is_placeholder(text, "input")
    assert rec(input=text)["input"] == ""


@pytest.mark.parametrize("text", ["5", "Apple", "..-. --- -.-. .... .", "🐥", "★★★★★", "None of the above"])
def test_real_inputs_are_not_placeholders(text):
    assert not is_placeholder(text, "input")
    assert rec(input=text)["input"] == text


def test_output_placeholders_become_empty_but_real_short_answers_stay():
    for text in ["<nooutput>", "<No output>", "No output required", "<noinput>"]:
        assert rec(output=text)["output"] == ""
    for text in ["None", "N/A", "0", "."]:
        assert rec(output=text)["output"] == text


def test_record_id_is_a_stable_hash_of_cleaned_content():
    r = rec("Say hi.", "", "Hi!")
    assert r["id"] == hashlib.sha1(b"Say hi.\x1f\x1fHi!").hexdigest()[:16]
    assert rec("  Say   hi. ", "<noinput>", "Hi!\n")["id"] == r["id"]  # cleaning first, so equal content, equal id
    assert rec("Say hi.", "", "Hi.")["id"] != r["id"]
    assert record_id({"instruction": "a", "input": "b", "output": ""}) != record_id({"instruction": "a", "input": "", "output": "b"})


def test_near_duplicate_key_ignores_case_punctuation_and_spaces():
    a = rec("What is 2+2?", "", "It is 4.")
    b = rec("what is 2 + 2", "", "It is 4")
    c = rec("What is 2+3?", "", "It is 5.")
    assert near_duplicate_key(a) == near_duplicate_key(b) != near_duplicate_key(c)


def test_drop_reasons():
    kw = dict(max_chars=50, min_output_chars=3, drop_leakage=True)
    assert drop_reason(rec(instruction=""), **kw) == "empty"
    assert drop_reason(rec(output="<nooutput>"), **kw) == "empty"
    assert drop_reason(rec(output="x" * 60), **kw) == "too_long"
    assert drop_reason(rec(output="ok"), **kw) == "too_short"
    assert drop_reason(rec("What is 2+3?", "2+3=5", "The sum is 5.", answer="5"), **kw) == "leakage"
    assert drop_reason(rec("What is 2+3?", "2+3=5", "The sum is 5.", answer="5"), **{**kw, "drop_leakage": False}) is None
    assert drop_reason(rec(), **kw) is None
    assert drop_reason(rec(output="x" * 44), **kw) is None  # 6 + 44 = 50: at the limit


def test_leakage_rule():
    assert is_leaky(rec("Add them.", "7 and 5 make 12", "The total is 12.", answer="12"))
    assert not is_leaky(rec("Add them.", "7, 5 and 113", "The total is 125.", answer="125"))
    assert not is_leaky(rec("Add them.", "7, 5 and 13", "The total is 25.", answer="3"))  # whole words only
    assert is_leaky(rec("Edit the sentence.", "She reads books.", "She reads books."))  # output just repeats input
    # Without an answer, a short output found inside the input is the task itself (extraction, odd one out).
    assert not is_leaky(rec("Identify the odd one out.", "Twitter, Instagram, Telegram", "Telegram"))
    assert not is_leaky(rec("Correct the sentence.", "i want to go to london.", "I want to go to London."))


def test_deduplicator_first_occurrence_wins_across_sources():
    dedup = Deduplicator(near_duplicates=True)
    assert dedup.check(rec("Say hi.", output="Hi!", source="a")) == (None, None)
    assert dedup.check(rec("Say hi.", output="Hi!", source="b")) == ("duplicate", "a")
    assert dedup.check(rec("say hi", output="hi", source="b")) == ("near_duplicate", "a")
    assert dedup.check(rec("Say bye.", output="Bye!", source="b")) == (None, None)
    no_near = Deduplicator(near_duplicates=False)
    assert no_near.check(rec("Say hi.", output="Hi!")) == (None, None)
    assert no_near.check(rec("say hi", output="hi")) == (None, None)


# ---------------------------------------------------------------- hostile markup (issue 8)


def test_script_and_style_blocks_are_removed_with_their_content():
    text = 'Hello <script type="text/javascript">steal(document.cookie)</script>world<STYLE>p{x:y}</style>!'
    assert clean_text(text) == "Hello world!"
    assert clean_text("a <script>never closed") == "a never closed"  # a lone tag goes, its text stays
    r = rec("Summarise the page.", "Breaking <b>news</b><script>alert(1)</script>", "News.")
    assert r["input"] == "Breaking news"  # "script" inside the tag does not make the record "about markup"
    r = rec("Write a script that says hi.", "", "<script>alert('hi')</script>")
    assert r["output"] == "<script>alert('hi')</script>"  # a record about scripts keeps them


PATHOLOGICAL = """
import sys
from instruct_tune.data.cleaning import clean_text
pattern, filler = sys.argv[1], sys.argv[2]
out = clean_text(pattern + filler * (1_000_000 // len(filler)))
# an unclosed tag is not a tag, so the text stays (a lone `<script>` goes, its text stays)
assert out.startswith("" if pattern == "<script>" else pattern[:2]) and "<script>" not in out, out[:40]
"""


@pytest.mark.parametrize("filler", [" ", "x ", "\t\n"])
@pytest.mark.parametrize("pattern", ["<b", "<b a=", "<br", "&amp", "<script>", "<b<b", "</p", "<style x"])
def test_html_stripping_is_linear_on_pathological_input(pattern, filler):
    """1M characters after an unclosed tag: the old regex backtracked quadratically (32k spaces after `<b` took
    5 s, so 1M would take over an hour). The stripper scans with possessive quantifiers only, in well under a
    second. No clock is asserted: a child process does the work and a watchdog far above the linear time (60 s)
    only stops a runaway, which then fails the test."""
    done = subprocess.run([sys.executable, "-c", PATHOLOGICAL, pattern, filler], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_pathological_tags_are_still_handled_correctly():
    assert clean_text("<b" + " x" * 100_000).startswith("<b x x")  # not a tag: no closing `>`
    assert clean_text("<b>" + "y" * 100_000 + "</b>") == "y" * 100_000
    assert clean_text("<b class=" + "z" * 1000 + ">bold</b>") == "bold"
    assert clean_text("<b <i>x</i>") == "<b x"  # the candidate at `<b` ends at the next `<`


def test_html_stripping_runs_after_the_length_filter(monkeypatch):
    import instruct_tune.data.cleaning as cleaning

    calls = []
    real = cleaning.strip_html
    monkeypatch.setattr(cleaning, "strip_html", lambda text: calls.append(len(text)) or real(text))
    long = {"instruction": "Do.", "input": "<b" + "x" * 50_000, "output": "<p>ok</p>", "answer": None, "task": None}
    out = cleaning.clean_record(long, max_chars=2000)
    assert drop_reason(out, 2000, 1, True) == "too_long" and calls == []  # dropped before any stripping
    short = {"instruction": "Do.", "input": "", "output": "It is <b>ok</b>.", "answer": None, "task": None}
    assert cleaning.clean_record(short, max_chars=2000)["output"] == "It is ok." and calls
