"""Per-file checks of a source: only regular files are opened, sidecars are validated, and a
file that cannot be used is a failure of that image alone (with a reason), never of the run."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

UNREADABLE = "unreadable"  # fingerprint of a file that could not be used (never matches a real one)
INT64_RANGE = range(-(2**63), 2**63)


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")]
    return next((name for test, name in kinds if test(mode)), "special file")


def probe_file(path: str | Path) -> tuple[str, str | None]:
    """Return (fingerprint, None) for a regular file, else (UNREADABLE, why); never opens it.

    The fingerprint is size + mtime: it detects changed files without reading millions of them
    on each re-run. Only regular files may be opened later: a named pipe blocks its reader forever.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return UNREADABLE, "broken symlink (its target does not exist)"
        return UNREADABLE, "file not found"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return UNREADABLE, "symlink loop"
        return UNREADABLE, f"cannot read file: {exc.strerror or exc}"
    except ValueError as exc:  # e.g. an embedded NUL byte
        return UNREADABLE, f"invalid path: {exc}"
    if not stat.S_ISREG(st.st_mode):
        return UNREADABLE, f"not a regular file ({_file_kind(st.st_mode)})"
    return f"{st.st_size}:{st.st_mtime_ns}", None


_TRUTH = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False,
          "": False, "none": False}


def as_labeled(value: Any) -> bool:
    """Read a `labeled` flag (true/false, yes/no, 1/0, empty); raises ValueError otherwise."""
    key = str(value).strip().lower() if value is not None else ""
    if key not in _TRUTH:
        raise ValueError(f"'labeled' must be a boolean (true or false), got {value!r}")
    return _TRUTH[key]


def printable(name: str) -> str:
    """Return a file name as text, undecodable bytes (lone surrogates from os.walk) as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Return whether a name from the file system is valid UTF-8 (else it holds surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "a list"


def _fits_int64(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | list | dict):
        return True
    if isinstance(value, int):
        return value in INT64_RANGE
    return all(_fits_int64(v) for v in (value.values() if isinstance(value, dict) else value))


def read_sidecar(sidecar: Path) -> tuple[dict[str, Any], bool | None]:
    """Return a sidecar's metadata and its `labeled` flag (None when it has none).

    Raises ValueError with a reason when the sidecar cannot be used: the image then fails alone.
    """
    _, error = probe_file(sidecar)
    if error is not None:
        raise ValueError(f"sidecar {sidecar.name}: {error}")
    try:
        raw = sidecar.read_bytes()
    except OSError as exc:
        raise ValueError(f"sidecar {sidecar.name} cannot be read: {exc.strerror or exc}") from exc
    return parse_sidecar(sidecar.name, raw)


def parse_sidecar(name: str, raw: bytes) -> tuple[dict[str, Any], bool | None]:
    """Return the metadata and `labeled` flag of a sidecar's bytes (read_sidecar's checks, any source)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise ValueError(f"sidecar {name} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"sidecar {name} is not a JSON object (got {_json_kind(data)})")
    for key, value in data.items():
        try:
            fits = _fits_int64(value)
        except RecursionError:
            fits = False
        if not fits:
            raise ValueError(f"sidecar {name}: {key!r} holds an integer outside the 64-bit "
                             "range (or is nested too deeply)")
    try:
        labeled = as_labeled(data.pop("labeled")) if "labeled" in data else None
    except ValueError as exc:
        raise ValueError(f"sidecar {name}: {exc}") from exc
    return data, labeled
