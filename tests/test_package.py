"""The package as an adopter installs it: built as a wheel from this checkout and installed
into a fresh venv, it holds every file the runtime reads (migrations, rules, templates,
static and vendored assets with their licences), and it runs from outside the checkout:
``homeward --help``, the app with its templates, the migrations the migrator would apply.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ("homeward", "edge", "server", "alerts", "device_sim", "stack")

pytestmark = pytest.mark.slow

CHECK = """
import json, sys
from pathlib import Path
import server, stack
from homeward.settings import Settings
from server.api.app import create_app
from server.migrate import migrations_dir
app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none"))
templates = app.state.templates.env.list_templates()
app.state.templates.get_template("base.html")  # parses
print(json.dumps({"server": server.__file__, "stack": stack.__file__,
                  "migrations": sorted(p.name for p in migrations_dir().glob("*.sql")),
                  "templates": sorted(templates)}))
"""


def _tracked_data_files() -> set[str]:
    listed = subprocess.run(["git", "ls-files", *RUNTIME], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    return {p for p in listed if not p.endswith(".py")}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out), str(ROOT)], check=True, cwd=out)
    [built] = out.glob("homeward-*.whl")
    return built


def test_the_wheel_holds_every_file_the_runtime_reads(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _tracked_data_files()
    assert {p for p in expected if p.startswith("server/migrations/")}, "no migrations found"
    assert any("/vendor/" in p and p.endswith("LICENSE") for p in expected)
    assert expected - names == set()


def test_the_installed_wheel_runs_from_outside_the_checkout(
        wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip())
    # third-party dependencies from the test's own environment, as a plain path entry: its
    # .pth files (the checkout's editable install among them) are not processed from there
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "--quiet", str(wheel)], check=True)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    help_text = subprocess.run([str(env_dir / "bin" / "homeward"), "--help"], cwd=tmp_path,
                               env=clean, check=True, capture_output=True, text=True).stdout
    assert "deploy" in help_text and "admin" in help_text
    found = json.loads(subprocess.run([str(python), "-c", CHECK], cwd=tmp_path, env=clean,
                                      check=True, capture_output=True, text=True).stdout)
    for module in ("server", "stack"):
        assert Path(found[module]).is_relative_to(site), found[module]
    assert found["migrations"] == sorted(p.name for p in (ROOT / "server/migrations").glob(
        "*.sql"))
    templates = ROOT / "server/api/templates"
    assert found["templates"] == sorted(p.relative_to(templates).as_posix()
                                        for p in templates.rglob("*.html"))
