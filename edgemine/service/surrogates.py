"""Lone UTF-16 surrogates: JSON can carry them (`"\\ud800"`), UTF-8 cannot encode them.

Python's JSON parser decodes a lone `\\ud800` escape into a str that SQLite, Starlette's response
encoder and every UTF-8 writer refuse, so such text must be refused at the edge (422) and
repaired wherever it may already have been stored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import AfterValidator

# A valid surrogate pair is decoded into one astral character, so any surrogate left in a str is lone.
_LONE = re.compile("[\ud800-\udfff]")
# The escape of any surrogate (either half) in raw JSON text: a cheap pre-check, before any parsing.
_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_ESCAPE_TEXT = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
REPLACEMENT = "\ufffd"
Path = tuple[str | int, ...]


def has_lone_surrogate(text: str) -> bool:
    """Return whether a decoded string holds a lone surrogate (not encodable as UTF-8)."""
    return _LONE.search(text) is not None


def may_hold_surrogate_escape(raw: bytes | str) -> bool:
    """Cheap pre-check of raw JSON: does it contain a `\\uD800`-`\\uDFFF` escape at all?

    False positives (an escaped backslash before `ud800`, or a valid pair) are settled by parsing;
    a False answer means the decoded JSON cannot hold a lone surrogate.
    """
    if isinstance(raw, bytes):
        return b"\\u" in raw and _ESCAPE_BYTES.search(raw) is not None
    return "\\u" in raw and _ESCAPE_TEXT.search(raw) is not None


def _walk(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    # Iterative, so a deeply nested document cannot exhaust the recursion limit.
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    yield (*where, key), key
                stack.append(((*where, str(key)), child))
        elif isinstance(item, list | tuple):
            stack.extend(((*where, i), child) for i, child in enumerate(item))


def find_lone_surrogate(value: Any, path: Path = ()) -> Path | None:
    """Return the location of the first string (dict key or value) holding a lone surrogate, or None."""
    for where, text in _walk(value, path):
        if has_lone_surrogate(text):
            return where
    return None


def scrub(value: Any) -> Any:
    """Return `value` with every lone surrogate replaced by U+FFFD (repairs text stored by old versions)."""
    if isinstance(value, str):
        return _LONE.sub(REPLACEMENT, value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _refuse_lone_surrogate(value: Any) -> Any:
    where = find_lone_surrogate(value)
    if where is not None:
        at = f" at {'.'.join(map(str, where))}" if where else ""
        raise ValueError(f"text{at} holds a lone UTF-16 surrogate (not valid Unicode)")
    return value


# Defence in depth for model fields that are stored: refused even if the edge check were bypassed.
CleanStr = Annotated[str, AfterValidator(_refuse_lone_surrogate)]
CleanJSON = Annotated[dict[str, Any], AfterValidator(_refuse_lone_surrogate)]
