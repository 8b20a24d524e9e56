"""Email addresses: the one form the ledger stores, and the check that a text is an address at all.

A suppression list must not miss a person because the same mailbox arrived spelled two ways, and must
take every address Salesforce can hold. So:

- ``normalize_email`` gives the one form: trimmed, Unicode NFC, lower-cased with ``str.lower`` (not
  ``casefold``, which turns "ß" into "ss" and would merge two mailboxes), a quoted local part that needs
  no quotes unquoted, the domain in its ASCII form (IDNA A-labels, UTS 46 mapping), an address literal
  in its canonical spelling. It never raises: addresses read from Salesforce go through it too, and a
  domain IDNA cannot encode stays as lower-cased NFC text.
- ``parse_address`` accepts every RFC 5321 address (RFC 6531 for non-ASCII local parts and domains):
  dot-atom or quoted-string local part of at most 64 octets, any domain name (no special-use rules:
  ``a@corp.local`` and ``a@localhost`` are addresses) or an address literal, at most 254 octets in all.
  It refuses only what is not an address, and characters no address may hold (controls, lone
  surrogates, line separators, invisible formatting such as bidi overrides), and returns
  ``normalize_email``'s form.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

import idna

MAX_LOCAL_OCTETS = 64
MAX_ADDRESS_OCTETS = 254  # RFC 5321 path limit (256) less the angle brackets
MAX_LABEL_OCTETS = 63
_MAX_INPUT_CHARACTERS = 4 * MAX_ADDRESS_OCTETS  # longer can never normalise to 254 octets: refused unread

_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_GENERAL_LITERAL = re.compile(r"([a-z0-9-]*[a-z0-9]):([\x21-\x5a\x5e-\x7e]+)")
_JOINERS = frozenset("\u200c\u200d")  # ZWNJ/ZWJ: format characters some scripts need inside words


class InvalidAddress(ValueError):
    """The text is not an email address; the message says why (and never repeats the address)."""


def forbidden_character(text: str) -> str | None:
    """Why ``text`` holds a character no address (or stored text) may hold, or None.

    Controls (C0, DEL, C1: NUL is refused by PostgreSQL, CR/LF split logs and headers), lone UTF-16
    surrogates (no encoding can store them), line and paragraph separators, and invisible format
    characters (bidi overrides and zero-width spaces make one address look like another).
    """
    for char in text:
        category = unicodedata.category(char)
        if category == "Cc":
            kind = "a control character"
        elif category == "Cs":
            kind = "a lone UTF-16 surrogate"
        elif category in ("Zl", "Zp"):
            kind = "a line or paragraph separator"
        elif category == "Cf" and char not in _JOINERS:
            kind = "an invisible formatting character"
        else:
            continue
        return f"contains {kind} (U+{ord(char):04X})"
    return None


def _prepared(address: str) -> str:
    """Trimmed, NFC, lower-cased (NFC again: lower-casing can leave a decomposable sequence)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", address.strip()).lower()).strip()


