"""/docs and /redoc work offline: their scripts and styles come from the service, not from a CDN."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest

Make = Callable[..., Any]

# Any absolute URL (scheme://host or protocol-relative //host) in the page.
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s"'<>)]*""")
ASSET_REF = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


def referenced_assets(html: str) -> list[str]:
    return [a or b for a, b in ASSET_REF.findall(html)]


@pytest.mark.parametrize(("page", "expected"), [
    ("/docs", ("swagger-ui-bundle.js", "swagger-ui.css", "/openapi.json")),
    ("/redoc", ("redoc.standalone.js", "/openapi.json")),
])
def test_docs_pages_reference_no_external_host_and_every_asset_is_served(
        make_byo_bundle: Make, open_client: Make, page: str, expected: tuple[str, ...]) -> None:
    client = open_client(make_byo_bundle(n=20).path)
    response = client.get(page)
    assert response.status_code == 200 and "text/html" in response.headers["content-type"]
    html = response.text
    assert ABSOLUTE_URL.findall(html) == [], ABSOLUTE_URL.findall(html)
    assets = referenced_assets(html)
    for name in expected:
        assert any(name in asset for asset in assets), (name, assets)
    for asset in assets:
        url = urljoin(f"http://testserver{page}", asset)
        assert urlsplit(url).netloc == "testserver", asset
        served = client.get(url)
        assert served.status_code == 200, (asset, served.status_code)
        assert served.content, asset


def test_docs_assets_are_the_real_swagger_ui_and_redoc(make_byo_bundle: Make, open_client: Make) -> None:
    client = open_client(make_byo_bundle(n=20).path)
    scripts = {asset.rsplit("/", 1)[-1]: asset for page in ("/docs", "/redoc")
               for asset in referenced_assets(client.get(page).text)}
    assert "SwaggerUIBundle" in client.get(scripts["swagger-ui-bundle.js"]).text
    assert ".swagger-ui" in client.get(scripts["swagger-ui.css"]).text
    assert "Redoc" in client.get(scripts["redoc.standalone.js"]).text
    spec = client.get("/openapi.json").json()
    assert "/v1/mine" in spec["paths"]
    assert not [path for path in spec["paths"] if path.startswith(("/docs", "/redoc"))]
