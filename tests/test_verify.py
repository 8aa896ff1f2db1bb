"""Strict answer verification: every reference output of the generator verifies, plausible wrong, echoed
and hedged answers do not, and the lenient rule is exactly the old generation.answer_matches."""

from __future__ import annotations

import random
import re
import unicodedata

import pytest

from instruct_tune.tasks import extraction, matching, verify, vocabulary
from instruct_tune.tasks.families import TASK_FAMILIES, generate_tasks

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def records() -> list[dict[str, str]]:
    return [r for seed in SEEDS for r in generate_tasks(3000, seed)]


def test_rules_describe_every_family() -> None:
    assert set(verify.RULES) == set(TASK_FAMILIES)
    for family, rule in verify.RULES.items():
        assert rule.strip() and "\n" not in rule, family
    assert verify.GENERIC_RULE.strip()


@pytest.mark.parametrize("family", TASK_FAMILIES)
def test_every_reference_output_verifies(records: list[dict[str, str]], family: str) -> None:
    rows = [r for r in records if r["task"] == family]
    assert len(rows) >= 20, f"too few {family} records to test"
    failures = [
        (r["instruction"], r["input"], r["output"], r["answer"],
         verify.extract_answer(family, r["instruction"], r["input"], r["output"]))
        for r in rows
        if not verify.strict_match(family, r["answer"], r["instruction"], r["input"], r["output"])
    ]
    assert not failures, f"{len(failures)}/{len(rows)} reference outputs fail, e.g. {failures[:3]}"


def test_another_records_output_never_verifies(records: list[dict[str, str]]) -> None:
    """A fluent answer to a different question of the same family (same shape, other facts) fails."""
    rng = random.Random(0)
    by_family: dict[str, list[dict[str, str]]] = {}
    for r in records:
        by_family.setdefault(r["task"], []).append(r)
    passed = []
    for family, rows in by_family.items():
        for r in rng.sample(rows, min(100, len(rows))):
            other = rng.choice(rows)
            if matching.lenient_match(r["answer"], other["output"]):
                continue  # the other output happens to hold this answer (two 'odd' numbers): not a wrong answer
            if verify.strict_match(family, r["answer"], r["instruction"], r["input"], other["output"]):
                passed.append((family, r["instruction"], r["input"], r["answer"], other["output"]))
    assert not passed, passed[:5]


# The lenient rule as generation.answer_matches had it before verify.py took it over (a verbatim copy): the
# lenient numbers reported beside the strict ones must stay comparable with earlier runs.
_OLD_TOKEN = re.compile(r"(?<!\w)-?\d+(?:\.\d+)?|[^\W_]+")


def _old_normalise_tokens(text: str) -> list[str]:
    return _OLD_TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def _old_answer_matches(answer: str, response: str) -> bool:
    target, tokens = _old_normalise_tokens(answer), _old_normalise_tokens(response)
    if not target:
        return bool(answer.strip()) and answer.strip().casefold() in response.casefold()
    k = len(target)
    return any(tokens[i : i + k] == target for i in range(len(tokens) - k + 1))


def test_lenient_match_is_the_old_answer_matches(records: list[dict[str, str]]) -> None:
    rng = random.Random(1)
    sample = rng.sample(records, 400)
    answers = [r["answer"] for r in sample] + ["", "  ", "!!!", "?", "1,234", "-3", "New Delhi", "3.50"]
    responses = [r["output"] for r in sample] + [
        "", "The answer is 1,234.", "1234", "-3 and 3", "new delhi!", "3.5", "it is ?", "!!!", "x-3",
        "2024-01-05", "Paris.", "ＰＡＲＩＳ", "Brasília",
    ]
    for answer in answers:
        for response in rng.sample(responses, 30) + responses[-13:]:
            assert matching.lenient_match(answer, response) == _old_answer_matches(answer, response), (answer, response)
    for text in responses:
        assert matching.normalise_tokens(text) == _old_normalise_tokens(text)
    assert matching.lenient_match("111", "The number 326 is less than 111.")


