"""Walk the prune stage from the CLI flag to the surgeon and count the climbs
back up the layer order.

Runs the real CLI in-process (``remotetrimmer_tf.prune.run``, one process
per case of ``CASES``) on a tiny ``--init_model`` with
``--stages=train,attention,fold,prune`` and the flags under study (a ratio,
global scope, target_macs, target_params, target_latency_of on LiteRT), with
a profiler hook
that records every call from one ``remotetrimmer_tf`` function into another
(``caller module:function -> callee module:function``; frames of Keras /
NumPy in between are skipped), from the start of the CLI until the first
call of ``surgeon.prune_channels``.

A *climb back up* is a distinct caller -> callee edge whose callee module
sits higher in the layer order than its caller (``RANKS`` below: the CLI on
top, then the pipeline's run loop, its stages, its config and helpers, the
Pruner, the budget glue, planning / importance, the surgeon and the cost
models (MACs / params, latency tables and timing), the graph, the leaf
subsystems (export, data, training), the shared helpers). Before the
planning layer, ``latency.py`` held the latency search too: its calls into
``pruner.py`` climb from either rank. *Re-entries into pruner.py* are the
distinct edges into ``remotetrimmer_tf.pruner`` from a module below it.

    PYTHONPATH=$PWD python tools/walk_prune.py [--cases=ratio,target_macs] [--verbose]
"""

import argparse
import os
import sys
import tempfile

# higher = further up; the first matching prefix wins
RANKS = (
    ("remotetrimmer_tf.prune", 90),
    ("remotetrimmer_tf.pipeline.run", 80), ("remotetrimmer_tf.pipeline.__init__", 80),
    ("remotetrimmer_tf.pipeline.stages", 70),
    ("remotetrimmer_tf.pipeline", 60),          # config, workdir, inputs, report, ...
    ("remotetrimmer_tf.pruner", 50),
    ("remotetrimmer_tf.budget", 40), ("remotetrimmer_tf.latency_budget", 40),
    ("remotetrimmer_tf.planning", 30), ("remotetrimmer_tf.importance", 30),
    ("remotetrimmer_tf.attention", 30), ("remotetrimmer_tf.models", 30),
    ("remotetrimmer_tf.surgeon", 20), ("remotetrimmer_tf.cost", 20),
    ("remotetrimmer_tf.latency", 20),          # the latency cost model (tables, timing)
    ("remotetrimmer_tf.metrics", 20),
    ("remotetrimmer_tf.graph", 10),
    # leaf subsystems: they import nothing of the core (LiteRT timing, data, fit)
    ("remotetrimmer_tf.training", 5), ("remotetrimmer_tf.data", 5),
    ("remotetrimmer_tf.export", 5),
    ("remotetrimmer_tf", 0),                    # utils, choices, registration
)


def layout_ranks(package_dir):
    """``RANKS`` for the code walked: before the planning layer there was no
    ``latency_budget.py`` and ``latency.py`` held the latency search and its
    glue (the budget level, like ``budget.py``, which then held ``PlanCost``
    and the MAC / parameter search)."""
    if os.path.exists(os.path.join(package_dir, "latency_budget.py")):
        return RANKS
    return (("remotetrimmer_tf.latency", 40),) + RANKS


def rank(module, ranks=RANKS):
    for prefix, r in ranks:
        if module == prefix or module.startswith(prefix + "."):
            return r
    return 0


def _module(frame, root):
    path = frame.f_code.co_filename
    if not path.startswith(root):
        return None
    rel = os.path.relpath(path, os.path.dirname(root))[:-3].replace(os.sep, ".")
    return rel


def walk(argv):
    """Distinct ``(caller, callee)`` edges seen before the surgeon is called."""
    import remotetrimmer_tf
    root = os.path.dirname(os.path.abspath(remotetrimmer_tf.__file__))
    edges, state = {}, {"done": False, "stage": False}

    def hook(frame, event, arg):
        if event != "call" or state["done"]:
            return
        callee = _module(frame, root)
        if callee is None:
            return
        if callee == "remotetrimmer_tf.pipeline.stages" and frame.f_code.co_name == "prune":
            state["stage"] = True
        back = frame.f_back
        while back is not None and _module(back, root) is None:
            back = back.f_back
        if back is None:
            return
        caller = _module(back, root)
        key = (f"{caller}:{back.f_code.co_name}", f"{callee}:{frame.f_code.co_name}")
        edges[key] = (caller, callee, state["stage"])
        if callee == "remotetrimmer_tf.surgeon" and frame.f_code.co_name == "prune_channels":
            state["done"] = True

    from remotetrimmer_tf import prune as cli
    sys.setprofile(hook)
    try:
        cli.run(argv)
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
    return edges, state["done"]


