"""The package's layers: each imports only those below it, and the core stays light.

Imports are read from the source (module level and inside functions alike), so a
function-level import that dodges a cycle still counts. One kind is not a
dependency: a lazy re-export, an import inside the top-level ``__init__``'s module
``__getattr__`` (PEP 562), or its typing twin under ``if TYPE_CHECKING:``. The first
runs only when a user asks ``captum_semiring`` for that name, never while a layer
loads, and the second never runs, so neither can form a cycle; the public names may
then come from any layer. ``test_import_stays_light`` checks that such a layer is
not loaded by ``import captum_semiring``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "captum_semiring"

# Lowest first. A unit is a top-level module or subpackage of captum_semiring.
LAYERS = [
    {"_shapes"},
    {"kernels", "_hooks"},
    {"semirings"},
    {"_record"},
    {"rules"},
    {"_engine"},
    {"paths", "branch_flow"},
    {"result", "saved"},
    {"_capture"},
    {"_captum_compat"},
    {"attr"},
    {"__init__"},  # the public names: what the layers above build on
    {"visualization"},
    {"analysis"},
    {"circuits"},
    {"report_svg"},
    {"report"},
    {"runs"},
    {"reproductions"},
    {"cli"},
    {"__main__"},
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _unit(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py") if parts else "__init__"


def _lazy_exports(tree: ast.Module) -> set[ast.AST]:
    """The import nodes inside the module-level ``__getattr__`` of ``tree`` and
    under its module-level ``if TYPE_CHECKING:``."""
    blocks = [
        stmt
        for stmt in tree.body
        if (isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__")
        or (
            isinstance(stmt, ast.If)
            and isinstance(stmt.test, ast.Name)
            and stmt.test.id == "TYPE_CHECKING"
        )
    ]
    return {
        node
        for block in blocks
        for node in ast.walk(block)
        if isinstance(node, (ast.Import, ast.ImportFrom))
    }


def _imports() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import inside the package,
    lazy re-exports of the top-level ``__init__`` left out (see the module
    docstring)."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).parts
        unit = _unit(rel)
        package = rel[:-1] if rel[-1] != "__init__.py" else rel[:-1]
        tree = ast.parse(path.read_text())
        lazy = _lazy_exports(tree) if rel == ("__init__.py",) else set()
        for node in ast.walk(tree):
            if node in lazy:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - node.level + 1]
                    target = (*base, *(node.module.split(".") if node.module else ()))
                elif node.module and node.module.startswith("captum_semiring"):
                    target = tuple(node.module.split(".")[1:])
                else:
                    continue
                if not target:  # `from . import x` at the top: x is the unit
                    targets = [(alias.name,) for alias in node.names]
                else:
                    targets = [target]
            elif isinstance(node, ast.Import):
                targets = [
                    tuple(a.name.split(".")[1:])
                    for a in node.names
                    if a.name.startswith("captum_semiring")
                ]
            else:
                continue
            for t in targets:
                other = _unit(t)
                if other != unit:
                    found.append((unit, other, f"{'/'.join(rel)}:{node.lineno}"))
    return found


def test_every_unit_has_a_layer():
    units = {_unit(p.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), f"give these a layer: {sorted(units - set(RANK))}"


def test_imports_point_down():
    upward = [
        f"{where}: {unit} imports {other}"
        for unit, other, where in _imports()
        if RANK.get(other, -1) > RANK[unit]
    ]
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_no_concrete_semiring_checks_outside_the_semiring_module():
    concrete = {"SumProduct", "MaxProduct", "Entropy", "LogSum", "PathCount", "TopK"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("semirings.py", "kernels.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("isinstance", "issubclass")
                and len(node.args) == 2
            ):
                names = {
                    n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)
                }
                if names & concrete:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, f"semiring-specific checks outside semirings.py: {found}"


@pytest.mark.parametrize(
    "heavy",
    [
        "matplotlib",
        "networkx",
        "pyarrow",
        "captum_semiring.reproductions",
        "captum_semiring.runs",
    ],
)
def test_import_stays_light(heavy):
    code = (
        "import sys, captum_semiring; "
        f"print(any(m == {heavy!r} or m.startswith({heavy!r} + '.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False", f"import captum_semiring loads {heavy}"


def test_lazy_exports_are_public_and_resolve():
    import captum_semiring

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    lazy = _lazy_exports(tree)
    assert lazy, "captum_semiring.__getattr__ re-exports nothing"
    for name in ("attribute_dataset", "TopGradientPath"):
        assert name in captum_semiring.__all__
        assert callable(getattr(captum_semiring, name))