def test_filler_words_are_never_answers(records: list[dict[str, str]]) -> None:
    """The words the word rule skips ('the', 'is', 'plural', ...) are no answer of a word family (an acronym in
    capitals, NOT or ONE, is never skipped)."""
    answers = ({b for pair in vocabulary.ANTONYMS for b in pair} | {b for _, b in vocabulary.SYNONYMS}
               | set(vocabulary.IRREGULAR_PLURALS.values()) | set(vocabulary.IRREGULAR_VERBS.values())
               | {right for _, right, _ in vocabulary.MISSPELLINGS}
               | {r["answer"] for r in records if r["task"] in ("plural", "past_tense", "string_transform")})
    words = {a.casefold() for a in answers if not (a.isupper() and len(a) > 1)}
    assert not words & extraction.FILLER
    assert verify.strict_match("string_transform", "NOT", "What is the acronym of 'National Office Technology'?",
                               "", "The acronym for 'National Office Technology' is NOT.")


# (family, instruction, input, answer, response, expected). Numbers written as words count only in a response
# without digits ("Seventeen."); a reasoning-first answer whose first new number is an intermediate result
# fails (a known false negative of the first-new-number rule) unless it ends on a conclusion ("So the answer is
# 68."), which then decides, whatever the reasoning named before it.
CASES = [
    # a concluding sentence that ends the response decides
    ("comparison", "Which is the largest number: 255, 228 or 135?", "", "255",
     "First, 255 * 228 = 69074. Therefore, the largest number is 135.", False, "concluded-wrong-after-right"),
    ("comparison", "Which is the largest number: 255, 228 or 135?", "", "255",
     "Maybe 135? Let me check again. So the largest is 255.", True, "concluded-right-after-wrong"),
    ("arithmetic", "What is 17 plus 25?", "", "42", "17 + 20 = 37, then 5 more. The answer is 42.", True,
     "reasoning-then-answer"),
    ("arithmetic", "What is 17 plus 25?", "", "42", "42 looks close. So the answer is 43.", False,
     "concluded-wrong-after-right"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "The answer is 18. Then 12 + 5 = 17 anyway.", False,
     "conclusion-not-at-the-end"),
    ("percentage", "What is 20% of 340?", "", "68", "To find 20% of 340, multiply 340 by 0.2.\nSo the answer is 68.",
     True, "reasoning-then-conclusion"),
    ("sorting", "Sort these numbers in ascending order.", "9, 2, 5", "2, 5, 9",
     "First 9, then 5, then 2? No. So the sorted list is:\n1. 2\n2. 5\n3. 9", True, "concluded-list"),
    # arithmetic
    ("arithmetic", "What is 12 plus 5?", "", "17", "12 + 5 = 17.", True, "equation"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "The answer is 17.", True, "plain"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "Seventeen.", True, "number-word-without-digits"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "The answer is 18, not 17.", False, "wrong-mentions-right"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "The answer is not 18 but 17.", True, "negated-wrong-first"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "To add 12 and 5, count up from 12.", False, "restates"),
    ("arithmetic", "What is 12 plus 5?", "", "17", "It is 17 or 18.", False, "hedge"),
    ("arithmetic", "What is 16 divided by 4?", "", "4", "16 ÷ 4 = 4.", True, "result-equals-operand"),
    ("arithmetic", "What is 16 divided by 4?", "", "4", "16 divided by 4", False, "echo-of-operands"),
    ("arithmetic", "What is 1200 plus 34?", "", "1234", "The answer is 1,234.", True, "thousands-separator"),
    # percentage
    ("percentage", "What percentage of 340 is 170?", "", "50%", "170 is 50% of 340.", True, "plain"),
    ("percentage", "What percentage of 340 is 170?", "", "50%", "It is 50 percent.", True, "percent-word"),
    ("percentage", "What percentage of 340 is 170?", "", "50%", "50", False, "percent-missing"),
    ("percentage", "What is 1/4 as a percentage?", "", "25%", "1/4 = 0.25 = 25%", True, "working-first"),
    ("percentage", "What is 20% of 340?", "", "68", "20% of 340 is 68.", True, "of"),
    ("percentage", "What is 20% of 340?", "", "68", "68%", False, "percent-where-none"),
    ("percentage", "What is 20% of 340?", "", "68", "To find 20% of 340, multiply 340 by 0.2 to get 68.", False,
     "reasoning-first-false-negative"),
    # unit_conversion
    ("unit_conversion", "Convert 12 kilometers to miles.", "", "7.46", "12 km is about 7.456 miles.", True,
     "more-precise"),
    ("unit_conversion", "Convert 12 kilometers to miles.", "", "7.46", "12 km is about 7.5 miles.", False,
     "less-precise"),
    ("unit_conversion", "Convert 12 kilometers to miles.", "", "7.46", "12 kilometers is 12 miles.", False, "echo"),
    ("unit_conversion", "What is -40 °C in degrees Fahrenheit?", "", "-40", "-40 °C is -40 °F.", True,
     "result-equals-input"),
    # comparison
    ("comparison", "Which is smaller, 326 or 111?", "", "111", "111 is smaller than 326.", True, "plain"),
    ("comparison", "Which is smaller, 326 or 111?", "", "111", "The number 326 is less than 111.", False,
     "issue-wrong-first"),
    ("comparison", "Which is smaller, 326 or 111?", "", "111", "Between 326 and 111, 111 is smaller.", True,
     "echo-then-answer"),
    ("comparison", "Which is smaller, 326 or 111?", "", "111", "Is it 326 or 111? Hard to say.", False, "hedge"),
    ("comparison", "Which is smaller, 0.42 or 0.2?", "", "0.2", "0.20 is smaller.", True, "decimal-value"),
    ("comparison", "Is the first number greater than the second? Answer yes or no.", "102 and 943", "No",
     "No, 102 is not greater than 943.", True, "no"),
    ("comparison", "Is the first number greater than the second? Answer yes or no.", "102 and 943", "No",
     "Yes or no: 102 is smaller than 943.", False, "echo-without-answer"),
    ("comparison", "Is the first number greater than the second? Answer yes or no.", "835 and 598", "Yes",
     "There is no doubt: yes, 835 is larger.", True, "no-doubt-is-no-answer"),
    ("comparison", "Find the range of the following numbers (largest minus smallest).", "300, 100, 200", "200",
     "The largest is 300 and the smallest is 100, so the range is 200.", True, "range-equals-listed"),
    ("comparison", "Find the range of the following numbers (largest minus smallest).", "846, 102, 500", "744",
     "The largest is 846 and the smallest is 102.", False, "range-not-given"),
    # sorting
    ("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "", "5, 72, 88", "5, 72, 88", True,
     "plain"),
    ("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "", "5, 72, 88",
     "Sorting 88, 5 and 72 gives 5, 72 and 88.", True, "echo-then-answer"),
    ("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "", "5, 72, 88", "1. 5\n2. 72\n3. 88",
     True, "numbered-list"),
    ("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "", "5, 72, 88", "88, 5, 72", False,
     "echo-only"),
    ("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "", "5, 72, 88",
     "5, 72, 88. Or rather 72, 5, 88.", False, "last-enumeration-wrong"),
    ("sorting", "Sort the words owl, camel and lion in alphabetical order.", "", "camel, lion, owl",
     "Camel, Lion, Owl.", True, "words-any-case"),
    ("sorting", "Arrange these words in alphabetical order.", "owl, camel, lion", "camel, lion, owl",
     "camel, lion", False, "incomplete"),
    # rounding
    ("rounding", "Round 27063 to the nearest ten.", "", "27060", "27063 rounded to the nearest ten is 27060.", True,
     "plain"),
    ("rounding", "Round 27063 to the nearest ten.", "", "27060", "27063", False, "echo"),
    ("rounding", "Round 27063 to the nearest ten.", "", "27060", "About 27060 or 27070.", False, "hedge"),
    ("rounding", "Round 398.1241 to the nearest whole number.", "", "398", "398.1", False, "not-rounded-enough"),
    # even_odd
    ("even_odd", "Is 7 even or odd?", "", "odd", "To decide whether 7 is even or odd, divide by 2. 7 is odd.",
     True, "issue-echo-then-answer"),
    ("even_odd", "Is 7 even or odd?", "", "odd", "7 is not even; it is odd.", True, "negated-option"),
    ("even_odd", "Is 7 even or odd?", "", "odd", "It could be even or odd.", False, "hedge"),
    ("even_odd", "Is 7 even or odd?", "", "odd", "7 is even, which is odd.", False, "wrong-mentions-right"),
    # number_sequence
    ("number_sequence", "What is the next number in the sequence 4, 14, 24, 34, 44?", "", "54",
     "The next number is 54.", True, "plain"),
    ("number_sequence", "What comes next: 41, 30, 19, 8, ...?", "", "-3", "-3, because it decreases by 11.", True,
     "negative"),
    ("number_sequence", "What is the next number in the sequence 4, 14, 24, 34, 44?", "", "54",
     "The sequence 4, 14, 24, 34, 44 grows steadily.", False, "echo"),
    ("number_sequence", "What is the next number in the sequence 4, 14, 24, 34, 44?", "", "54",
     "The next number is 55, as 54 would be too small.", False, "wrong-mentions-right"),
    ("number_sequence", "What is the next number in the sequence 4, 14, 24, 34, 44?", "", "54",
     "The difference is 10, so the next number is 54.", False, "reasoning-first-false-negative"),
    # number_extraction
    ("number_extraction", "How many numbers appear in this sentence? A farmer has 3 cows, 5 sheep and 7 chickens.",
     "", "3", "The text mentions 3 numbers: 3, 5 and 7.", True, "count-equals-a-number"),
    ("number_extraction", "How many numbers are mentioned in the following text?",
     "A farmer has 12 cows, 40 sheep and 7 chickens.", "3", "The numbers are 12, 40 and 7.", False,
     "lists-without-count"),
    ("number_extraction", "Add up all the numbers in the following text.",
     "A farmer has 12 cows, 40 sheep and 7 chickens.", "59", "12 + 40 + 7 = 59.", True, "sum"),
    ("number_extraction", "Add up all the numbers in the following text.",
     "A farmer has 12 cows, 40 sheep and 7 chickens.", "59", "The total is 60, not 59.", False,
     "wrong-mentions-right"),
    # counting
    ("counting", "How many letters are in the word 'lucky'?", "", "5", "The word 'lucky' has 5 letters.", True,
     "plain"),
    ("counting", "How many letters are in the word 'lucky'?", "", "5", "Lucky has five letters.", True,
     "number-word"),
    ("counting", "How many letters are in the word 'lucky'?", "", "5", "There are 5 letters, or maybe 6.", False,
     "hedge"),
    ("counting", "How many times does the letter 't' appear in 'button'?", "", "2",
     "The letter 't' appears 1 time in 'button', not 2.", False, "wrong-mentions-right"),
    # string_transform
    ("string_transform", "Convert 'shiny' to upper case.", "", "SHINY", "In upper case, 'shiny' is SHINY.", True,
     "upper"),
    ("string_transform", "Convert 'shiny' to upper case.", "", "SHINY", "'shiny' in upper case is 'Shiny'.", False,
     "upper-wrong-case"),
    ("string_transform", "Convert 'Apple Bridge' to lower case.", "", "apple bridge", "Apple Bridge", False,
     "lower-echo"),
    ("string_transform", "Capitalize the first letter of each word in 'red apple'.", "", "Red Apple",
     "With capitals, it reads Red Apple.", True, "title"),
    ("string_transform", "Reverse the word 'garden'.", "", "nedrag", "'garden' spelled backwards is 'nedrag'.", True,
     "reverse"),
    ("string_transform", "Reverse the word 'garden'.", "", "nedrag", "'nedrag' becomes 'garden' again.", False,
     "reverse-source-is-not-answer"),
    ("string_transform", "Remove all the vowels from the word 'teacher'.", "", "tchr",
     "Without vowels, 'teacher' is 'tcher'.", False, "no-vowels-wrong"),
    ("string_transform", "What is the acronym of 'Advanced Business Global'?", "", "ABG", "A.B.G.", True,
     "acronym-dotted"),
    ("string_transform", "Reverse the order of the words in 'green button bought Maya'.", "",
     "Maya bought button green", "'green button bought Maya' reversed is 'Maya bought button green'.", True,
     "word-order"),
    ("string_transform", "Reverse the order of the words in 'green button bought Maya'.", "",
     "Maya bought button green", "The phrase is green button bought Maya.", False, "word-order-echo"),
    # letter_position
    ("letter_position", "What is the position of the letter R in the English alphabet?", "", "18",
     "R is the 18th letter of the alphabet.", True, "ordinal"),
    ("letter_position", "What is the position of the letter R in the English alphabet?", "", "18",
     "R is the 17th letter; the 18th is S.", False, "wrong-mentions-right"),
    ("letter_position", "What is the 5th letter of the English alphabet?", "", "E",
     "A, B, C, D, E: the 5th letter is E.", True, "enumeration-then-answer"),
    ("letter_position", "What is the 5th letter of the English alphabet?", "", "E", "I think it is D, not E.",
     False, "pronoun-and-wrong"),
    ("letter_position", "What is the 1st letter of the English alphabet?", "", "A", "A is the first letter.", True,
     "letter-a-not-article"),
    # alphabetical_order
    ("alphabetical_order", "Which of these words comes last in alphabetical order: forest, sandwich and lantern?",
     "", "sandwich", "In alphabetical order, 'sandwich' comes last.", True, "plain"),
    ("alphabetical_order", "Which of these words comes last in alphabetical order: forest, sandwich and lantern?",
     "", "sandwich", "Sorted: forest, lantern, sandwich. So sandwich comes last.", True, "enumeration-then-answer"),
    ("alphabetical_order", "Which of these words comes last in alphabetical order: forest, sandwich and lantern?",
     "", "sandwich", "Of forest, sandwich and lantern, forest comes first and sandwich last.", False,
     "rambling-wrong-first"),
    ("alphabetical_order", "Which of these words comes last in alphabetical order: forest, sandwich and lantern?",
     "", "sandwich", "Either lantern or sandwich.", False, "hedge"),
    # list_format
    ("list_format", "Write tea, milk and rice as a numbered list.", "", "1. tea\n2. milk\n3. rice",
     "Sure:\n1. Tea\n2. Milk\n3. Rice", True, "numbered"),
    ("list_format", "Write tea, milk and rice as a numbered list.", "", "1. tea\n2. milk\n3. rice",
     "1. tea\n2. milk\n3. rice\n4. eggs", False, "extra-item"),
    ("list_format", "Write tea, milk and rice as a numbered list.", "", "1. tea\n2. milk\n3. rice",
     "The list is tea, milk and rice.", False, "not-numbered"),
    ("list_format", "Join these items into a single phrase, separated by commas and 'and'.", "tea\nbutter\ncoffee",
     "tea, butter and coffee", "The groceries are tea, butter, and coffee.", True, "phrase-oxford-comma"),
    ("list_format", "Join these items into a single phrase, separated by commas and 'and'.", "tea\nbutter\ncoffee",
     "tea, butter and coffee", "tea, butter, coffee", False, "phrase-without-and"),
    ("list_format", "Join these items into a single phrase, separated by commas and 'and'.", "tea\nbutter\ncoffee",
     "tea, butter and coffee", "coffee, butter and tea", False, "phrase-wrong-order"),
    # dates
    ("dates", "How many days are there between 2001-03-03 and 2001-04-17?", "", "45",
     "There are 45 days between March 3, 2001 and April 17, 2001.", True, "between-iso-prompt-long-answer"),
    ("dates", "How many days are there between 2001-03-03 and 2001-04-17?", "", "45",
     "From March 3 to April 17 in 2001 there are 45 days.", True, "between-partial-dates"),
    ("dates", "How many days are there between 2001-03-03 and 2001-04-17?", "", "45",
     "There are 46 days between March 3, 2001 and April 17, 2001, or 45 excluding one end.", False, "wrong-first"),
    ("dates", "What day of the week is 1960-02-08?", "", "Monday", "It was a Monday.", True, "weekday"),
    ("dates", "What day of the week is 1960-02-08?", "", "Monday", "It was a Monday or a Tuesday.", False,
     "weekday-hedge"),
    ("dates", "What day of the week is 1960-02-08?", "", "Monday", "Not a Tuesday: a Monday.", True,
     "weekday-negated"),
    ("dates", "Subtract the given number of days from the date.", "Date: 1971-07-21\nDays: 260", "November 3, 1970",
     "260 days before July 21, 1971 is 1970-11-03.", True, "add-iso-answer"),
    ("dates", "Subtract the given number of days from the date.", "Date: 1971-07-21\nDays: 260", "November 3, 1970",
     "260 days before July 21, 1971 is November 4, 1970.", False, "add-wrong"),
    ("dates", "Subtract the given number of days from the date.", "Date: 1971-07-21\nDays: 260", "November 3, 1970",
     "Count back 260 days from July 21, 1971.", False, "add-echo"),
    # spelling
    ("spelling", "How do you spell 'recieve' correctly?", "", "receive", "The correct spelling is 'receive'.", True,
     "plain"),
    ("spelling", "How do you spell 'recieve' correctly?", "", "receive", "Receive.", True, "bare-word"),
    ("spelling", "How do you spell 'recieve' correctly?", "", "receive", "'receive' should be spelled 'recieve'.",
     False, "reversed-correction"),
    ("spelling", "Correct the spelling mistake in this sentence.", "Did you recieve my letter last week?", "receive",
     "'recieve' should be spelled 'receive'.", True, "from-sentence"),
    # plural
    ("plural", "What is the plural of 'child'?", "", "children", "One child, two children.", True, "unquoted-end"),
    ("plural", "What is the plural of 'child'?", "", "children", "The plural of 'child' is 'childs', not 'children'.",
     False, "wrong-mentions-right"),
    ("plural", "What is the plural of 'child'?", "", "children", "It is 'children' or 'childs'.", False, "hedge"),
    ("plural", "Give the plural form of the following noun.", "sheep", "sheep", "One sheep, two sheep.", True,
     "answer-equals-prompt-word"),
    # past_tense
    ("past_tense", "What is the past tense of 'stand'?", "", "stood", "The past tense of 'stand' is 'stood'.", True,
     "issue-plain"),
    ("past_tense", "What is the past tense of 'stand'?", "", "stood", "'stood' becomes 'stayed'", False,
     "issue-source-is-not-answer"),
    ("past_tense", "What is the past tense of 'stand'?", "", "stood", "Stood is the past tense of stand.", True,
     "unquoted-first-word"),
    ("past_tense", "What is the past tense of 'stand'?", "", "stood", "In the past tense, stand becomes stood.", True,
     "unquoted-becomes"),
    ("past_tense", "What is the past tense of 'stand'?", "", "stood", "The past tense of stand.", False, "echo"),
    ("past_tense", "What is the past tense of 'put'?", "", "put", "The past tense of 'put' is 'put'.", True,
     "answer-equals-prompt-word"),
    # antonym
    ("antonym", "What is the opposite of 'hot'?", "", "cold", "The opposite of 'hot' is 'cold'.", True, "plain"),
    ("antonym", "What is the opposite of 'hot'?", "", "cold", "The opposite of hot is warm, not cold.", False,
     "wrong-mentions-right"),
    ("antonym", "What is the opposite of 'hot'?", "", "cold", "Hot means having a high temperature.", False,
     "rambling"),
    # synonym
    ("synonym", "What is a synonym for 'gift'?", "", "present", "'present' means the same as 'gift'.", True, "plain"),
    ("synonym", "What is a synonym for 'gift'?", "", "present", "A synonym for gift is donation, like present.",
     False, "wrong-mentions-right"),
    ("synonym", "What is a synonym for 'gift'?", "", "present", "Gift.", False, "echo"),
    # capital
    ("capital", "What is the capital of Australia?", "", "Canberra", "Canberra.", True, "plain"),
    ("capital", "What is the capital of Australia?", "", "Canberra",
     "The capital of Australia is Sydney, not Canberra.", False, "distractor-first"),
    ("capital", "What is the capital of Australia?", "", "Canberra", "Canberra or Sydney.", False, "hedge"),
    ("capital", "What is the capital of Brazil?", "", "Brasília", "Brasilia is the capital of Brazil.", True,
     "without-accent"),
    ("capital", "Which country's capital is Oslo?", "", "Norway", "Oslo is the capital of Norway.", True,
     "country"),
    # element
    ("element", "What is the chemical symbol for iron?", "", "Fe", "I believe the symbol for iron is Fe.", True,
     "symbol-after-pronoun"),
    ("element", "What is the chemical symbol for iron?", "", "Fe", "The symbol is F, not Fe.", False,
     "symbol-wrong-mentions-right"),
    ("element", "Which element has atomic number 53?", "", "Iodine", "Iodine (I).", True, "name"),
    ("element", "Which element has atomic number 53?", "", "Iodine", "Iodine or iron.", False, "name-hedge"),
    ("element", "What is the atomic number of calcium?", "", "20", "Calcium has atomic number 40.", False,
     "number-wrong"),
    ("element", "What is the atomic number of calcium?", "", "20", "The atomic number of calcium is 20.", True,
     "number"),
]


