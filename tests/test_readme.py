"""The README's code runs as written.

Every ```python block executes on its own, in a fresh namespace, as a user who copies
it would run it; an exception fails the test. Shell blocks are not run, but each
``captum-semiring`` command in them must parse with the real argument parser and
each ``make`` target must exist.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[tuple[int, str]]:
    """(first line number, source) of each fenced block in ``language``."""
    text = README.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) == language:
            line = text.count("\n", 0, match.start(2)) + 1
            found.append((line, match.group(2)))
    return found


def run_block(line: int, source: str) -> dict[str, object]:
    """Execute one block; a traceback names ``README.md`` and its line."""
    code = compile("\n" * (line - 1) + source, str(README), "exec")
    namespace: dict[str, object] = {"__name__": "__readme__"}
    exec(code, namespace)
    return namespace


PYTHON = blocks("python")


def test_the_readme_has_its_python_blocks():
    assert len(PYTHON) >= 3
    assert all(language in {"python", "sh", "bibtex"} for language in _languages())


def _languages() -> set[str]:
    return {m.group(1) for m in FENCE.finditer(README.read_text())}


def test_a_raising_block_fails():
    with pytest.raises(ZeroDivisionError) as info:
        run_block(7, "x = 1\ny = x / 0\n")
    assert info.traceback[-1].lineno + 1 == 8  # pytest counts lines from 0


@pytest.mark.parametrize(
    ("line", "source"), PYTHON, ids=[f"line{n}" for n, _ in PYTHON]
)
def test_python_block_runs(line, source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block may write files (res.save("run/"))
    run_block(line, source)


def test_engine_block_shows_a_path_and_the_branches(capsys):
    line, source = next(b for b in PYTHON if "graph.backward" in b[1])
    ns = run_block(line, source)
    printed = capsys.readouterr().out
    res, x, layer0 = ns["res"], ns["x"], ns["layer0"]
    path = res.path(x, (0, 1, 5))  # type: ignore[attr-defined]
    flow = res.branch_flow(layer0)  # type: ignore[attr-defined]
    assert str(path) in printed and repr(flow) in printed
    suffixes = {label.rsplit(".", 1)[-1] for label in flow.labels}
    assert suffixes == {"query", "key", "value", "output"}


def test_merge_block_merges_three_paths():
    line, source = next(b for b in PYTHON if "merge_paths" in b[1])
    ns = run_block(line, source)
    g, paths = ns["g"], ns["paths"]
    assert g.graph["paths"] == len(paths) == 3  # type: ignore[attr-defined]


def _commands() -> list[tuple[list[str], str]]:
    """(words, trailing comment) of each line in the shell blocks."""
    found = []
    for _, source in blocks("sh"):
        for raw in source.splitlines():
            words = shlex.split(raw, comments=True)
            if words:
                found.append((words, raw.partition("#")[2]))
    return found


def test_shell_commands_exist():
    from captum_semiring.cli import build_parser
    from captum_semiring.reproductions import available

    makefile = (README.parent / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    experiments = set(available())
    commands = _commands()
    assert any(words[0] == "captum-semiring" for words, _ in commands)
    for words, comment in commands:
        if words[0] == "make":
            assert set(words[1:]) <= targets, words
        elif words[0] == "torchrun":  # torchrun ... -m captum_semiring ARGS
            start = words.index("captum_semiring")
            assert words[start - 1] == "-m", words
            build_parser().parse_args(words[start + 1 :])
        elif words[0] == "captum-semiring":
            args = build_parser().parse_args(words[1:])  # raises on a bad option
            if words[1] == "reproduce":
                assert args.name in experiments, words
                if comment.strip().startswith("also"):  # "also fig4, appB, ..."
                    named = re.findall(r"\w+", comment.strip()[4:])
                    assert set(named) <= experiments, comment
        else:
            pytest.fail(f"README shell block runs an unknown command: {words}")
