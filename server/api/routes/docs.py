"""The API documentation page, ``/docs``: Swagger UI without an inline script.

FastAPI's own page starts Swagger UI from an inline ``<script>``, which the app's
Content-Security-Policy refuses; this one starts it from ``static/swagger-init.js``,
under the same policy as every page.  Swagger UI itself is vendored like the
dashboard's other assets (``scripts/vendor-assets``): nothing loads from a CDN, so
the page works on a closed hospital network.  ReDoc is not served: it injects
``<style>`` elements, which would need ``'unsafe-inline'``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

SWAGGER = "/static/vendor/swagger-ui-dist-5.35.0"
SWAGGER_JS = f"{SWAGGER}/swagger-ui-bundle.js"
SWAGGER_CSS = f"{SWAGGER}/swagger-ui.css"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "docs.html", {"title": request.app.title, "openapi_url": request.app.openapi_url,
                               "swagger_js": SWAGGER_JS, "swagger_css": SWAGGER_CSS})
