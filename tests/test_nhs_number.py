"""NHS numbers: the Modulus 11 check digit of the NHS Data Dictionary."""

from __future__ import annotations

import pytest

from server.nhs_number import BadNhsNumber, check_digit, is_valid_nhs_number, normalise_nhs_number


@pytest.mark.parametrize(("text", "digits"), [
    ("9434765919", "9434765919"),       # the Data Dictionary's example
    ("943 476 5919", "9434765919"),     # as printed on letters
    ("943-476-5919", "9434765919"),
    ("9434765870", "9434765870"),
    ("4010232137", "4010232137"),
    ("0000000000", "0000000000"),       # weights sum 0: check digit 11 -> 0
])
def test_valid_numbers_are_kept_as_ten_digits(text: str, digits: str) -> None:
    assert normalise_nhs_number(text) == digits


@pytest.mark.parametrize(("text", "reason"), [
    ("9434765918", "should be 9"),       # one digit off
    ("9434765991", "Modulus 11"),        # two digits swapped
    ("1000000010", "check digit would be 10"),
    ("943476591", "not ten digits"),
    ("94347659190", "not ten digits"),
    ("943476591X", "not ten digits"),
    ("\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19", "not ten digits"),  # wide
    ("", "not ten digits"),
])
def test_invalid_numbers_say_why(text: str, reason: str) -> None:
    with pytest.raises(BadNhsNumber, match=reason):
        normalise_nhs_number(text)
    assert not is_valid_nhs_number(text)


def test_exactly_one_last_digit_completes_a_prefix_or_none_does() -> None:
    for prefix in ("943476591", "401023213", "123456789", "100000001", "999999999"):
        valid = [d for d in "0123456789" if is_valid_nhs_number(prefix + d)]
        expected = check_digit(prefix)
        assert valid == ([] if expected is None else [str(expected)]), prefix
