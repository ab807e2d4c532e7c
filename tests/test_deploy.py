"""The production compose file, checked without a Docker engine: it parses, every
long-running service says how it is healthy, every image is pinned, and every
HOMEWARD_* variable it sets is a real setting (a misspelt one would be ignored
silently by pydantic-settings)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from alerts.channels import ChannelSettings
from homeward.broker_roles import DEFAULT_USERS
from homeward.settings import Settings
from server.broker_cli import password_variable
from stack.cli import app
from stack.deploy_init import APP_PASSWORD_VARIABLE, BOOTSTRAP_FIELDS

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
    known = {f"HOMEWARD_{f.upper()}" for model in (Settings, ChannelSettings)
             for f in model.model_fields}
    known |= {password_variable(user) for user in DEFAULT_USERS.values()}  # broker init's
    known |= {f"HOMEWARD_BOOTSTRAP_{f.upper()}" for f in BOOTSTRAP_FIELDS}  # deploy init's
    known.add(APP_PASSWORD_VARIABLE)
    assert {n for n in names if n.startswith("HOMEWARD_")} - known == set()


def _commands(service: dict[str, Any]) -> list[list[str]]:
    found = [service["command"]] if "command" in service else []
    test = (service.get("healthcheck") or {}).get("test") or []
    if test[:1] == ["CMD"]:
        found.append(test[1:])
    return [c for c in found if c[:1] == ["homeward"]]


def test_every_homeward_command_the_compose_file_runs_exists_with_its_options() -> None:
    commands = [c for s in _compose()["services"].values() for c in _commands(s)]
    assert len(commands) >= 6  # init, serve, ingest, alerts and two probes
    for command in commands:
        # the command as compose runs it, with --help: typer parses every option given
        # (an unknown one fails) and stops before doing anything
        args = [a.replace("${HOMEWARD_BROKER_HOSTNAME:-localhost}", "localhost")
                for a in command[1:]]
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_the_servers_start_only_after_the_init_step() -> None:
    services = _compose()["services"]
    for name in ("mqtt", "server", "ingest", "alerts"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"}, name
    assert services["init"]["command"][:3] == ["homeward", "deploy", "init"]


def test_the_example_environment_names_every_variable_compose_requires() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(HOMEWARD_[A-Z_]+):\?", text))
    example = {line.split("=", 1)[0] for line in (ROOT / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    assert required - example == set()


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".homeward", ".env"} <= ignored
