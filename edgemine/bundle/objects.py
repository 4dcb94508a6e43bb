"""Images on object storage (s3://, gs://): list a prefix, stat, read bounded bytes, check containment.

The bundle layer's one door to object stores, so the indexer and the service read them alike.
Access goes through pyarrow's filesystems (already a dependency); S3 takes its endpoint, region
and credentials from the standard AWS environment variables. `file://` URIs are local paths and
are turned into plain paths (`local_path`) before anything here sees them.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow.fs as pafs

REMOTE_SCHEMES = ("s3", "gs")
# Bytes read for one image: a 40 MP JPEG is ~10-20 MB; more is refused before it is downloaded
# (the header's Content-Length is checked first), so one request or decode worker holds at most this.
DEFAULT_MAX_OBJECT_BYTES = 64 * 1024 * 1024
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 60.0
# The AWS SDK's own default region (it is needed to sign requests, even for another endpoint).
FALLBACK_REGION = "us-east-1"


class ObjectStoreError(RuntimeError):
    """An object cannot be listed, stat'ed or read (the message says which and why)."""


class ObjectNotFound(ObjectStoreError):
    """The object (or its bucket) does not exist."""


class ObjectAccessDenied(ObjectStoreError):
    """The store refused access to the object with the configured credentials."""


class ObjectTooLarge(ObjectStoreError):
    """The object is larger than the bytes a caller may read."""


class StoreUnreachable(ObjectStoreError):
    """The object store's endpoint cannot be reached (named in the message)."""

    def __init__(self, message: str, endpoint: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


@dataclass(frozen=True)
class ObjectInfo:
    """One object: its URI, size, and the ETag or modification time that identify its content."""

    uri: str
    size: int
    etag: str | None = None
    mtime_ns: int | None = None

    @property
    def fingerprint(self) -> str:
        """Return size + ETag (or size + mtime without an ETag): changes whenever the content does."""
        if self.etag:
            return f"{self.size}:etag:{self.etag}"
        return f"{self.size}:{self.mtime_ns}"


def is_remote(path: str | os.PathLike[str] | None) -> bool:
    """Return whether `path` is an object-store URI (s3://, gs://), not a local path."""
    return isinstance(path, str) and path.split("://", 1)[0].lower() in REMOTE_SCHEMES and "://" in path


def local_path(path: str) -> str:
    """Return a `file://` URI as a plain local path (other text unchanged); raise ValueError if malformed."""
    if not path.lower().startswith("file://"):
        return path
    parts = urlsplit(path)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{path}: file:// URIs name a local file (file:///abs/path), not host {parts.netloc!r}")
    from urllib.parse import unquote

    return unquote(parts.path)


def split_uri(uri: str) -> tuple[str, str, str]:
    """Return (scheme, bucket, key) of `s3://bucket/key`; raise ValueError naming what is wrong."""
    scheme, sep, rest = uri.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in REMOTE_SCHEMES:
        raise ValueError(f"{uri!r} is not an object-store URI (s3://bucket/key or gs://bucket/key)")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket")
    if "\0" in rest:
        raise ValueError(f"{uri!r} holds a NUL byte")
    return scheme, bucket, key


def _segments_clean(key: str) -> bool:
    # "." and ".." segments are legal in S3 keys, but a reader that normalizes paths (or a proxy)
    # may resolve them: they never pass a containment check.
    return all(part not in (".", "..") for part in key.split("/"))


def as_root(uri: str) -> str:
    """Return an image-root URI normalized to end at a '/' boundary: s3://bucket/prefix/."""
    scheme, bucket, key = split_uri(uri)
    if not _segments_clean(key):
        raise ValueError(f"image root {uri!r} holds a '.' or '..' segment")
    key = key.strip("/")
    return f"{scheme}://{bucket}/{key}/" if key else f"{scheme}://{bucket}/"


def uri_inside(uri: str, roots: list[str]) -> str | None:
    """Return `uri` if it names an object strictly under one of the URI `roots`, else None.

    A root `s3://b/cam` contains `s3://b/cam/x.jpg` but not `s3://b/camera/x.jpg` (prefixes end at
    '/'), and keys with '.'/'..' segments or empty names are never inside anything.
    """
    try:
        scheme, bucket, key = split_uri(uri)
    except ValueError:
        return None
    if not key or key.endswith("/") or not _segments_clean(key):
        return None
    normalized = f"{scheme}://{bucket}/{key}"
    for root in roots:
        if not is_remote(root):
            continue
        try:
            top = as_root(root)
        except ValueError:
            continue
        if normalized.startswith(top):
            return normalized
    return None


# The variables that configure object-store access (endpoint, region, credentials). Processes
# started elsewhere (Ray workers on other nodes) get them from the driver: see store_environment.
STORE_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
                   "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_EC2_METADATA_DISABLED", "STORAGE_EMULATOR_HOST")


def store_environment() -> dict[str, str]:
    """Return this process's object-store variables that are set (to hand to remote workers)."""
    return {name: os.environ[name] for name in STORE_VARIABLES if os.environ.get(name)}


def _s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def endpoint_name(scheme: str) -> str:
    """Return the endpoint a scheme's requests go to, as named in errors."""
    if scheme == "gs":
        return os.environ.get("STORAGE_EMULATOR_HOST") or "Google Cloud Storage"
    return _s3_endpoint() or f"AWS S3 ({_s3_region() or 'region from the AWS configuration'})"


