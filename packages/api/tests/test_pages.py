"""The pages a browser opens (Swagger UI, the playground): served by the API with every file
they load, without a key, under a CSP that allows no inline script or style and no other host;
and the committed editor bundle is the one its pinned sources build. The browser itself is
tested in tests/integration/test_playground_browser.py."""

from __future__ import annotations

import hashlib
import html.parser
import importlib.resources
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from corral_api.app import create_app
from corral_api.container import ApiContainer
from corral_api.settings import ApiSettings
from corral_memory.container import InMemoryStorage
from corral_redis import RedisSettings
from corral_system.clock import SystemClock

EDITOR_SOURCES = Path("packages/http/editor")
PAGES = ("/schema/swagger", "/play")


class Markup(html.parser.HTMLParser):
    """What a page loads (src and href), and whatever it has inline."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []
        self.inline: list[str] = []
        self._tag = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._tag = tag
        found = dict(attrs)
        if tag == "style" or "style" in found or any(name.startswith("on") for name in found):
            self.inline.append(tag)
        if tag in ("script", "link", "img") and (src := found.get("src") or found.get("href")):
            self.loads.append(src)

    def handle_data(self, data: str) -> None:
        if self._tag == "script" and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._tag = ""


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    container = ApiContainer(settings=ApiSettings(auth=True), redis_settings=RedisSettings())
    container.storage.override(InMemoryStorage(clock=SystemClock()))
    async with AsyncTestClient(app=create_app(container), base_url="http://127.0.0.1:8000") as made:
        yield made


def _is_strict(policy: str) -> bool:
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    return (
        directives["default-src"] == "'none'"
        and directives["script-src"] == "'self'"
        and directives["style-src"] == "'self'"
        and "unsafe" not in policy
        and "http" not in policy
    )


@pytest.mark.parametrize("page", PAGES)
async def test_a_page_and_every_file_it_loads_come_from_the_api_without_a_key(client: Any, page: str) -> None:
    answer = await client.get(page)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    markup = Markup()
    markup.feed(answer.text)
    assert markup.inline == [], "an inline script or style would need 'unsafe-inline'"
    assert markup.loads, "the page loads its scripts from files"
    for loaded in markup.loads:
        assert not re.match(r"^([a-z]+:)?//", loaded), f"{loaded} is on another host"
        # Relative to the page, as a browser resolves it (so the API may sit under a prefix).
        path = page.rsplit("/", 1)[0] + "/" + loaded
        got = await client.get(path)
        assert got.status_code == 200, path
        assert _is_strict(got.headers["content-security-policy"]), path
        assert got.headers["x-content-type-options"] == "nosniff"
    assert _is_strict(answer.headers["content-security-policy"])


async def test_the_job_routes_still_need_a_key(client: Any) -> None:
    assert (await client.get("/runtimes")).status_code == 401
    assert (await client.post("/execute", json={"code": "print(1)"})).status_code == 401


@pytest.mark.parametrize("path", ["/play/pages.py", "/play/play.html", "/play/..%2Fpages.py", "/schema/swagger/index.html"])
async def test_only_the_pages_own_files_are_served(client: Any, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_a_file_the_browser_has_is_revalidated_not_sent_again(client: Any) -> None:
    first = await client.get("/play/editor.js")
    again = await client.get("/play/editor.js", headers={"If-None-Match": first.headers["etag"]})
    assert first.headers["cache-control"] == "no-cache"
    assert again.status_code == 304 and again.content == b""


async def test_swagger_is_pointed_at_this_apis_document(client: Any) -> None:
    init = (await client.get("/schema/swagger/swagger-init.js")).text
    assert '"openapi.json"' in init and "validatorUrl: null" in init


def test_the_committed_editor_bundle_is_built_from_the_pinned_sources() -> None:
    lock = json.loads((EDITOR_SOURCES / "package-lock.json").read_text())
    wanted = json.loads((EDITOR_SOURCES / "package.json").read_text())
    locked = {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/") and not entry.get("dev")
    }
    # Every direct dependency is pinned to one version, the one locked.
    for name, version in {**wanted["dependencies"], **wanted["devDependencies"]}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} {version} is not an exact version"
    assert all(locked[name] == version for name, version in wanted["dependencies"].items())
    bundle = (importlib.resources.files("corral_http") / "web" / "editor.js").read_text()
    banner = bundle[: bundle.index("*/")]
    entry = hashlib.sha256((EDITOR_SOURCES / "editor.mjs").read_bytes()).hexdigest()
    assert f"entry editor.mjs sha256 {entry}" in banner, "editor.mjs changed: run packages/http/editor/build.sh"
    built = dict(line.rsplit("@", 1) for line in re.findall(r"^ \* (\S+@\d\S*)$", banner, re.MULTILINE))
    assert built == locked, "package-lock.json changed: run packages/http/editor/build.sh"
