"""The package layout: ``platform/`` imports as ``lowcode`` and never shadows the standard library."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "metadata": {"runtime", "graphql", "server"},
    "runtime": {"graphql", "server"},
    "graphql": {"server"},
    "server": set(),
}


def test_standard_platform_module_still_works_from_the_repository_root():
    result = subprocess.run(
        [sys.executable, "-c", "import platform, sqlalchemy; print(platform.python_version())"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ".".join(map(str, sys.version_info[:3]))


def test_platform_folder_is_not_a_package():
    assert not (ROOT / "platform" / "__init__.py").exists()


def test_subpackages_import_as_lowcode():
    import lowcode.graphql
    import lowcode.metadata
    import lowcode.runtime
    import lowcode.server

    for module in (lowcode.metadata, lowcode.runtime, lowcode.graphql, lowcode.server):
        assert Path(module.__file__).resolve().parent.parent == ROOT / "platform"


def _imported_layers(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                depth = len(path.relative_to(ROOT / "platform" / package).parts) - 1
                if node.level > depth + 1 and node.module:
                    found.add(node.module.split(".")[0])
            elif node.module and node.module.startswith("lowcode."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("lowcode."))
    return found


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_layers_point_one_way(package):
    wrong = {}
    for path in (ROOT / "platform" / package).rglob("*.py"):
        bad = _imported_layers(path, package) & LAYERS[package]
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert wrong == {}


def test_console_command_is_installed():
    result = subprocess.run(["lowcode", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "object" in result.stdout and "record" in result.stdout
