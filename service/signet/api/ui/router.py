"""``GET /ui``: a page that calls the API from the browser (detect, generate, score).

Three static files (``static/``: HTML, one ES module, one stylesheet) ship inside the
package and are read through importlib.resources, so an installed wheel serves them as
the source tree does. Nothing is loaded from elsewhere: the Content-Security-Policy
allows this origin only, and no inline script or style, so text pasted into the page
cannot run as code even if it reached the DOM as markup (app.js only uses textContent).

The page needs no API key: it holds none. Its calls to the API carry the key the user
types in (``X-API-Key``) and are authenticated like any other call. The routes are left
out of the OpenAPI document, which describes the API, not this page.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # A new release serves new files under the same names: browsers revalidate each time.
    "Cache-Control": "no-cache",
}
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

router = APIRouter(include_in_schema=False)


@cache
def asset(name: str) -> bytes:
    return files(__package__).joinpath("static", name).read_bytes()


def _page_response(name: str, media_type: str) -> Response:
    return Response(asset(name), media_type=media_type, headers=SECURITY_HEADERS)


@router.api_route("/ui", methods=["GET", "HEAD"])
def page() -> Response:
    return _page_response("index.html", "text/html; charset=utf-8")


@router.get("/ui/")
def page_with_slash() -> RedirectResponse:
    # Relative, so the redirect also works behind a proxy that serves the API under a prefix
    # (the page itself uses relative URLs for the same reason).
    return RedirectResponse("../ui", status_code=308)


@router.api_route("/ui/static/{name}", methods=["GET", "HEAD"])
def static_asset(name: str) -> Response:
    media_type = ASSETS.get(name)  # a fixed list: no path from the URL ever reaches the file system
    if media_type is None:
        raise HTTPException(404, "no such asset")
    return _page_response(name, media_type)
