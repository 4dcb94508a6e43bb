"""JSON that cannot fail to encode: what error handlers echo back is made safe first."""

from __future__ import annotations

import enum
import math
from typing import Any

from pydantic import BaseModel
from starlette.responses import JSONResponse

from edgemine.service.surrogates import scrub

MAX_TEXT = 1000  # characters of one echoed string
MAX_ITEMS = 100  # entries of one echoed list or object
MAX_DEPTH = 8  # nesting levels of echoed structures
MAX_INT_BITS = 64  # larger integers are described, not printed (str() of a huge int can raise)


def _text(value: str, max_text: int = MAX_TEXT) -> str:
    value = scrub(value)
    if len(value) > max_text:
        return f"{value[:max_text]}... ({len(value)} characters)"
    return value


def safe_json(value: Any, depth: int = 0, *, max_text: int = MAX_TEXT, max_items: int = MAX_ITEMS) -> Any:
    """Return a JSON-encodable copy: lone surrogates replaced, NaN/Infinity and huge ints
    stringified, bytes decoded, long strings/lists/objects and deep nesting truncated."""
    return _safe(value, depth, max_text, max_items)


def _safe(value: Any, depth: int, max_text: int, max_items: int) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return _safe(value.value, depth, max_text, max_items)
    if isinstance(value, int):
        return value if value.bit_length() <= MAX_INT_BITS else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value, max_text)
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value[: max_text * 4]).decode("utf-8", "replace"), max_text)
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, BaseModel):
        return _safe(value.model_dump(mode="python"), depth, max_text, max_items)
    if isinstance(value, dict):
        items = list(value.items())
        out = {_text(str(k), max_text): _safe(v, depth + 1, max_text, max_items) for k, v in items[:max_items]}
        if len(items) > max_items:
            out["..."] = f"{len(items) - max_items} more entries"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        out_list = [_safe(v, depth + 1, max_text, max_items) for v in seq[:max_items]]
        if len(seq) > max_items:
            out_list.append(f"... {len(seq) - max_items} more")
        return out_list
    try:
        return _text(str(value), max_text)
    except Exception:  # an unprintable object must not break an error response
        return f"<unprintable {type(value).__name__}>"


class SafeJSONResponse(JSONResponse):
    """A JSONResponse whose content is passed through `safe_json` (error handlers use it)."""

    def render(self, content: Any) -> bytes:
        """Encode `content` made safe; never raises on user-supplied values."""
        return super().render(safe_json(content))
