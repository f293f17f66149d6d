"""The recipes in docs/integration.md that no CMS runs here are at least valid code for their tools."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

DOC = PROJECT_ROOT / "docs" / "integration.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_drupal_recipe_is_valid_php(tmp_path: Path) -> None:
    php = shutil.which("php")
    if php is None:
        pytest.skip("no php on this machine: install Debian's php-cli (make test does, as root)")
    (recipe,) = blocks("php")
    source = tmp_path / "recipe.php"
    source.write_text("<?php\n" + recipe, encoding="utf-8")
    checked = subprocess.run([php, "-l", str(source)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "No syntax errors" in checked.stdout, checked.stdout + checked.stderr
    # The recipe keeps the plugin's rules: only a 200 fragment is printed, a short timeout, failures cached.
    assert "'timeout' => 2" in recipe and '<section class="rce-related"' in recipe and "=== 200" in recipe


def test_the_export_command_in_the_doc_names_real_options(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import export_related

    with pytest.raises(SystemExit):
        export_related.main(["--help"])
    usage = capsys.readouterr().out
    (command,) = re.findall(r"python scripts/export_related\.py (.*?)\n```", DOC.read_text(encoding="utf-8"), re.S)
    options = re.findall(r"--[a-z-]+", command)
    assert len(options) >= 5 and all(option in usage for option in options), options