def _octets(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _split(text: str) -> tuple[str, str]:
    """(local part as written, domain): the local part is a quoted string or runs to the first "@"."""
    if text.startswith('"'):
        position = 1
        while position < len(text):
            char = text[position]
            if char == "\\":
                position += 2
                continue
            if char == '"':
                break
            position += 1
        else:
            raise InvalidAddress("the quoted local part has no closing quote")
        end = position + 1
        if text[end : end + 1] != "@":
            raise InvalidAddress('a quoted local part must be followed by "@"')
        return text[:end], text[end + 1 :]
    local, at, domain = text.partition("@")
    if not at:
        raise InvalidAddress('has no "@" between a local part and a domain')
    if "@" in domain:
        raise InvalidAddress('has more than one "@" outside quotes')
    return local, domain


def _unquoted(quoted: str) -> str | None:
    """The content of a well-formed quoted string (escapes resolved), or None."""
    if len(quoted) < 2 or not (quoted.startswith('"') and quoted.endswith('"')):
        return None
    out: list[str] = []
    body = quoted[1:-1]
    position = 0
    while position < len(body):
        char = body[position]
        if char == "\\":
            if position + 1 == len(body):
                return None
            out.append(body[position + 1])
            position += 2
            continue
        if char == '"':
            return None
        out.append(char)
        position += 1
    return "".join(out)


def _is_dot_atom(text: str) -> bool:
    atoms = text.split(".")
    return all(atoms) and all(_is_atext(c) for atom in atoms for c in atom)


def _is_atext(char: str) -> bool:
    """ASCII atext, or any non-ASCII character but a space (RFC 6531 UTF8-non-ascii)."""
    return char in _ATEXT if char.isascii() else unicodedata.category(char) != "Zs"


def _canonical_local(local: str) -> str:
    """A quoted local part that needs no quotes loses them; one that does keeps only needed escapes."""
    content = _unquoted(local)
    if content is None:
        return local
    if _is_dot_atom(content):
        return content
    return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_literal(literal: str) -> str:
    content = literal[1:-1]
    try:
        if content.startswith("ipv6:"):
            return f"[ipv6:{ipaddress.IPv6Address(content[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(content)}]"
    except ValueError:
        return literal


def _canonical_domain(domain: str) -> str:
    """The domain's ASCII form: A-labels (UTS 46 mapping, non-transitional), or the text when IDNA refuses."""
    if domain.startswith("[") and domain.endswith("]"):
        return _canonical_literal(domain)
    if domain.isascii():
        return domain  # already lower-cased; ASCII labels are not re-checked by IDNA (RFC 5321 allows "ab--c")
    try:
        mapped = idna.uts46_remap(domain, std3_rules=False, transitional=False)
        return ".".join(label if label.isascii() else idna.alabel(label).decode("ascii") for label in mapped.split("."))
    except (UnicodeError, ValueError):
        return domain


def normalize_email(address: str) -> str:
    """The one stored form of an address (see the module docstring); never raises, whatever the text."""
    if address.isascii() and '"' not in address and "[" not in address:
        # NFC leaves ASCII as it is, an unquoted local part and an ASCII domain that is no address literal are
        # kept as written: the form is the trimmed, lower-cased text (what the general path below gives)
        return address.strip().lower()
    return _normalized(address)


def _normalized(address: str) -> str:
    text = _prepared(address)
    try:
        local, domain = _split(text)
    except InvalidAddress:
        local, at, domain = text.rpartition("@")
        if not at:
            return text
    return f"{_canonical_local(local)}@{_canonical_domain(domain)}"


def _check_local(local: str) -> None:
    if not local:
        raise InvalidAddress("the local part (before the @) is empty")
    if local.startswith('"'):
        content = _unquoted(local)
        if not content:
            raise InvalidAddress("the quoted local part is empty or malformed")
        for char in content:
            if char.isascii() and not " " <= char <= "~":
                raise InvalidAddress("the quoted local part holds a character outside printable ASCII and UTF-8")
    elif not _is_dot_atom(local):
        if " " in local or any(unicodedata.category(c) == "Zs" for c in local):
            raise InvalidAddress("contains a space outside quotes")
        if local.startswith(".") or local.endswith(".") or ".." in local:
            raise InvalidAddress("the local part starts or ends with a dot, or has two dots in a row")
        raise InvalidAddress("the local part holds a character an unquoted address may not hold")
    if _octets(local) > MAX_LOCAL_OCTETS:
        raise InvalidAddress(f"the local part is over {MAX_LOCAL_OCTETS} octets")


def _check_literal(literal: str) -> None:
    content = literal[1:-1]
    try:
        if content.startswith("ipv6:"):
            ipaddress.IPv6Address(content[5:])
            if "%" in content:
                raise ValueError("a zone index is not part of an address literal")
            return
        if re.fullmatch(r"[0-9.]+", content):
            ipaddress.IPv4Address(content)
            return
    except ValueError:
        raise InvalidAddress("the address literal is not a valid IPv4 or IPv6 address") from None
    if not _GENERAL_LITERAL.fullmatch(content):
        raise InvalidAddress("the address literal is not an IPv4, IPv6 or tagged literal")


def _check_domain(domain: str) -> None:
    if not domain:
        raise InvalidAddress("the domain (after the @) is empty")
    if domain.startswith("["):
        if not domain.endswith("]"):
            raise InvalidAddress('the address literal has no closing "]"')
        _check_literal(domain)
        return
    for label in domain.split("."):
        if not label:
            raise InvalidAddress("the domain has an empty label (a leading, trailing or doubled dot)")
        if _octets(label) > MAX_LABEL_OCTETS:
            raise InvalidAddress(f"a domain label is over {MAX_LABEL_OCTETS} octets")
        if label.isascii():
            if not _LDH_LABEL.fullmatch(label):
                raise InvalidAddress("a domain label holds a character other than letters, digits and inner hyphens")
        elif (
            label.startswith("-")
            or label.endswith("-")
            or any((c.isascii() and not (c.isalnum() or c == "-")) or unicodedata.category(c) == "Zs" for c in label)
        ):
            raise InvalidAddress("a domain label holds a character a domain name may not hold")


def parse_address(address: str) -> str:
    """``normalize_email(address)`` if the text is an email address; InvalidAddress saying why otherwise."""
    if len(address) > _MAX_INPUT_CHARACTERS:
        raise InvalidAddress(f"is over {MAX_ADDRESS_OCTETS} octets")
    text = _prepared(address)
    problem = forbidden_character(text)
    if problem is not None:
        raise InvalidAddress(problem)
    local, domain = _split(text)
    _check_local(local)
    local = _canonical_local(local)
    if _octets(local) > MAX_LOCAL_OCTETS:
        raise InvalidAddress(f"the local part is over {MAX_LOCAL_OCTETS} octets")
    domain = _canonical_domain(domain)
    _check_domain(domain)
    result = f"{local}@{domain}"
    if _octets(result) > MAX_ADDRESS_OCTETS:
        raise InvalidAddress(f"is over {MAX_ADDRESS_OCTETS} octets")
    return result
