"""Object-store access (edgemine/bundle/objects.py): containment of URIs, and list/stat/read against a real
S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgemine.bundle import objects
from edgemine.bundle.layout import real_path_inside
from tests.support.live_server import free_port
from tests.support.s3 import Bucket, png_bytes


def test_uri_root_contains_only_keys_below_a_slash_boundary() -> None:
    roots = ["s3://cams/front"]
    assert objects.uri_inside("s3://cams/front/a.jpg", roots) == "s3://cams/front/a.jpg"
    assert objects.uri_inside("s3://cams/front/day/1/a.jpg", roots) == "s3://cams/front/day/1/a.jpg"
    assert objects.uri_inside("s3://cams/frontal/a.jpg", roots) is None  # prefix, but not a folder of it
    assert objects.uri_inside("s3://cams/front", roots) is None
    assert objects.uri_inside("s3://other/front/a.jpg", roots) is None
    assert objects.uri_inside("gs://cams/front/a.jpg", roots) is None  # another store, same names


def test_uri_with_dot_segments_is_never_inside() -> None:
    roots = ["s3://cams/front/"]
    assert objects.uri_inside("s3://cams/front/../secret/a.jpg", roots) is None
    assert objects.uri_inside("s3://cams/front/./a.jpg", roots) is None
    assert objects.uri_inside("s3://cams/front/", roots) is None  # a "folder", not an object
    with pytest.raises(ValueError, match=r"'\.\.'"):
        objects.as_root("s3://cams/front/..")


def test_whole_bucket_root_and_uri_roots_do_not_mix_with_local_paths(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    assert objects.uri_inside("s3://cams/x/a.jpg", ["s3://cams"]) == "s3://cams/x/a.jpg"
    # A local folder literally named "s3:" under the working directory is not the URI root.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s3:" / "cams").mkdir(parents=True)
    (tmp_path / "s3:" / "cams" / "a.jpg").write_bytes(b"x")
    assert real_path_inside("s3:/cams/a.jpg", ["s3://cams/"]) is None
    assert real_path_inside("s3://cams/a.jpg", [str(tmp_path)]) is None
    assert real_path_inside("s3://cams/a.jpg", ["s3://cams/"]) == "s3://cams/a.jpg"
    # Local checks are unchanged.
    assert real_path_inside(str(tmp_path / "s3:" / "cams" / "a.jpg"), [str(tmp_path)]) is not None


def test_file_uri_is_a_local_path() -> None:
    assert objects.local_path("file:///data/img%201.png") == "/data/img 1.png"
    assert objects.local_path("relative/x.png") == "relative/x.png"
    with pytest.raises(ValueError, match="host"):
        objects.local_path("file://server/data/x.png")


def test_list_stat_and_read_objects_on_an_s3_server(bucket: Bucket) -> None:
    first = bucket.put("cam/a.png", png_bytes(1))
    bucket.put("cam/sub/b.png", png_bytes(2))
    bucket.put("camera/c.png", png_bytes(3))  # same prefix text, another "folder"
    listed = list(objects.list_prefix(bucket.uri("cam")))
    assert [o.uri for o in listed] == [bucket.uri("cam/a.png"), bucket.uri("cam/sub/b.png")]
    assert [o.size for o in listed] == [len(png_bytes(1)), len(png_bytes(2))]
    assert all(o.mtime_ns for o in listed)
    info = objects.stat_object(first)
    assert info.etag == bucket.etag("cam/a.png") and info.size == len(png_bytes(1))
    assert info.fingerprint == f"{info.size}:etag:{info.etag}"
    assert objects.read_object(first) == png_bytes(1)


def test_reading_is_bounded_and_a_missing_object_is_named(bucket: Bucket) -> None:
    uri = bucket.put("cam/a.png", png_bytes(1))
    with pytest.raises(objects.ObjectTooLarge, match="over the limit of 100 bytes"):
        objects.read_object(uri, max_bytes=100)
    with pytest.raises(objects.ObjectNotFound, match=r"gone\.png"):
        objects.read_object(bucket.uri("cam/gone.png"))
    with pytest.raises(objects.ObjectNotFound, match=r"gone\.png"):
        objects.stat_object(bucket.uri("cam/gone.png"))
    with pytest.raises(objects.ObjectNotFound):
        list(objects.list_prefix("s3://no-such-bucket-here/cam"))


def test_unreachable_endpoint_is_an_error_naming_it(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    with pytest.raises(objects.StoreUnreachable, match=dead) as info:
        list(objects.list_prefix("s3://bucket/cam"))
    assert info.value.endpoint == dead
    with pytest.raises(objects.StoreUnreachable, match=dead):
        objects.read_object("s3://bucket/cam/a.png")


def test_explicit_endpoint_turns_off_instance_metadata(s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED")
    objects.filesystem("s3")
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"


@pytest.mark.parametrize(("message", "kind"), [
    ("AWS Error ACCESS_DENIED during HeadObject operation: Access Denied", objects.ObjectAccessDenied),
    ("AWS Error UNKNOWN (HTTP status 403) during HeadObject operation: No response body.", objects.ObjectAccessDenied),
    ("AWS Error NO_SUCH_BUCKET during ListObjectsV2 operation: The specified bucket does not exist",
     objects.ObjectNotFound),
    ("AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Could not connect to server",
     objects.StoreUnreachable),
    ("AWS Error SLOW_DOWN during GetObject operation: Please reduce your request rate.", objects.ObjectStoreError),
])
def test_store_errors_are_told_apart(message: str, kind: type[Exception], s3_env: str) -> None:
    error = objects._translate(OSError(message), "s3://b/k.png", "s3", "read")
    assert type(error) is kind
    assert "s3://b/k.png" in str(error)
