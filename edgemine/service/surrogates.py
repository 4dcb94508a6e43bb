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


def _strings(value: Any) -> Iterator[str]:
    # Iterative, so a deeply nested document cannot exhaust the recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from (k for k in item if isinstance(k, str))
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _locate(value: Any, path: Path) -> Path | None:
    # Locations are built only for containers and for the string found, not for every element.
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return where
            continue
        children = item.items() if isinstance(item, dict) else enumerate(item) \
            if isinstance(item, list | tuple) else ()
        for key, child in children:
            if isinstance(key, str) and has_lone_surrogate(key):
                return (*where, key)
            if isinstance(child, str):
                if has_lone_surrogate(child):
                    return (*where, key)
            elif isinstance(child, dict | list | tuple):
                stack.append(((*where, key), child))
    return None


def find_lone_surrogate(value: Any, path: Path = ()) -> Path | None:
    """Return the location of the first string (dict key or value) holding a lone surrogate, or None."""
    if not any(_LONE.search(text) for text in _strings(value)):
        return None
    return _locate(value, path)


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
