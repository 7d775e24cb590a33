"""The import layering of docs/ARCHITECTURE.md, checked on every module's syntax tree (function bodies included).

Each module belongs to a layer; a layer may import only the layers listed for it. A new upward or sideways import
fails here with its file and line. `DEBTS` lists the edges that are known to break the table today, each with the
issue that removes it; the test also fails when one of them is gone, so the list stays true.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pixelwise"

# layer -> layers it may import (itself always allowed). `api` is the top package (`import pixelwise`: load and
# the core types), which sits at the pipeline's level.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "modules": {"core"},
    "models": {"core", "modules"},
    "models.pipeline": {"core", "modules", "models", "pipeline.parts"},
    "pipeline.parts": {"core"},
    "pipeline": {"core", "pipeline.parts", "api"},
    "api": {"core", "pipeline", "pipeline.parts"},
    "eval": {"core", "data", "pipeline", "pipeline.parts", "api"},
    "train": {"core", "data", "modules", "models"},
    "recipes": {"core", "data", "modules", "models", "pipeline", "pipeline.parts", "api", "eval", "train"},
    "serve": {"core", "pipeline", "pipeline.parts", "api"},
    "bench": {"core", "data", "modules", "models", "models.pipeline", "pipeline", "pipeline.parts", "api", "eval",
              "train", "recipes"},
    "cli": {"core", "data", "modules", "models", "models.pipeline", "pipeline", "pipeline.parts", "api", "eval",
            "train", "recipes", "serve", "bench"},
}

# Known breaks of the table: (importing file relative to pixelwise/, imported module) -> the issue that removes it.
DEBTS: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    top = parts[1]
    if top == "pipeline":
        return "pipeline.parts" if len(parts) > 2 and parts[2] in ("base", "media") else "pipeline"
    if top == "models":
        return "models.pipeline" if len(parts) > 3 and parts[3].startswith("pipeline_") else "models"
    if top in ("__main__", "__init__"):
        return "cli"
    return top


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path):
    """(imported module, line) for every absolute pixelwise import in the file, function bodies included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "pixelwise" or alias.name.startswith("pixelwise."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "pixelwise" or node.module.startswith("pixelwise."):
                yield node.module, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: relative import; pixelwise imports are absolute")


def family_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "models" else None


def edges():
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        for dst, line in imports(path):
            yield path, line, src, dst


def test_imports_follow_the_layers():
    bad, used_debts = [], set()
    for path, line, src, dst in edges():
        a, b = layer_of(src), layer_of(dst)
        rel = str(path.relative_to(PACKAGE))
        fam_a, fam_b = family_of(src), family_of(dst)
        if fam_a and fam_b:  # inside models/: a family is one unit (its __init__ exports its pipeline too)
            if fam_a != fam_b:
                bad.append(f"pixelwise/{rel}:{line}: {src} imports {dst}: a family never imports another family")
            continue
        if a == b or b in ALLOWED[a] or (a == "models.pipeline" and b == "models"):
            continue
        if (rel, dst) in DEBTS:
            used_debts.add((rel, dst))
            continue
        bad.append(f"pixelwise/{rel}:{line}: {src} ({a}) imports {dst} ({b}); {a} may import "
                   f"{', '.join(sorted(ALLOWED[a])) or 'only itself'}")
    assert not bad, "imports against docs/ARCHITECTURE.md:\n" + "\n".join(bad)
    gone = sorted(set(DEBTS) - used_debts)
    assert not gone, f"these listed debts no longer exist, remove them from DEBTS: {gone}"


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a core module importing the pipeline is reported with its file and line."""
    fake = tmp_path / "pixelwise"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "thing.py").write_text("def f():\n    from pixelwise.pipeline import load\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGE", fake)
    found = [(str(p.relative_to(fake)), line, layer_of(src), layer_of(dst)) for p, line, src, dst in edges()]
    assert found == [("core/thing.py", 2, "core", "pipeline")]


def _module_graph() -> dict[str, set[str]]:
    """Module -> the pixelwise modules it imports (a `from package import name` counts as the package, or as the
    submodule when `name` is one)."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        out = graph.setdefault(src, set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in known:
                subs = {f"{node.module}.{a.name}" for a in node.names} & known
                out.update(subs or {node.module})
        out.discard(src)
    return graph


def test_no_two_way_dependencies():
    """No pair of modules imports each other (hidden or not: lazy and type-only imports count too), except a
    package and its own submodules (`__init__` re-exports)."""
    graph = _module_graph()
    pairs = sorted({tuple(sorted((a, b))) for a, outs in graph.items() for b in outs
                    if a in graph.get(b, set()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert not pairs, f"modules importing each other: {pairs}"


def test_imports_are_at_the_top_unless_a_reason_is_written():
    """pixelwise's own modules are imported at the top of a module; one inside a function body says why beside it
    (a heavy or optional dependency, a fast CLI start), and there are few of them."""
    lazy, silent = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        seen = set()
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and node.lineno not in seen:
                    seen.add(node.lineno)
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if module and (module == "pixelwise" or module.startswith("pixelwise.")):
                        lazy += 1
                        if "#" not in lines[node.lineno - 1]:
                            silent.append(f"pixelwise/{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not silent, "imports inside functions without a reason beside them:\n" + "\n".join(silent)
    assert lazy <= 48, f"{lazy} pixelwise imports inside functions: move them to the top"
