"""`/docs` and `/redoc` without a browser: every URL in the pages is this server's own, each
answers with the right content type, and the pages are confined to this origin."""

import re
import tomllib
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient

from tests.conftest import SECRET
from todo_api.app import create_app
from todo_api.config import Settings

PAGES = ["/docs", "/redoc"]
PACKAGE = Path(__file__).resolve().parents[2] / "src" / "todo_api"
PYPROJECT = PACKAGE.parents[1] / "pyproject.toml"
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


class _References(HTMLParser):
    """The URLs a page loads: `src` and `href` attributes, and ReDoc's `spec-url`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in {"src", "href", "spec-url"} and value
        ]


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    # Swagger UI is told where the document is inside its start-up script.
    return parser.urls + re.findall(r"\burl: '([^']*)'", html)


def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'todo.db'}",
        better_auth_secret=SECRET,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[AsyncClient]:
    # The pages never touch the database, so the app is not started.
    transport = ASGITransport(app=create_app(settings(tmp_path)))
    async with AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize("page", PAGES)
async def test_page_loads_everything_from_this_server(client: AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert re.findall(r"(?i)(?:https?:)?//[^\s'\"<>]+", response.text) == []
    urls = references(response.text)
    assert urls, response.text
    for url in urls:
        assert url.startswith("/"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES[Path(url).suffix]
        assert asset.headers["content-type"].split(";")[0] == expected, url
        assert asset.content, url
        if url != "/openapi.json":
            # Versioned with the API: cacheable, unlike the pages and every API answer.
            assert asset.headers["cache-control"] == "public, max-age=86400", url
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("page", PAGES)
async def test_page_is_confined_to_its_origin(client: AsyncClient, page: str) -> None:
    policy = (await client.get(page)).headers["content-security-policy"]
    directives: dict[str, list[str]] = {}
    for directive in policy.split("; "):
        name, *sources = directive.split()
        directives[name] = sources
    assert directives["default-src"] == ["'self'"]
    for name in ["script-src", "style-src", "img-src", "font-src", "worker-src", "connect-src"]:
        assert "'self'" in directives[name], name
        assert set(directives[name]) <= {"'self'", "'unsafe-inline'", "data:", "blob:"}, name


async def test_swagger_ui_keeps_the_token_and_never_calls_the_public_validator(
    client: AsyncClient,
) -> None:
    page = (await client.get("/docs")).text
    assert '"persistAuthorization": true' in page
    assert '"validatorUrl": null' in page


async def test_pages_under_a_path_prefix_load_from_under_it(tmp_path: Path) -> None:
    """Behind a proxy that serves the API at /todo, the pages must ask for /todo/…."""
    transport = ASGITransport(app=create_app(settings(tmp_path)), root_path="/todo")
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        for page in PAGES:
            urls = references((await client.get(f"/todo{page}")).text)
            assert urls
            assert all(url.startswith("/todo/") for url in urls), urls


def test_every_vendored_file_is_installed_with_the_package() -> None:
    """`pip install .` (not only an editable install) must carry the assets and licences."""
    globs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["todo_api"]
    installed = {path for pattern in globs for path in PACKAGE.glob(pattern) if path.is_file()}
    vendored = {path for path in (PACKAGE / "static").rglob("*") if path.is_file()}
    assert vendored - installed == set()
    for folder in ["swagger-ui", "redoc"]:
        assert (PACKAGE / "static" / folder / "LICENSE").is_file()
