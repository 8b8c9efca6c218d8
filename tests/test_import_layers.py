"""Import hygiene of the core (graph -> cost -> importance / planning ->
pruner -> surgeon): no circle, no import pointing back up, and the Pruner's
private members stay in pruner.py. Read from the source (every import, the
lazy ones inside functions too); nothing is imported, so it takes no time."""

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    "remotetrimmer_tf")


def _modules():
    mods = {}
    for d, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(d, f)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel[:-9] if rel.endswith(".__init__") else rel] = path
    return mods


def _imports(mods):
    """``{module: {module it imports}}`` (a package's own submodules left out)."""
    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name
    edges = {}
    for mod, path in mods.items():
        base = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
        out = set()
        for node in ast.walk(ast.parse(open(path).read())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                full = node.module or ""
                if node.level:
                    b = base
                    for _ in range(node.level - 1):
                        b = b.rpartition(".")[0]
                    full = b + ("." + node.module if node.module else "")
                names = [full + "." + a.name if full + "." + a.name in mods else full
                         for a in node.names]
            for n in names:
                t = resolve(n) if n.startswith("remotetrimmer_tf") else ""
                if t and t != mod and not t.startswith(mod + "."):
                    out.add(t)
        edges[mod] = out
    return edges


CORE = ("remotetrimmer_tf.graph", "remotetrimmer_tf.importance", "remotetrimmer_tf.attention",
        "remotetrimmer_tf.surgeon", "remotetrimmer_tf.cost", "remotetrimmer_tf.metrics",
        "remotetrimmer_tf.planning", "remotetrimmer_tf.pruner", "remotetrimmer_tf.latency",
        "remotetrimmer_tf.latency_budget")


def _reach(edges, start):
    seen, todo = set(), [start]
    while todo:
        for t in edges.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def test_no_import_circle_in_the_core():
    edges = _imports(_modules())
    core = [m for m in edges if m.startswith(CORE)]
    circles = sorted(m for m in core if m in _reach(edges, m))
    assert not circles, f"modules on an import circle: {circles}"


def test_no_upward_import():
    edges = _imports(_modules())

    def targets(prefix):
        return {t for m, ts in edges.items() if m.startswith(prefix) for t in ts}
    # the handler registry knows no handler; handlers know no graph walker
    assert not {t for t in edges["remotetrimmer_tf.graph.handlers.registry"]
                if t.startswith("remotetrimmer_tf.graph.handlers.")} - {
        "remotetrimmer_tf.graph.handlers.weight_axes"}
    assert not {t for t in targets("remotetrimmer_tf.graph.handlers")
                if t.startswith("remotetrimmer_tf.graph.") and
                not t.startswith("remotetrimmer_tf.graph.handlers")}
    # attention comes before importance; importance before the pruner/surgeon
    assert not {t for t in targets("remotetrimmer_tf.attention")
                if t.startswith("remotetrimmer_tf.importance")}
    assert not {t for t in targets("remotetrimmer_tf.importance") if t.startswith(
        ("remotetrimmer_tf.pruner", "remotetrimmer_tf.surgeon", "remotetrimmer_tf.budget"))}
    assert not {t for t in targets("remotetrimmer_tf.surgeon") if t.startswith(
        ("remotetrimmer_tf.importance", "remotetrimmer_tf.pruner"))}
    # the graph reads no importance or pruner; only the exactness check
    # (dead_channels.silence_dropped, a copy made by the surgeon) sits above it
    up = {(m, t) for m, ts in edges.items() if m.startswith("remotetrimmer_tf.graph")
          for t in ts if t.startswith(("remotetrimmer_tf.importance", "remotetrimmer_tf.pruner",
                                       "remotetrimmer_tf.surgeon", "remotetrimmer_tf.metrics",
                                       "remotetrimmer_tf.cost", "remotetrimmer_tf.budget",
                                       "remotetrimmer_tf.planning"))}
    assert up <= {("remotetrimmer_tf.graph.dead_channels", "remotetrimmer_tf.surgeon")}, up


def test_planning_imports_nothing_above_it():
    """Width decisions are functions of data: planning/ reads the lists of
    choices and the shared helpers, never a Pruner, a pipeline, the surgeon,
    the graph walk, a cost model or a runtime (those are inputs it is given)."""
    edges = _imports(_modules())
    allowed = ("remotetrimmer_tf.planning", "remotetrimmer_tf.choices", "remotetrimmer_tf.utils")
    up = {(m, t) for m, ts in edges.items() if m.startswith("remotetrimmer_tf.planning")
          for t in ts if not t.startswith(allowed)}
    assert not up, up
    # and nothing below the pruner reads it back
    assert not {m for m, ts in edges.items() if "remotetrimmer_tf.pruner" in ts
                and m.startswith(("remotetrimmer_tf.planning", "remotetrimmer_tf.cost",
                                  "remotetrimmer_tf.latency", "remotetrimmer_tf.graph",
                                  "remotetrimmer_tf.importance", "remotetrimmer_tf.surgeon"))}


def _pruner_privates():
    """Names of the Pruner's private members: its ``_methods`` and the
    ``self._x`` it assigns."""
    tree = ast.parse(open(os.path.join(ROOT, "pruner.py")).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Pruner")
    names = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)
             and n.name.startswith("_") and not n.name.startswith("__")}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id == "self" \
                and node.attr.startswith("_"):
            names.add(node.attr)
    return names


def _python_files(*folders):
    base = os.path.dirname(ROOT)
    for folder in folders:
        for d, _, files in os.walk(os.path.join(base, folder)):
            for f in files:
                if f.endswith(".py"):
                    yield os.path.join(d, f)


def test_nothing_outside_pruner_touches_its_privates():
    privates = _pruner_privates()
    assert {"_keep", "_is_cap"} <= privates      # the scan sees them
    hits = []
    for path in _python_files("remotetrimmer_tf", "tools", "tests"):
        if os.path.samefile(path, os.path.join(ROOT, "pruner.py")) or \
                os.path.samefile(path, __file__):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Attribute) and node.attr in privates and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                hits.append(f"{os.path.relpath(path, os.path.dirname(ROOT))}:{node.lineno} "
                            f".{node.attr}")
    assert not hits, hits


def test_pruner_reads_no_private_member_of_another_module():
    """pruner.py imports no ``_name`` and reads no ``obj._x`` but its own."""
    tree = ast.parse(open(os.path.join(ROOT, "pruner.py")).read())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            bad += [a.name for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id == "self"):
            bad.append(f"{ast.unparse(node)} (line {node.lineno})")
    assert not bad, bad
