"""Verifiable rewards: numbers in Polish and English writing, final answers, the reward registry."""

from fractions import Fraction

import pytest

from bielik.data.numbers import final_answer, number_readings, parse_reference
from bielik.errors import BielikError
from bielik.train.rewards import REWARDS, RewardSample, get_rewards, reward


@pytest.mark.parametrize(
    "text,value",
    [
        ("1 234,5", Fraction(2469, 2)),  # Polish: space groups, decimal comma
        ("1\u00a0234,5", Fraction(2469, 2)),  # ... with a no-break space
        ("12\u202f345 678", Fraction(12345678)),  # ... narrow no-break spaces, two groups
        ("1,234.5", Fraction(2469, 2)),  # English: comma groups, decimal point
        ("1.234,5", Fraction(2469, 2)),  # dot groups, decimal comma
        ("1234.5", Fraction(2469, 2)),
        ("1234,5", Fraction(2469, 2)),
        ("0,25", Fraction(1, 4)),
        ("0.250", Fraction(1, 4)),  # a leading 0 is never a thousands group
        ("12,345,678", Fraction(12345678)),
        ("-7", Fraction(-7)),
        ("\u22127,5", Fraction(-15, 2)),  # the minus sign
        ("3/4", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("1 1/2", Fraction(3, 2)),
    ],
)
def test_number_formats(text, value):
    assert number_readings(text) == {value}


def test_ambiguous_group_has_both_readings():
    assert number_readings("1,234") == {Fraction(1234), Fraction(617, 500)}
    assert number_readings("1.234") == {Fraction(1234), Fraction(617, 500)}
    assert parse_reference("1,234") is None  # a reference must be unambiguous


@pytest.mark.parametrize("text", ["", "abc", "12 apples", "1/0", "1,2,3", "--5", "1..2"])
def test_malformed_numbers_have_no_reading(text):
    assert number_readings(text) == set()


@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("23 + 58 = 81. Odpowiedź: 81", "81", 1.0),
        ("Razem 1 200 zł i 34 zł, czyli 1 234 zł. Odpowiedź: 1 234", "1234", 1.0),
        ("So she pays $1,234.50 in total. The answer is 1,234.50.", "1234.5", 1.0),
        ("Wynik: 0,5 litra", "0.5", 1.0),
        ("The answer is 3/4.", "0.75", 1.0),
        ("\\boxed{\\frac{3}{4}}", "3/4", 1.0),
        ("#### 72", "72", 1.0),
        ("The answer is 1,234.", "1234", 1.0),  # ambiguous: either reading may match
        ("Odpowiedź: 1,234", "1.234", 1.0),
        ("The answer is 80, not 81.", "81", 0.0),  # the first number after the last marker
        ("The answer is 81. Wait, the answer is 80.", "81", 0.0),
        ("I think 7, then 8, so 81", "81", 1.0),  # no marker: the last number
        ("The answer is unknown.", "81", 0.0),  # a marker without a number: no answer
        ("", "81", 0.0),
    ],
)
def test_accuracy_reward(completion, answer, expected):
    assert REWARDS["accuracy"](RewardSample(completion, True, answer)) == expected


def test_format_reward_needs_marker_number_and_stop():
    fmt = REWARDS["format"]
    assert fmt(RewardSample("2 + 2 = 4. Odpowiedź: 4", True, "4")) == 1.0
    assert fmt(RewardSample("2 + 2 = 4. Odpowiedź: 4", False, "4")) == 0.0  # cut by the length limit
    assert fmt(RewardSample("2 + 2 = 4", True, "4")) == 0.0
    assert fmt(RewardSample("The answer is five", True, "5")) == 0.0


def test_final_answer_fallback():
    assert final_answer("no marker 3 then 7") == {Fraction(7)}
    assert final_answer("no marker 3 then 7", fallback="none") == set()


def test_registry_custom_reward_and_errors():
    @reward("test_short")
    def short(sample):
        return float(len(sample.text) <= 5)

    try:
        assert get_rewards(["accuracy", "test_short"])["test_short"](RewardSample("abc", True, "1")) == 1.0
        with pytest.raises(BielikError, match="already registered"):
            reward("test_short")(lambda s: 0.0)
        with pytest.raises(BielikError, match="unknown reward.*known: accuracy, format"):
            get_rewards(["acuracy"])
    finally:
        REWARDS.pop("test_short")
