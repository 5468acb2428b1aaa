"""``GET /docs``: Swagger UI over /openapi.json, every file served by the service itself.

FastAPI's own /docs loads swagger-ui from a public CDN without subresource integrity, on
the page where users paste API keys (the "Authorize" button): whoever controls what the
CDN serves for that URL could read them. Here swagger-ui's JavaScript and CSS come from a
Python package (fastapi-offline, which ships swagger-ui 5's built files and nothing we
run), the page has no inline script (the start-up call is a file of its own), and the
Content-Security-Policy allows script from this origin only. FastAPI's /redoc (a CDN
script and Google Fonts) is off.

The page stays on with tenants: it needs no key to read, and its "Try it out" calls carry
the key the user types, authenticated like any other call.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# Relative URLs, as on /ui: the page lives at <prefix>/docs, the document at <prefix>/openapi.json.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Signet API</title>
  <link rel="icon" href="docs/static/favicon.png">
  <link rel="stylesheet" href="docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/static/swagger-ui-bundle.js"></script>
  <script src="docs/static/start.js"></script>
</body>
</html>
"""
# FastAPI's settings for the same page, less the OAuth2 redirect (no route uses OAuth2), and
# no validator badge (it would call validator.swagger.io).
START = """window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""
# swagger-ui's files in the package, by the name they are served under: a fixed list, so no
# path from a URL reaches the file system.
VENDORED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@cache
def vendored_file(name: str) -> Path:
    return Path(str(files("fastapi_offline").joinpath("static", name)))


@router.api_route("/docs", methods=["GET", "HEAD"])
def docs_page() -> Response:
    return Response(PAGE, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


@router.api_route("/docs/static/start.js", methods=["GET", "HEAD"])
def docs_start() -> Response:
    return Response(START, media_type="text/javascript; charset=utf-8", headers=SECURITY_HEADERS)


@router.api_route("/docs/static/{name}", methods=["GET", "HEAD"])
def docs_asset(name: str) -> Response:
    media_type = VENDORED.get(name)
    if media_type is None:
        raise HTTPException(404, "no such asset")
    # FileResponse: read in the thread pool, with ETag and Last-Modified for revalidation (1.5 MB of script)
    return FileResponse(vendored_file(name), media_type=media_type, headers=SECURITY_HEADERS)
