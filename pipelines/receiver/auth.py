"""Who is calling: webhook signatures and Tracking API write keys.

Everything here runs on raw bytes before any parsing, and every comparison of a secret-derived value is constant
time (``hmac.compare_digest``), so an attacker learns nothing from how long a wrong guess takes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Sequence

_HEX40 = re.compile(rb"[0-9a-f]{40}")


def signature_ok(body: bytes, signature: bytes | None, secrets: Sequence[bytes]) -> bool:
    """X-Signature is lowercase hex HMAC-SHA1(secret, body) for any of the connection's valid secrets.

    Several secrets are valid during a rotation's grace period. Every one is tried, so timing does not even tell
    which of them matched.
    """
    if not signature or not _HEX40.fullmatch(signature):
        return False  # truncated, uppercase or not hex: Segment only ever sends 40 lowercase hex digits
    given = bytes.fromhex(signature.decode("ascii"))
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(hmac.digest(secret, body, "sha1"), given)
    return ok


def first_element(body: bytes) -> bytes | None:
    """The exact bytes of a JSON array's first element, as Segment's legacy batch signature covers them."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    start = len(text) - len(text.lstrip())
    if not text.startswith("[", start):
        return None
    start += 1
    while start < len(text) and text[start] in " \t\r\n":
        start += 1
    try:
        _, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return text[start:end].encode("utf-8")


def legacy_batch_signature_ok(body: bytes, signature: bytes | None, secrets: Sequence[bytes]) -> bool:
    """Segment's old batch signature: HMAC over the first element only.

    UNSAFE, accepted only for connections that opt in: the rest of the array is not covered, so anyone holding
    one captured request can append forged events to it and it still verifies.
    """
    first = first_element(body)
    return first is not None and signature_ok(first, signature, secrets)


def basic_auth_user(header: bytes | None) -> str | None:
    """The user part of ``Authorization: Basic base64(user:password)``: Segment's write key (password empty).

    None when there is no Basic header; "" when one is there but unreadable (a wrong key, so 401).
    """
    if not header:
        return None
    scheme, _, value = header.partition(b" ")
    if scheme.lower() != b"basic":
        return ""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""
    return decoded.partition(":")[0]
