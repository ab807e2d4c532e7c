"""NHS numbers: ten digits whose last is a Modulus 11 check digit (NHS Data Dictionary).

Each of the first nine digits is multiplied by a weight from 10 down to 2; the
check digit is ``11 - (sum mod 11)``, with 11 meaning 0, and 10 meaning the
number is not valid (no NHS number is issued with it).  Spaces and hyphens
between the digits (``943 476 5919``, ``943-476-5919``) are allowed on input;
the number is kept as its ten digits.
"""

from __future__ import annotations

WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


class BadNhsNumber(ValueError):
    """Not ten digits, or a check digit that does not match."""


def check_digit(first_nine: str) -> int | None:
    """The check digit of nine digits, or None when there is none (remainder gives 10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def normalise_nhs_number(text: str) -> str:
    """The ten digits of a valid NHS number; :class:`BadNhsNumber` says what is wrong."""
    digits = text.replace(" ", "").replace("-", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise BadNhsNumber(f"NHS number {text!r} is not ten digits")
    expected = check_digit(digits[:9])
    if expected is None:
        raise BadNhsNumber(f"NHS number {text!r} cannot be valid (its check digit would be 10)")
    if expected != int(digits[9]):
        raise BadNhsNumber(f"NHS number {text!r} fails the Modulus 11 check "
                           f"(its check digit should be {expected})")
    return digits


def is_valid_nhs_number(text: str) -> bool:
    try:
        normalise_nhs_number(text)
    except BadNhsNumber:
        return False
    return True
