"""Issue 19: studies, evaluation and the benchmarks reach datasets and devices through sepbn.assembly,
never through the training package (its loop, losses or distributed wrapper)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved against its package)."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out |= {module} | {f"{module}.{a.name}" for a in node.names}
    return out


@pytest.mark.parametrize("folder", ["sepbn/study", "sepbn/evaluation", "benchmarks"])
def test_no_import_of_the_training_package(folder):
    files = sorted((ROOT / folder).glob("*.py"))
    assert files
    offenders = {f.name: sorted(m for m in _imports(f) if m == "sepbn.train" or m.startswith("sepbn.train."))
                 for f in files}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_check_sees_relative_imports():
    loop = _imports(ROOT / "sepbn" / "train" / "loop.py")
    assert "sepbn.train.runlock" in loop and "sepbn.config" in loop  # `.runlock`, `..config`