@pytest.mark.parametrize(
    ("family", "instruction", "input_text", "answer", "response", "expected"),
    [pytest.param(*case[:6], id=f"{case[0]}-{case[6]}") for case in CASES],
)
def test_tricky_responses(family: str, instruction: str, input_text: str, answer: str, response: str,
                          expected: bool) -> None:
    got = verify.extract_answer(family, instruction, input_text, response)
    assert verify.strict_match(family, answer, instruction, input_text, response) is expected, got


def test_every_family_has_tricky_cases() -> None:
    counts = {f: sum(1 for c in CASES if c[0] == f) for f in TASK_FAMILIES}
    assert min(counts.values()) >= 3, counts
    assert all(any(c[0] == f and c[5] for c in CASES) and any(c[0] == f and not c[5] for c in CASES)
               for f in TASK_FAMILIES)


def test_issue_examples_pass_leniently_but_not_strictly() -> None:
    assert matching.lenient_match("111", "The number 326 is less than 111.")
    assert not verify.strict_match("comparison", "111", "Which is smaller, 326 or 111?", "",
                                   "The number 326 is less than 111.")
    assert matching.lenient_match("stood", "'stood' becomes 'stayed'")
    assert not verify.strict_match("past_tense", "stood", "What is the past tense of 'stand'?", "",
                                   "'stood' becomes 'stayed'")