def tiny_model(path):
    import keras
    keras.utils.set_random_seed(0)
    L = keras.layers
    i = keras.Input((64, 64, 3))
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same")(i)))
    y = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, padding="same")(x)))
    x = L.Add()([x, y])
    x = L.ReLU()(L.BatchNormalization()(L.Conv2D(32, 3, strides=2, padding="same")(x)))
    x = L.GlobalAveragePooling2D()(x)
    keras.Model(i, L.Dense(10)(x)).save(path)


CASES = {
    "ratio": ["--config.prune.ratio=0.5"],
    "global": ["--config.prune.ratio=0.5", "--config.prune.scope=global"],
    "target_macs": ["--config.prune.target_macs=2000000"],
    "target_params_global": ["--config.prune.target_params=4000",
                             "--config.prune.scope=global"],
    "target_latency_of": ["--config.prune.target_latency_of={model}"],
}


def _one(name, out):
    """Walk one case; write its edges as JSON lines to ``out``."""
    import json
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "tiny.keras")
        tiny_model(model)
        flags_ = [f.format(model=model) for f in CASES[name]]
        cli_argv = ["remotetrimmer", f"--init_model={model}", f"--workdir={tmp}/run",
                    "--stages=train,attention,fold,prune", "--config.prune.importance=l1",
                    "--config.train.epochs=0", "--verbose=0", *flags_]
        edges, reached = walk(cli_argv)
    if not reached:
        raise SystemExit(f"{name}: the CLI never reached surgeon.prune_channels")
    with open(out, "w") as f:
        json.dump([[a, b, ma, mb, st] for (a, b), (ma, mb, st) in edges.items()], f)


def _report(title, edges, verbose, lines, ranks):
    for window, keys in (("CLI start", list(edges)),
                         ("prune stage", [k for k in edges if edges[k][2]])):
        climbs = sorted(k for k in keys
                        if rank(edges[k][1], ranks) > rank(edges[k][0], ranks))
        pruner_in = [k for k in climbs if edges[k][1] == "remotetrimmer_tf.pruner"]
        lines.append(f"{title}: from the {window} to the surgeon: {len(keys)} distinct "
                     f"call edges, {len(climbs)} climbs back up, {len(pruner_in)} "
                     "re-entries into pruner.py")
        if verbose:
            lines += [f"    {a} -> {b}" for a, b in climbs]


def main(argv=None):
    import json
    import subprocess
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: "
                    + ", ".join(CASES))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--verbose", action="store_true", help="list every climb")
    ap.add_argument("--save", default=None, help="also write the lines to this file")
    args = ap.parse_args(argv)
    if args.one:
        return _one(args.one, args.out)
    union, lines = {}, []
    import remotetrimmer_tf
    ranks = layout_ranks(os.path.dirname(os.path.abspath(remotetrimmer_tf.__file__)))
    lines.append(f"walked: {os.path.dirname(os.path.abspath(remotetrimmer_tf.__file__))}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            out = os.path.join(tmp, name + ".json")
            subprocess.run([sys.executable, __file__, "--one", name, "--out", out],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            edges = {(a, b): (ma, mb, st) for a, b, ma, mb, st in json.load(open(out))}
            _report(f"{name} ({' '.join(CASES[name])})", edges, args.verbose, lines, ranks)
            for k, v in edges.items():
                old = union.get(k)
                union[k] = (v[0], v[1], v[2] or (old is not None and old[2]))
    _report("all cases together", union, True, lines, ranks)
    print("\n".join(lines))
    if args.save:
        from remotetrimmer_tf.utils.files import write_text_atomic
        from remotetrimmer_tf.utils.provenance import results_header
        write_text_atomic(args.save, results_header(sys.argv if argv is None else
                                                    ["tools/walk_prune.py", *argv])
                          + "\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
