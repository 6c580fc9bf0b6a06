"""The web playground: one static page (HTML, CSS and plain JavaScript in `static/`) served at `/`.

The page needs nothing but the server it comes from: no CDN, no build step. It lists the served models
(`GET /v1/models`), streams chat and completions over server-sent events, and calls the task routes
(`/v1/fill-mask`, `/v1/classify`, `/v1/similar`). Needs the server extra (Starlette, which FastAPI is built on).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

# The page loads only its own files and talks only to its own server: a CDN could not sneak in.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")


async def index(request: Request) -> FileResponse:
    """The playground page."""
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Cache-Control": "no-cache"})


def mount(app: Starlette) -> None:
    """Adds the playground to a Starlette or FastAPI `app`: the page at `GET /`, its files under `/playground/`."""
    app.add_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/playground", StaticFiles(directory=STATIC), name="playground")
