"""The import layering: ground -> parts -> commands, no upward import, no cycle.

Every import in the packages is read from the source (module level *and* inside functions),
so a new upward import fails here even when it is hidden in a function body. The layers
are those of docs/architecture.md:

- ground (``embodied.core``): core types and contracts; the standard library and numpy only;
- parts: each imports the ground and itself only (a part that needs another is handed it);
- commands (``embodied.commands``): the only place that imports several parts together.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("embodied", "envs", "policies", "bridges")

GROUND = ("embodied.core",)
PARTS: dict[str, tuple[str, ...]] = {
    "simulator": ("envs",),
    "planners": ("policies",),
    "model": ("embodied.model", "embodied.engine", "embodied.data"),
    "perception": ("embodied.perception",),
    "bridge": ("bridges",),
}
COMMANDS = ("embodied.commands",)
# what the ground may import from outside the project
GROUND_THIRD_PARTY = {"numpy"}
# what perception may import from outside the project (it runs on the robot computer);
# pyrealsense2 only inside the RealSense camera module, as an optional extra
PERCEPTION_THIRD_PARTY = {"numpy", "cv2", "pyrealsense2"}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def layer_of(module: str) -> tuple[int, str]:
    """(rank, unit): ground 0, a part 1, commands 2; the package root ``embodied`` is ground."""
    if module == "embodied" or _within(module, GROUND):
        return 0, "ground"
    for name, prefixes in PARTS.items():
        if _within(module, prefixes):
            return 1, name
    if _within(module, COMMANDS):
        return 2, "commands"
    raise AssertionError(f"{module} is in no layer: add it to GROUND, PARTS or COMMANDS (and docs/architecture.md)")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """Every module ``name`` imports (absolute names), with line numbers; function bodies included."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append((mod, node.lineno))
            # ``from pkg import submodule`` imports the submodule too
            found += [(f"{mod}.{a.name}", node.lineno) for a in node.names]
    return found


def project_edges() -> dict[str, set[tuple[str, int]]]:
    mods = modules()
    edges: dict[str, set[tuple[str, int]]] = {}
    for name, path in mods.items():
        edges[name] = {(m, line) for m, line in imports_of(name, path) if m in mods and m != name}
    return edges


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_import_points_up_or_across_parts():
    bad = []
    mods = modules()
    for name, targets in project_edges().items():
        rank, unit = layer_of(name)
        for target, line in sorted(targets):
            t_rank, t_unit = layer_of(target)
            if t_rank > rank or (rank == 1 and t_rank == 1 and t_unit != unit):
                bad.append(f"{mods[name].relative_to(ROOT)}:{line}: {name} ({unit}) imports {target} ({t_unit})")
    assert not bad, "imports that point up a layer or across parts:\n" + "\n".join(bad)


def test_no_import_cycles():
    edges = {n: {t for t, _ in ts} for n, ts in project_edges().items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


LONG_MODULE_LINES = 420  # "about 400": above it a module states why it is one module


def test_a_long_module_says_at_its_top_why_it_is_one_module():
    unexplained = []
    for name, path in modules().items():
        text = path.read_text()
        if text.count("\n") > LONG_MODULE_LINES and "Why one " not in (ast.get_docstring(ast.parse(text)) or ""):
            unexplained.append(f"{name} ({text.count(chr(10))} lines)")
    assert not unexplained, ("split these along their seams, or say in their docstring why each is one module "
                             f"(a paragraph starting 'Why one'): {unexplained}")


def test_the_ground_needs_numpy_alone():
    std = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    mods = modules()
    for name, path in mods.items():
        if layer_of(name)[0] != 0:
            continue
        for mod, line in imports_of(name, path):
            top = mod.split(".")[0]
            if top in std or top in GROUND_THIRD_PARTY or mod in mods or mod.rpartition(".")[0] in mods:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {mod}")
    assert not bad, "the ground imports more than numpy:\n" + "\n".join(bad)


def test_perception_needs_numpy_and_opencv_alone():
    std = set(sys.stdlib_module_names) | {"__future__"}
    bad = []
    mods = modules()
    for name, path in mods.items():
        if layer_of(name) != (1, "perception"):
            continue
        for mod, line in imports_of(name, path):
            top = mod.split(".")[0]
            if top in std or top in PERCEPTION_THIRD_PARTY or mod in mods or mod.rpartition(".")[0] in mods:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line}: {mod}")
    assert not bad, "perception imports more than numpy and opencv:\n" + "\n".join(bad)


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a ground module importing a command is reported."""
    fake = tmp_path / "embodied" / "core" / "sneaky.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from embodied.commands.cli import main\n")
    found = imports_of("embodied.core.sneaky", fake)
    assert ("embodied.commands.cli", 2) in found
    assert layer_of("embodied.commands.cli")[0] > layer_of("embodied.core.sneaky")[0]


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_architecture_doc_names_files_that_exist(doc):
    import re

    text = (ROOT / doc).read_text()
    paths = sorted(set(re.findall(r"`((?:embodied|envs|policies|bridges)/[\w/]+\.py)`", text)))
    assert paths, f"{doc} names no files"
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, f"{doc} names files that do not exist: {missing}"