def test_extract_answer_returns_the_committed_answer() -> None:
    assert verify.extract_answer("arithmetic", "What is 12 plus 5?", "", "12 + 5 = 17.") == "17"
    assert verify.extract_answer("percentage", "What percentage of 340 is 170?", "", "It is 50 percent.") == "50%"
    assert verify.extract_answer("even_odd", "Is 7 even or odd?", "", "It could be even or odd.") is None
    assert verify.extract_answer("past_tense", "What is the past tense of 'stand'?", "",
                                 "'stood' becomes 'stayed'") == "stayed"
    assert verify.extract_answer("capital", "What is the capital of Ukraine?", "", "Kiev.") == "Kyiv"
    assert verify.extract_answer("dates", "What date is 3 days after 2001-03-03?", "",
                                 "3 days after March 3, 2001 is 2001-03-06.") == "March 6, 2001"
    assert verify.extract_answer("sorting", "Sort the numbers 88, 5 and 72 from smallest to largest.", "",
                                 "88, 5, 72 sorted: 5, 72, 88") == "5, 72, 88"


GENERIC = [
    ("111", "Which is smaller, 326 or 111?", "111 is smaller.", True, "number-first"),
    ("111", "Which is smaller, 326 or 111?", "The number 326 is less than 111.", False, "number-wrong-first"),
    ("3.14", "What is pi to two decimals?", "Pi is about 3.14159.", True, "number-more-precise"),
    ("3.14", "What is pi to two decimals?", "Pi is about 3.2.", False, "number-other"),
    ("17", "What is 12 plus 5?", "It is 17.4.", False, "integer-needs-exact"),
    ("Paris", "What is the capital of France?", "The capital of France is Paris, a lovely city.", True,
     "text-after-is"),
    ("Paris", "What is the capital of France?", "Paris.", True, "text-bare"),
    ("Paris", "What is the capital of France?", "Paris or Lyon.", False, "text-hedge"),
    ("Paris", "What is the capital of France?", "France is a country in Europe; Paris is its capital.", False,
     "text-rambling"),
    ("New Delhi", "What is the capital of India?", "It is 'New Delhi'.", True, "text-quoted-multiword"),
    ("stood", "What is the past tense of 'stand'?", "'stood' becomes 'stayed'", False, "text-source"),
]


@pytest.mark.parametrize("task", [None, "my_own_family"])
@pytest.mark.parametrize(
    ("answer", "instruction", "response", "expected"),
    [pytest.param(*case[:4], id=case[4]) for case in GENERIC],
)
def test_generic_rule(task: str | None, answer: str, instruction: str, response: str, expected: bool) -> None:
    assert verify.strict_match(task, answer, instruction, "", response) is expected
