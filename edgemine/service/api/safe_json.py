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


def _text(value: str) -> str:
    value = scrub(value)
    if len(value) > MAX_TEXT:
        return f"{value[:MAX_TEXT]}... ({len(value)} characters)"
    return value


def safe_json(value: Any, depth: int = 0) -> Any:
    """Return a JSON-encodable copy: lone surrogates replaced, NaN/Infinity and huge ints
    stringified, bytes decoded, long strings/lists/objects and deep nesting truncated."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, enum.Enum):
        return safe_json(value.value, depth)
    if isinstance(value, int):
        return value if value.bit_length() <= MAX_INT_BITS else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes | bytearray):
        return _text(bytes(value[: MAX_TEXT * 4]).decode("utf-8", "replace"))
    if depth >= MAX_DEPTH:
        return "..."
    if isinstance(value, BaseModel):
        return safe_json(value.model_dump(mode="python"), depth)
    if isinstance(value, dict):
        items = list(value.items())
        out = {_text(str(k)): safe_json(v, depth + 1) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["..."] = f"{len(items) - MAX_ITEMS} more entries"
        return out
    if isinstance(value, list | tuple | set | frozenset):
        seq = list(value)
        out_list = [safe_json(v, depth + 1) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append(f"... {len(seq) - MAX_ITEMS} more")
        return out_list
    try:
        return _text(str(value))
    except Exception:  # an unprintable object must not break an error response
        return f"<unprintable {type(value).__name__}>"


class SafeJSONResponse(JSONResponse):
    """A JSONResponse whose content is passed through `safe_json` (error handlers use it)."""

    def render(self, content: Any) -> bytes:
        """Encode `content` made safe; never raises on user-supplied values."""
        return super().render(safe_json(content))
