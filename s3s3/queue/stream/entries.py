"""What a stream entry is made of, as the other stream modules read it: its id, the text of
its fields, and the attempt count it carries.

Pure functions over the values redis-py returns (ids and fields as ``bytes``); no Redis
call, no parsing of the work message itself (that is :mod:`s3s3.queue.messages`).
"""

from __future__ import annotations

from collections.abc import Mapping

from s3s3.queue.messages import as_text as text

__all__ = ["ATTEMPTS_FIELD", "carried_attempts", "id_after", "parse_id", "text"]

#: Attempts already spent on an entry that was handed back or requeued with its history.
ATTEMPTS_FIELD = "attempts"


def parse_id(entry_id: object) -> tuple[int, int]:
    """``b"1700000000000-3"`` as ``(1700000000000, 3)``, which sort as Redis orders ids."""
    ms, _, seq = text(entry_id).partition("-")
    return int(ms), int(seq or 0)


def id_after(entry_id: object) -> str:
    """The smallest id above ``entry_id``: where the next page of an XRANGE or XPENDING
    starts (both include their start)."""
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


def carried_attempts(fields: Mapping) -> int:
    """The attempt count an entry carries (a hand-back writes it); anything odd counts as 0."""
    value = fields.get(ATTEMPTS_FIELD.encode(), b"0")
    digits = text(value).strip()
    # A short decimal only: int() of a 200,000-digit field would be slow on Python 3.10.
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 6 else 0
