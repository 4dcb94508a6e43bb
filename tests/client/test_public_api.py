"""The public surface: everything in edgemine.__all__ is documented, importable lazily, and typed errors are shared."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import edgemine
from edgemine.bundle.errors import UnknownImageIds as LibraryUnknownIds
from edgemine.client import Batch, Client, MiningResult
from edgemine.service import QueryError as LibraryQueryError
from edgemine.service.batches import UnknownBatch as LibraryUnknownBatch


def test_every_public_name_has_a_docstring() -> None:
    for name in edgemine.__all__:
        if name == "__version__":  # a string: documented in the package docstring
            assert isinstance(edgemine.__version__, str)
            continue
        value = getattr(edgemine, name)
        assert (inspect.getdoc(value) or "").strip(), name


@pytest.mark.parametrize("cls", [Client, MiningResult, Batch])
def test_every_public_method_and_property_has_a_docstring(cls: type) -> None:
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        target = member.fget if isinstance(member, property) else member
        assert (inspect.getdoc(target) or "").strip(), f"{cls.__name__}.{name}"


def test_errors_are_the_library_classes_so_one_except_catches_both_backends() -> None:
    assert edgemine.UnknownImageIds is LibraryUnknownIds
    assert edgemine.QueryError is LibraryQueryError
    assert edgemine.UnknownBatch is LibraryUnknownBatch
    for name in ("ServiceUnavailable", "AuthenticationError", "BatchConflict", "ImageUnavailable"):
        assert issubclass(getattr(edgemine, name), edgemine.EdgemineError)


def test_request_and_response_models_are_the_services() -> None:
    from edgemine.service.query import MineQuery, MineResult

    assert edgemine.MineQuery is MineQuery and edgemine.MineResult is MineResult


def test_internal_modules_are_private() -> None:
    import edgemine.client as client

    assert not [n for n in edgemine.__all__ if n.startswith("_") and n != "__version__"]
    assert {"_local", "_http", "_backend"} <= {m.rsplit(".", 1)[-1] for m in _submodules(client)}


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'mine'"):
        edgemine.mine  # noqa: B018


def _submodules(package: object) -> list[str]:
    import pkgutil

    return [m.name for m in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]  # type: ignore[attr-defined]


def test_opening_a_missing_bundle_raises_service_unavailable_naming_it(tmp_path: Path) -> None:
    with pytest.raises(edgemine.ServiceUnavailable, match="does not exist") as missing:
        edgemine.open(tmp_path / "no-bundle")
    assert str(tmp_path / "no-bundle") in str(missing.value)
