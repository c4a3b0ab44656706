"""Pages and static files: the browser library under ``/web``, the demo chat page at ``/``,
the demo's agent run at ``/agent`` (started by ``POST /demo/agent``), the React example
(``examples/react-chat``, once built) at ``/examples/react-chat/``."""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from gateway import demo_agent
from shared.settings import Settings

log = logging.getLogger("tokenrelay.gateway")

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
"""``web/`` of the checkout (or of the image, which copies it)."""

REACT_EXAMPLE_DIR = WEB_DIR.parent / "examples" / "react-chat" / "dist"
"""The React example's build output (``make example``); not in the image."""


def install(app: FastAPI, settings: Settings) -> None:
    if not WEB_DIR.is_dir():
        log.warning("no %s: the browser library and the demo page are not served", WEB_DIR)
        return
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/admin", include_in_schema=False)
    async def admin_pages() -> HTMLResponse:
        """The admin pages (one file, hash-routed); their data needs the admin token."""
        page = (WEB_DIR / "admin.html").read_bytes()
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    if not settings.demo:
        return
    page = (
        (WEB_DIR / "index.html")
        .read_text()
        .replace("{{DEMO_MODEL}}", html.escape(settings.demo_model, quote=True))
    )

    @app.get("/", include_in_schema=False)
    async def demo_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    agent_page = (WEB_DIR / "agent.html").read_bytes()

    @app.get("/agent", include_in_schema=False)
    async def agent_run_page() -> HTMLResponse:
        return HTMLResponse(agent_page, headers={"Cache-Control": "no-cache"})

    app.include_router(demo_agent.router)

    if (REACT_EXAMPLE_DIR / "index.html").is_file():
        app.mount(
            "/examples/react-chat",
            StaticFiles(directory=REACT_EXAMPLE_DIR, html=True),
            name="react-chat",
        )
    else:
        log.info(
            "the React example is not built: `make example` serves it at /examples/react-chat/"
        )
