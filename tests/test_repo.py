"""Repository contracts: README quickstart and .ci/run agree, packaging lists every package,
docs cover every hardware field and every package folder."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wse_sim.hardware.spec import iter_fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MARKERS = ("quickstart-run", "quickstart-test")


def quickstart_block(text: str, marker: str) -> list[str]:
    """Non-empty lines of the first fenced block after ``<!-- marker -->``."""
    after = text.split(f"<!-- {marker} -->", 1)[1]
    match = re.search(r"^\s*```[^\n]*\n(.*?)^\s*```", after, re.S | re.M)
    assert match, f"no code block after {marker}"
    return [ln for ln in match.group(1).splitlines() if ln.strip()]


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def bash(script: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, cwd=cwd, timeout=60
    )


# -- README quickstart and .ci/run --------------------------------------------------------


def test_readme_has_exactly_two_quickstart_commands():
    text = readme()
    commands = []
    for marker in MARKERS:
        assert text.count(f"<!-- {marker} -->") == 1, marker
        block = quickstart_block(text, marker)
        assert len(block) == 1, block
        commands.append(block[0])
    assert re.fullmatch(r"pip install \. && wse-sim \S.*", commands[0]), commands[0]
    assert commands[1] == 'pip install -e ".[dev]" && pytest'


def test_ci_run_executes_what_the_readme_says():
    expected = [quickstart_block(readme(), m)[0] for m in MARKERS]
    proc = subprocess.run(
        [str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == expected
    script = (ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    # It runs the two commands it printed, then both ruff checks, in a fresh virtual env.
    for needle in ('step "$RUN_CMD"', 'step "$TEST_CMD"', "ruff check .", "ruff format --check ."):
        assert needle in script
    assert "-m venv" in script and "mktemp -d" in script


@pytest.mark.parametrize(
    "command, rc, words",
    [
        ("true", 0, ""),
        ("exit 3", 3, "exit code 3"),
        ("exit 5", 1, "no tests"),
        ("false && true", 1, ""),
    ],
)
def test_ci_step_fails_on_any_error_and_on_no_tests(command, rc, words):
    proc = bash(f"set -euo pipefail; source .ci/lib.sh; step {command!r}; echo after")
    assert proc.returncode == rc, proc.stderr
    assert ("after" in proc.stdout) == (rc == 0)
    assert words in proc.stderr


def test_ci_rejects_a_quickstart_block_with_two_commands(tmp_path):
    (tmp_path / "README.md").write_text("<!-- quickstart-run -->\n```bash\nls\npwd\n```\n")
    lib = ROOT / ".ci" / "lib.sh"
    proc = bash(
        f"set -euo pipefail; source {lib}; x=$(quickstart_command quickstart-run); echo ok",
        tmp_path,
    )
    assert proc.returncode == 1 and "ok" not in proc.stdout
    assert "exactly one command" in proc.stderr


# -- README content ---------------------------------------------------------------------------


def test_readme_links_docs_and_names_the_pipeline():
    text = readme()
    for doc in [
        "architecture",
        "metrics",
        "hardware",
        "engine",
        "kernels",
        "cli",
        "results",
        "placement",
        "baselines",
        "sweeps",
        "tutorial",
    ]:
        assert f"(docs/{doc}.md)" in text, doc
    pipeline = "spec → graph → placement → lowering → program → engine → result → report"
    assert pipeline in text
    for stage in pipeline.split(" → "):
        assert (ROOT / "wse_sim" / stage / "__init__.py").exists(), stage


# -- packaging ------------------------------------------------------------------------------


def test_pyproject_lists_every_package_and_maps_kernels():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    assert tool["package-dir"]["wse_sim.kernels"] == "kernels"
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "wse_sim").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    found |= {
        "wse_sim.kernels." + ".".join(p.parent.relative_to(ROOT / "kernels").parts)
        for p in (ROOT / "kernels").rglob("__init__.py")
        if p.parent != ROOT / "kernels"
    }
    found.add("wse_sim.kernels")
    assert found <= set(tool["packages"]), sorted(found - set(tool["packages"]))
    assert project["project"]["scripts"]["wse-sim"] == "wse_sim.cli.main:main"
    assert {"dev", "dask", "pandas"} <= set(project["project"]["optional-dependencies"])


def test_kernels_import_under_the_package_namespace():
    import wse_sim.kernels

    assert Path(wse_sim.kernels.__file__).resolve().parent == ROOT / "kernels"


# -- docs -----------------------------------------------------------------------------------


def _generator():
    spec = importlib.util.spec_from_file_location(
        "gen_hardware_table", ROOT / "docs" / "gen_hardware_table.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hardware_doc_has_every_field_and_is_up_to_date():
    text = (ROOT / "docs" / "hardware.md").read_text(encoding="utf-8")
    for info in iter_fields():
        assert f"`{info.key}`" in text, info.key
    assert _generator().render(text) == text, "run: python docs/gen_hardware_table.py"


def test_architecture_doc_covers_every_package_folder():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    folders = sorted(p.parent.name for p in (ROOT / "wse_sim").glob("*/__init__.py"))
    for folder in [*folders, "kernels"]:
        assert f"**`{folder}/`**" in text, folder
    assert "simpy" in text.lower()


def test_cli_doc_has_hardware_and_presets():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "## hardware" in text and "## presets" in text