def _s3_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def filesystem(scheme: str) -> pafs.FileSystem:
    """Return the pyarrow filesystem for `scheme`, configured from the environment (cached per setting)."""
    if scheme == "gs":
        return _gcs(os.environ.get("STORAGE_EMULATOR_HOST"), os.getpid())
    endpoint = _s3_endpoint()
    if endpoint is not None:
        # An explicit endpoint is not AWS: the SDK must not ask the instance metadata service
        # (169.254.169.254) for a region or credentials.
        os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    # Keyed by pid too: the AWS SDK's client is not fork-safe, and decode workers are forked.
    return _s3(endpoint, _s3_region(), os.getpid())


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None, pid: int) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    override, scheme = None, "https"
    if endpoint is not None:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        override, scheme = parts.netloc + parts.path.rstrip("/"), parts.scheme or "https"
        region = region or FALLBACK_REGION  # explicit: never resolved through metadata
    return pafs.S3FileSystem(region=region, endpoint_override=override, scheme=scheme,
                             connect_timeout=CONNECT_TIMEOUT_S, request_timeout=REQUEST_TIMEOUT_S,
                             retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))


@functools.lru_cache(maxsize=4)
def _gcs(emulator: str | None, pid: int) -> pafs.FileSystem:
    import pyarrow.fs as pafs

    if emulator:
        parts = urlsplit(emulator if "://" in emulator else f"http://{emulator}")
        return pafs.GcsFileSystem(anonymous=True, endpoint_override=parts.netloc, scheme=parts.scheme)
    return pafs.GcsFileSystem()


_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "Could not connect", "Couldn't connect", "resolve host",
                "Connection refused", "timed out", "Timeout")
_DENIED = ("ACCESS_DENIED", "AccessDenied", "Access Denied", "Forbidden", "HTTP status 403")


def _translate(exc: OSError, uri: str, scheme: str, action: str) -> ObjectStoreError:
    """Turn pyarrow's OSError into the domain error that says what went wrong, naming the URI."""
    text = str(exc)
    if any(marker in text for marker in _UNREACHABLE):
        endpoint = endpoint_name(scheme)
        return StoreUnreachable(f"object store unreachable at {endpoint} ({action} {uri}): {text}", endpoint)
    if isinstance(exc, FileNotFoundError) or "NO_SUCH" in text or "NoSuch" in text:
        return ObjectNotFound(f"object not found: {uri}")
    if any(marker in text for marker in _DENIED):
        return ObjectAccessDenied(f"access denied to {uri} (check the AWS credentials): {text}")
    return ObjectStoreError(f"cannot {action} {uri}: {text}")


def _metadata_etag(meta: dict[bytes, bytes] | dict[str, bytes]) -> str | None:
    for key, value in meta.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name.lower() == "etag":
            return value.decode(errors="replace").strip('"') or None
    return None


def _metadata_mtime(meta: dict[bytes, bytes] | dict[str, bytes]) -> int | None:
    for key, value in meta.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name.lower() == "last-modified":
            try:
                stamp = datetime.fromisoformat(value.decode().replace("Z", "+00:00"))
            except ValueError:
                return None
            return int(stamp.replace(tzinfo=stamp.tzinfo or UTC).timestamp() * 1e9)
    return None


@contextlib.contextmanager
def _opened(uri: str, action: str) -> Iterator[Any]:
    """Open an object for reading (one HEAD request), translating the store's errors."""
    scheme, bucket, key = split_uri(uri)
    if not key:
        raise ObjectNotFound(f"object not found: {uri} (no key)")
    try:
        with filesystem(scheme).open_input_file(f"{bucket}/{key}") as fh:
            yield fh
    except OSError as exc:
        raise _translate(exc, uri, scheme, action) from exc


def stat_object(uri: str) -> ObjectInfo:
    """Return an object's size and ETag (one HEAD request); raise ObjectNotFound, StoreUnreachable, ..."""
    with _opened(uri, "stat") as fh:
        meta = fh.metadata()
        return ObjectInfo(uri, fh.size(), _metadata_etag(meta), _metadata_mtime(meta))


def read_object(uri: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
    """Return an object's bytes; raise ObjectTooLarge (before downloading) when it has more than `max_bytes`."""
    with _opened(uri, "read") as fh:
        size = fh.size()
        if size > max_bytes:
            raise ObjectTooLarge(f"{uri} is {size} bytes, over the limit of {max_bytes} bytes read per image")
        return fh.read(size)  # type: ignore[no-any-return]


def list_prefix(uri: str) -> Iterator[ObjectInfo]:
    """Yield every object under the prefix `uri` (recursively), with sizes and modification times.

    Raises StoreUnreachable (naming the endpoint) or ObjectNotFound (no such bucket) before
    yielding anything: a listing is all or nothing.
    """
    import pyarrow.fs as pafs

    top = as_root(uri)
    scheme, bucket, prefix = split_uri(top)
    base = f"{bucket}/{prefix}".rstrip("/")
    try:
        infos = filesystem(scheme).get_file_info(pafs.FileSelector(base, recursive=True))
    except FileNotFoundError as exc:
        raise ObjectNotFound(f"nothing under {top}: no such bucket or prefix") from exc
    except OSError as exc:
        raise _translate(exc, top, scheme, "list") from exc
    for info in sorted(infos, key=lambda i: i.path):
        if info.type == pafs.FileType.File:
            # pyarrow's listing carries no ETag: the fingerprint is size + Last-Modified (which S3
            # sets at every PUT), as size + mtime is for local files.
            yield ObjectInfo(f"{scheme}://{info.path}", int(info.size), None, info.mtime_ns)
