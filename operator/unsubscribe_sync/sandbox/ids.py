"""Salesforce record IDs as the sandbox mints and checks them (independent of the client's normaliser).

An ID is 15 case-sensitive characters, or 18 case-safe ones: the 15 plus three characters that encode,
for each 5-character chunk, which characters are upper-case letters.
"""

from __future__ import annotations

import functools
import re

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: minted IDs sort by age
SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_CHARS = re.compile(r"[0-9A-Za-z]+")
# per character: "1" when upper-case A-Z, else "0" (reversed below, so bit j is character j)
_CASE_BITS = str.maketrans({c: ("1" if "A" <= c <= "Z" else "0") for c in BASE62})


def _chunk_suffix(chunk: str) -> str:
    return SUFFIX_ALPHABET[int(chunk.translate(_CASE_BITS)[::-1], 2)]


def case_safe_suffix(id15: str) -> str:
    """The three characters that make a 15-character ID case-safe."""
    return _chunk_suffix(id15[0:5]) + _chunk_suffix(id15[5:10]) + _chunk_suffix(id15[10:15])


def normalize_id(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character ID, or None when it is not a well-formed ID."""
    if len(value) not in (15, 18) or not _ID_CHARS.fullmatch(value):
        return None
    id18 = value[:15] + case_safe_suffix(value[:15])
    if len(value) == 18 and value[15:].upper() != id18[15:]:
        return None
    return id18


def to_base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    if number:
        raise ValueError("number too large for the ID width")
    return "".join(reversed(digits))


class IdMinter:
    """Mints increasing 18-character IDs for one key prefix: prefix + pod + reserved + 9 base-62 digits + suffix.

    The 15-character head is split into chunks [0:5], [5:10], [10:15]; the first chunk never changes, so its
    suffix character is computed once, and the last two chunks come from small lookup tables.
    """

    def __init__(self, key_prefix: str, pod: str = "Rx") -> None:
        head = key_prefix + pod  # 5 characters: chunk 1
        if len(head) != 5:
            raise ValueError("key prefix (3) + pod (2) must be 5 characters")
        self.head = head
        self._head_suffix = _chunk_suffix(head)
        self.next_number = 1

    def mint(self) -> str:
        number = self.next_number
        self.next_number += 1
        body = "0" + to_base62(number, 9)  # chunks 2 and 3
        return self.head + body + self._head_suffix + _chunk_suffix(body[:5]) + _chunk_suffix(body[5:])

    def mint_many(self, count: int) -> list[str]:
        """`count` IDs at once (seeding a million records must take seconds)."""
        start = self.next_number
        self.next_number += count
        head, head_suffix = self.head, self._head_suffix
        # chunk 2 = "0" + 4 high digits (changes slowly); chunk 3 = 3 middle digits + 2 low digits
        two = _two_digit_table()
        out: list[str] = []
        append = out.append
        number = start
        end = start + count
        while number < end:
            upper, low2 = divmod(number, 62**2)
            high4, mid3 = divmod(upper, 62**3)
            chunk2 = "0" + to_base62(high4, 4)
            mid_text = to_base62(mid3, 3)
            prefix = head + chunk2 + mid_text
            prefix_suffix = head_suffix + _chunk_suffix(chunk2)
            mid_bits = _case_bits(mid_text)
            stop = min(end, number + 62**2 - low2)
            for low_text, low_bits in two[low2 : low2 + (stop - number)]:
                append(prefix + low_text + prefix_suffix + SUFFIX_ALPHABET[mid_bits | (low_bits << 3)])
            number = stop
        return out


@functools.cache
def _two_digit_table() -> list[tuple[str, int]]:
    """Every 2-digit base-62 string with its case bits (built once; minting one ID must stay cheap)."""
    return [(to_base62(n, 2), _case_bits(to_base62(n, 2))) for n in range(62**2)]


def _case_bits(text: str) -> int:
    """Bit j set when character j of `text` is an upper-case letter."""
    return int(text.translate(_CASE_BITS)[::-1], 2)
