"""Salesforce record IDs: 15 -> 18 character normalisation and key-prefix lookup.

Salesforce IDs come in two forms: 15 characters (case-sensitive) and 18 characters
(case-safe: three suffix characters encode which of the first 15 are uppercase).
The API returns 18 and accepts both; the project compares and stores the 18 form.

Decision on 18-character input: the suffix must agree with the first 15 characters.
- When it does, the ID is returned unchanged (suffix uppercased).
- When the first 15 characters carry no case information (all their letters are lower
  case, or all upper case: the ID went through a case-folding system such as a
  spreadsheet or a case-insensitive store), the suffix is authoritative and the
  canonical case is restored from it; a suffix that marks a digit as upper case
  cannot come from a real ID and is rejected.
- Otherwise (mixed case that disagrees with the suffix) the ID is rejected: one of the
  two parts was corrupted and guessing could write to another person's record.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from unsubscribe_sync.api.constants import KEY_PREFIXES

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
# the case of each ID character as a bit ("1": upper case), by str.translate rather than a loop per character
_CASE_BITS = str.maketrans(
    {**{c: "0" for c in string.ascii_lowercase + string.digits}, **{c: "1" for c in string.ascii_uppercase}}
)
# each five characters' case bits, in character order (the first the lowest bit) -> their suffix character
_SUFFIX_CHAR = {format(n, "05b")[::-1]: _ALPHABET[n] for n in range(32)}
_ID_RE = re.compile(r"[0-9A-Za-z]+")
_SUFFIX_RE = re.compile(r"[A-Z0-5]{3}")  # an upper-cased suffix of ID characters that is in the alphabet
_OBJECT_BY_PREFIX = {prefix: name for name, prefix in KEY_PREFIXES.items()}


class InvalidSalesforceId(ValueError):
    """A value that is not a usable Salesforce record ID (the message says why)."""


def case_safe_suffix(id15: str) -> str:
    """The three suffix characters of the 18-character form of a 15-character ID (of the characters 0-9, A-Z,
    a-z): each five characters, upper case as 1, read as binary with the first character lowest."""
    bits = id15.translate(_CASE_BITS)
    return _SUFFIX_CHAR[bits[:5]] + _SUFFIX_CHAR[bits[5:10]] + _SUFFIX_CHAR[bits[10:15]]


def _restore_case(id15: str, suffix: str) -> str | None:
    """Apply the case encoded in ``suffix`` to ``id15``; None when the suffix cannot fit the ID."""
    out = []
    for chunk_index, suffix_char in enumerate(suffix):
        bits = _ALPHABET.index(suffix_char)
        for j in range(5):
            char = id15[chunk_index * 5 + j]
            upper = bool(bits & (1 << j))
            if char.isdigit():
                if upper:
                    return None
                out.append(char)
            else:
                out.append(char.upper() if upper else char.lower())
    return "".join(out)


def normalize_id(value: str) -> str:
    """The 18-character case-safe form of a Salesforce ID; InvalidSalesforceId when it is not one."""
    if not isinstance(value, str):
        raise InvalidSalesforceId(f"Salesforce ID must be a string, not {type(value).__name__}")
    if len(value) not in (15, 18):
        raise InvalidSalesforceId(f"Salesforce ID must have 15 or 18 characters, got {len(value)}: {value!r}")
    if not _ID_RE.fullmatch(value):
        raise InvalidSalesforceId(f"Salesforce ID may hold only the characters 0-9, A-Z, a-z: {value!r}")
    if len(value) == 15:
        return value + case_safe_suffix(value)
    id15, suffix = value[:15], value[15:].upper()
    if not _SUFFIX_RE.fullmatch(suffix):
        raise InvalidSalesforceId(f"Salesforce ID {value!r} has an invalid case-safe suffix {value[15:]!r}")
    if case_safe_suffix(id15) == suffix:
        return id15 + suffix
    letters = [c for c in id15 if c.isalpha()]
    case_folded = all(c.islower() for c in letters) or all(c.isupper() for c in letters)
    if case_folded:
        restored = _restore_case(id15, suffix)
        if restored is not None:
            return restored + suffix
    raise InvalidSalesforceId(
        f"Salesforce ID {value!r}: the case-safe suffix {value[15:]!r} does not match the first 15 characters "
        f"(expected {case_safe_suffix(id15)!r})"
    )


def object_for_id(id18: str, objects: Sequence[str]) -> str:
    """The configured object (Contact, Lead) an ID belongs to, from its key prefix."""
    prefix = id18[:3]
    name = _OBJECT_BY_PREFIX.get(prefix)
    if name is None or name not in objects:
        known = ", ".join(f"{KEY_PREFIXES[o]} ({o})" for o in objects if o in KEY_PREFIXES)
        what = f"belongs to {name}, which is not a configured object" if name else "is not a known object prefix"
        raise InvalidSalesforceId(
            f"Salesforce ID {id18!r}: key prefix {prefix!r} {what}; configured prefixes: {known or 'none'}"
        )
    return name
