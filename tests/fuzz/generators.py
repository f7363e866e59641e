"""Input generators for the fuzzers: mutations of valid seeds at the byte, text and JSON
level. Mutating real messages reaches deep code (a random byte string never gets past an
MSH check); the seeded ``random.Random`` makes every finding reproducible by its number.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

#: Bytes that mean something to one of our parsers.
TOKENS: tuple[bytes, ...] = (
    b"|",
    b"^",
    b"~",
    b"\\",
    b"&",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x0b",
    b"\x1c",
    b"\x1c\r",
    b"\x1d",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\xc3\x28",
    b"MSH|^~\\&|",
    b"\\X0D\\",
    b"\\F\\",
    b"\\E\\",
    b"\\Xzz\\",
    b"\\",
    b"%",
    b"{",
    b"}",
    b"[",
    b"]",
    b'"',
    b"'",
    b"-1",
    b"0",
    b"99999999999999999999",
    b"1e309",
    b"NaN",
    b"null",
    b"true",
    b"2026-13-45T25:61:00Z",
    b"20261345256100",
    b"19000101",
    b"+9999",
    b"=<",
    b"=%",
    b"&>",
    b"]d1",
    b"]C0",
    b"]Q3",
    b"<GS>",
    b"\xe2\x80\x8b",
    b"\xf0\x9f\x92\x89",
    b"A" * 300,
    b"9" * 40,
    b"^" * 50,
    b"|" * 200,
    b"~" * 50,
)
TEXT_TOKENS: tuple[str, ...] = tuple(token.decode("utf-8", "replace") for token in TOKENS)


def mutate_bytes(rng: random.Random, data: bytes, others: Sequence[bytes] = ()) -> bytes:
    """One to four random edits: flip, insert, delete, duplicate, splice, truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(9)
        at = rng.randrange(len(out) + 1)
        if choice == 0 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice == 1:
            out[at:at] = rng.choice(TOKENS)
        elif choice == 2 and out:
            out[at : at + rng.randint(1, 32)] = b""
        elif choice == 3 and out:
            start = rng.randrange(len(out))
            out[at:at] = out[start : start + rng.randint(1, 64)]
        elif choice == 4 and others:
            other = rng.choice(others)
            start = rng.randrange(len(other) + 1)
            out[at:at] = other[start : start + rng.randint(1, 200)]
        elif choice == 5:
            del out[at:]
        elif choice == 6:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif choice == 7 and out:
            # Swap a separator for another: keeps the structure plausible.
            for index in range(at, min(at + 200, len(out))):
                if out[index] in b"|^~&\r":
                    out[index] = rng.choice(b"|^~&\r\n")
                    break
        else:
            out[at:at] = rng.choice(TOKENS) * rng.randint(1, 8)
    return bytes(out)


def mutate_text(rng: random.Random, text: str, alphabet: str = "") -> str:
    out = list(text)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out) + 1)
        choice = rng.randrange(7)
        if choice == 0 and out:
            out[min(at, len(out) - 1)] = rng.choice(alphabet or TEXT_TOKENS[0])
        elif choice == 1:
            out[at:at] = list(rng.choice(TEXT_TOKENS))
        elif choice == 2 and out:
            del out[at : at + rng.randint(1, 8)]
        elif choice == 3:
            del out[at:]
        elif choice == 4 and out:
            out = [c.lower() if rng.random() < 0.5 else c.upper() for c in out]
        elif choice == 5:
            out[at:at] = [chr(rng.choice((rng.randrange(32, 127), rng.randrange(0x80, 0x3000))))]
        else:
            out[at:at] = list(rng.choice(("\r", "\n", "\r\n", "\x1d", "<GS>", "\t", " ")))
    return "".join(out)


def random_scalar(rng: random.Random) -> Any:
    return rng.choice(
        (
            None,
            True,
            False,
            0,
            -1,
            2**63,
            -(2**64),
            1.5,
            1e308,
            "",
            " ",
            "x" * rng.choice((1, 64, 5000)),
            rng.choice(TEXT_TOKENS),
            "2026-02-30",
            "2026-11-02T09:00:00",
            "2026-11-02T09:00:00+25:00",
            "not-a-date",
            "../../etc/passwd",
            "\u0000",
            "\ud800x"[1:],
            [],
            {},
        )
    )


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def mutate_json(rng: random.Random, document: Any) -> Any:
    """Edit one to three nodes: replace, delete, retype, duplicate, add an unknown key."""
    document = json.loads(json.dumps(document))
    for _ in range(rng.randint(1, 3)):
        paths = _paths(document)
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.1:
                return rng.choice((random_scalar(rng), [document], {"resource": document}))
            continue
        parent = _get(document, path[:-1])
        key = path[-1]
        value = parent[key]
        choice = rng.randrange(7)
        if choice == 0:
            parent[key] = random_scalar(rng)
        elif choice == 1:
            del parent[key]
        elif choice == 2 and isinstance(value, str):
            parent[key] = mutate_text(rng, value)
        elif choice == 3:
            parent[key] = [value] if not isinstance(value, list) else value * rng.randint(0, 3)
        elif choice == 4 and isinstance(parent, dict):
            parent[rng.choice(("extra", "id", "resourceType", "type", "", "\u0000"))] = value
        elif choice == 5 and isinstance(value, (int, float)) and not isinstance(value, bool):
            parent[key] = rng.choice((value + 1, -value, str(value), 10**30))
        else:
            parent[key] = {"nested": value} if rng.random() < 0.5 else str(value)
    return document


def json_bytes(rng: random.Random, document: Any) -> bytes:
    """Usually valid JSON; sometimes NaN, broken or non-UTF-8 bytes."""
    raw = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
    if rng.random() < 0.15:
        raw = mutate_bytes(rng, raw)
    return raw
