"""The pages a person opens in a browser, served by the API with every file they load: Swagger
UI at /schema/swagger (its scripts and styles from the swagger-ui-bundle-v2 wheel) and the
playground at /play (corral_http/web/; its editor bundle is built by packages/http/editor/build.sh).

No page loads anything from another host, and none has an inline script or style: each is
answered with a Content-Security-Policy that allows only the API's own files, so a program's
output that slipped into the page as markup still could not run. Both are open paths (no key):
the playground sends the key the person types with each call it makes.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from typing import Annotated

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException
from litestar.params import Parameter
from litestar.status_codes import HTTP_304_NOT_MODIFIED
from swagger_ui_bundle import swagger_ui_path

from corral_http import files

# blob: images are the files a job returned, fetched with the key and shown as <img>; data:
# images are the icons inside Swagger UI's stylesheet.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Litestar adds "; charset=utf-8" to text types.
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_WEB = importlib.resources.files("corral_http") / "web"
_PLAYGROUND = ("play.js", "play.css", "editor.js")
_SWAGGER = ("swagger-ui-bundle.js", "swagger-ui.css")
IfNoneMatch = Annotated[str | None, Parameter(header="If-None-Match", max_length=4096)]


class Page:
    """One file a page loads: its bytes, type and ETag, read once when the app is made."""

    __slots__ = ("content", "etag", "media_type")

    def __init__(self, source: Traversable) -> None:
        self.content = source.read_bytes()
        self.etag = files.etag(hashlib.sha256(self.content).hexdigest())
        self.media_type = _TYPES[source.name[source.name.rindex(".") :]]

    def answer(self, if_none_match: str | None) -> Response[bytes]:
        # Revalidated on every load (no-cache): a new release's files are never mixed with old ones.
        headers = {
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": PAGE_POLICY,
            "Referrer-Policy": "no-referrer",
        }
        if files.matches(if_none_match, self.etag):
            return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(self.content, media_type=self.media_type, headers=headers)


def _read(folder: Traversable, names: tuple[str, ...]) -> dict[str, Page]:
    return {name: Page(folder / name) for name in names}


def _one_of(pages: Mapping[str, Page], name: str) -> Page:
    page = pages.get(name)
    if page is None:
        raise NotFoundException(f"no file named {name!r} here")
    return page


def pages_router() -> Router:
    """The routes of both pages and their files, none in the OpenAPI document."""
    swagger = {**_read(swagger_ui_path, _SWAGGER), **_read(_WEB, ("swagger.html", "swagger-init.js"))}
    playground = _read(_WEB, ("play.html", *_PLAYGROUND))

    @get("/schema/swagger", include_in_schema=False)
    async def swagger_page(if_none_match: IfNoneMatch = None) -> Response[bytes]:
        return swagger["swagger.html"].answer(if_none_match)

    @get("/schema/swagger/{name:str}", include_in_schema=False)
    async def swagger_file(name: str, if_none_match: IfNoneMatch = None) -> Response[bytes]:
        return _one_of(swagger, name).answer(if_none_match)

    @get("/play", include_in_schema=False)
    async def playground_page(if_none_match: IfNoneMatch = None) -> Response[bytes]:
        return playground["play.html"].answer(if_none_match)

    @get("/play/{name:str}", include_in_schema=False)
    async def playground_file(name: str, if_none_match: IfNoneMatch = None) -> Response[bytes]:
        return _one_of({key: playground[key] for key in _PLAYGROUND}, name).answer(if_none_match)

    return Router("/", route_handlers=[swagger_page, swagger_file, playground_page, playground_file])
