"""Consistency checks between the README, CI script and packaging metadata."""

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Quick start[ \t]*\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match is not None, "README.md has no '## Quick start' section"
    return match.group(1)


def _quick_start_commands() -> list[str]:
    section = _quick_start_section()
    blocks = re.findall(r"^```sh[ \t]*\n(.*?)^```[ \t]*$", section, re.M | re.S)
    assert len(blocks) == 1, f"expected one ```sh block, found {len(blocks)}"
    fences = re.findall(r"^```", section, re.M)
    assert len(fences) == 2, "Quick start must contain only the one ```sh block"
    return [line.strip() for line in blocks[0].splitlines() if line.strip()]


def _ci_commands() -> list[str]:
    """The commands .ci/run executes, minus shell setup (shebang, set, cd)."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = []
    for raw in script.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"(set|cd)(\s|$)", line):
            continue
        commands.append(line)
    return commands


def test_readme_quick_start_has_two_commands_matching_ci() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2, commands
    assert _ci_commands() == [commands[1]]


def test_ci_script_is_strict_bash() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert script.startswith("#!") and "bash" in script.splitlines()[0]
    assert re.search(r"^set -euo pipefail$", script, re.M)


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def test_setup_cfg_pins_captum() -> None:
    requires = _lines(_setup_cfg()["options"]["install_requires"])
    captum = [r for r in requires if re.match(r"captum\b", r)]
    assert captum == ["captum>=0.9,<0.10"]


def test_setup_cfg_declares_console_script() -> None:
    scripts = _lines(_setup_cfg()["options.entry_points"]["console_scripts"])
    parsed = {
        name.strip(): target.strip()
        for name, target in (s.split("=", 1) for s in scripts)
    }
    assert parsed.get("captum-semiring") == "captum_semiring.cli:main"


def test_py_typed_marker_exists() -> None:
    assert (ROOT / "captum_semiring" / "py.typed").is_file()
