"""The API documentation page, ``/docs``: Swagger UI without an inline script.

FastAPI's own page starts Swagger UI from an inline ``<script>``, which the app's
Content-Security-Policy refuses; this one starts it from ``static/swagger-init.js``
and widens the policy for this page alone to the CDN that serves Swagger UI
(scripts and styles from it, nothing inline).  ReDoc is not served: it injects
``<style>`` elements, which would need ``'unsafe-inline'``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from server.api.security_headers import CONTENT_SECURITY_POLICY

CDN = "https://cdn.jsdelivr.net"
SWAGGER_JS = f"{CDN}/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
SWAGGER_CSS = f"{CDN}/npm/swagger-ui-dist@5/swagger-ui.css"
DOCS_POLICY = (CONTENT_SECURITY_POLICY
               .replace("script-src 'self'", f"script-src 'self' {CDN}")
               .replace("style-src 'self'", f"style-src 'self' {CDN}"))

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "docs.html", {"title": request.app.title, "openapi_url": request.app.openapi_url,
                               "swagger_js": SWAGGER_JS, "swagger_css": SWAGGER_CSS},
        headers={"Content-Security-Policy": DOCS_POLICY})
