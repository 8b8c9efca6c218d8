"""Import hygiene of the core (graph -> importance -> pruner -> surgeon): no
circle, no import pointing back up. Read from the source (every import, the
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
        "remotetrimmer_tf.surgeon", "remotetrimmer_tf.metrics", "remotetrimmer_tf.pruner")


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
                                       "remotetrimmer_tf.budget"))}
    assert up <= {("remotetrimmer_tf.graph.dead_channels", "remotetrimmer_tf.surgeon")}, up
