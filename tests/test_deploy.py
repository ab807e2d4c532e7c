"""The production compose file, checked without a Docker engine: it parses, every
long-running service says how it is healthy, every image is pinned, and every
HOMEWARD_* variable it sets is a real setting (a misspelt one would be ignored
silently by pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from homeward.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_long_running_service_has_a_healthcheck() -> None:
    services = _compose()["services"]
    completed = {
        name
        for other in services.values()
        for name, dep in (other.get("depends_on") or {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }
    missing = [n for n, s in services.items() if n not in completed and "healthcheck" not in s]
    assert missing == []


def test_every_image_tag_is_pinned() -> None:
    images = [s["image"] for s in _compose()["services"].values() if "image" in s]
    assert images, "the compose file names no image"
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest" and not tag.startswith("latest"), image
        assert any(ch.isdigit() for ch in tag) and "." in tag, f"{image}: pin a minor version"
    base = (ROOT / "Dockerfile").read_text().split("\n", 1)[0]
    assert base.startswith("FROM ") and "latest" not in base and ":" in base


def test_every_homeward_variable_set_is_a_real_setting() -> None:
    compose = _compose()
    envs: list[dict[str, Any]] = [compose.get("x-homeward-env", {})]
    envs += [s.get("environment") or {} for s in compose["services"].values()]
    names = {k for env in envs if isinstance(env, dict) for k in env if k != "<<"}
    known = {f"HOMEWARD_{f.upper()}" for f in Settings.model_fields}
    assert {n for n in names if n.startswith("HOMEWARD_")} - known == set()


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".homeward", ".env"} <= ignored
