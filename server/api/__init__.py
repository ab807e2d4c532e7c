"""The REST API and nurse dashboard (FastAPI): ``create_app()``, ``serve()``."""

from server.api.app import create_app, serve

__all__ = ["create_app", "serve"]
