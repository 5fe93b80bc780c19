"""The import structure follows the data flow.

Every module of the installed package (``xsnn/``, ``encoders/`` = ``xsnn.encoders``, ``solvers/`` =
``xsnn.solvers``) is parsed (no import is executed) and each import statement, at module level or
inside a function, is resolved to the module it names. The test fails when

- a module imports a module of a higher layer (the layers, lowest first, are listed in ``LAYERS``);
- the imports form a cycle (a strongly connected component of more than one module);
- a private name (one leading underscore) is imported from another module, or a private module is
  imported from outside its own package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"xsnn": ROOT / "xsnn", "xsnn.encoders": ROOT / "encoders", "xsnn.solvers": ROOT / "solvers"}

# Lowest first; a module may import only modules of its own layer or of a lower one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("data", ("xsnn.data",)),
    ("coding", ("xsnn.coding",)),
    ("model", ("xsnn.model", "xsnn.features", "xsnn.question")),
    ("kernel", ("xsnn.kernel",)),
    ("causal", ("xsnn.causal",)),
    ("encoders", ("xsnn.encoders",)),
    ("solvers", ("xsnn.solvers",)),
    ("explain", ("xsnn.api", "xsnn.explanation")),
    ("applications", ("xsnn.compare", "xsnn.plots", "xsnn.batch", "xsnn.cli", "xsnn.train", "xsnn")),
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[0] in ("encoders", "solvers") and package == "xsnn":
                continue  # not inside xsnn/ (the two top-level folders are mapped above)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def extension_modules() -> set[str]:
    """Dotted names of the C extensions (one ``_name.c`` source each, built by setup.py)."""
    found = set()
    for package, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.c")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[0] in ("encoders", "solvers") and package == "xsnn":
                continue
            found.add(".".join([package, *parts]))
    return found


MODULES = module_files()
EXTENSIONS = extension_modules()


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix naming ``module``."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"module {module} belongs to no layer: add it to LAYERS in tests/test_layers.py")
    return best


def _resolve(module: str, level: int, name: str | None, is_package: bool) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def imports_of(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import of ``module`` inside the package.

    ``from package import name`` where ``name`` is a submodule resolves to the submodule."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "xsnn" or alias.name.startswith("xsnn."):
                    out.append((alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node.level, node.module, is_package)
            if not (target == "xsnn" or target.startswith("xsnn.")):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES or sub in EXTENSIONS:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, alias.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    edges = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _, _ in imports_of(module):
            if target in MODULES and target != module:
                edges[module].add(target)
    return edges


def test_every_module_is_known():
    assert "xsnn.model" in MODULES and "xsnn.solvers.oracle" in MODULES and "xsnn.encoders.cnf" in MODULES
    assert "xsnn.kernel._ckernel" in EXTENSIONS
    for module in MODULES:
        layer_of(module)  # raises for a module that no layer names


def test_imports_resolve_to_existing_modules():
    missing = [
        f"{m}:{line} imports {t}"
        for m in MODULES
        for t, _, line in imports_of(m)
        if t not in MODULES and t not in EXTENSIONS
    ]
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    here = layer_of(module)
    bad = []
    for target, _, line in imports_of(module):
        if target in MODULES and target != "xsnn" and layer_of(target) > here:
            bad.append(f"{module}:{line} ({LAYERS[here][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not bad, "\n".join(bad)


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
    return out


def test_no_import_cycles():
    edges = graph()
    edges["xsnn"] = set()  # the package root only names its public functions lazily (import_module)
    cycles = [c for c in _strongly_connected(edges) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_a_module(module):
    bad = []
    for target, name, line in imports_of(module):
        if name is not None and _private(name) and target != module:
            bad.append(f"{module}:{line} imports the private name {name} from {target}")
        parts = target.split(".")
        for depth, part in enumerate(parts):
            owner = ".".join(parts[:depth])  # the package holding the private module
            if _private(part) and not (module == owner or module.startswith(owner + ".")):
                bad.append(f"{module}:{line} imports the private module {target} from outside {owner}")
    assert not bad, "\n".join(bad)


def test_the_checks_can_fail():
    """The checks see a violation when there is one (a lower module importing a higher one, a cycle)."""
    assert layer_of("xsnn.model") < layer_of("xsnn.kernel.c_forward") < layer_of("xsnn.causal")
    assert layer_of("xsnn.encoders.cnf") < layer_of("xsnn.solvers.oracle") < layer_of("xsnn.api")
    cycle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert [c for c in _strongly_connected(cycle) if len(c) > 1] == [["a", "b", "c"]]
    assert _resolve("xsnn.solvers.axp", 1, "oracle", False) == "xsnn.solvers.oracle"
    assert _resolve("xsnn.kernel", 1, "_layout", True) == "xsnn.kernel._layout"


def test_architecture_doc_names_every_module():
    """docs/architecture.md names every module of xsnn/, solvers/ and encoders/ by its path."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = sorted(str(path.relative_to(ROOT)) for path in MODULES.values())
    missing = [p for p in paths if f"`{p}`" not in text]
    assert not missing, "modules not named in docs/architecture.md: " + ", ".join(missing)
    assert len(paths) == len(MODULES) > 50
