"""The run report: report.json, report.md and a per-layer width plot.

Every parameter / MAC count is computed here from the saved `.keras` files
(`remotetrimmer_tf.count_params` / `count_macs`), so the report always agrees
with the models in the run folder.

Example:
  artifacts, info = write_report(run)     # run: a pipeline.run_state.Run
  print(format_table(json.load(open(run.wd / "report.json"))))
"""
import datetime
import os
import platform
import sys

MODEL_FILES = (("trained", "model_trained.keras"),
               ("folded", "model_folded.keras"),
               ("pruned", "model_pruned.keras"),
               ("recalibrated", "model_recalibrated.keras"),
               ("finetuned", "model_finetuned.keras"))


def layer_widths(model):
    """`{layer name: output channels}` of every conv / dense layer, in order."""
    out = {}
    for layer in model.layers:
        width = getattr(layer, "filters", None)
        if width is None and hasattr(layer, "units"):
            width = layer.units
        if width is not None:
            out[layer.name] = int(width)
    return out


def model_stats(model, path):
    """Parameter/MAC counts, file size and widths of one saved model."""
    from remotetrimmer_tf.cost import count_macs, count_params
    return {
        "file": os.path.basename(path),
        "file_bytes": os.path.getsize(path),
        "params": int(count_params(model, trainable_only=True)),
        "params_total": int(count_params(model, trainable_only=False)),
        "macs": int(count_macs(model)),
    }


def versions():
    """Versions of the software stack (TensorFlow only if already imported)."""
    import keras
    import numpy as np
    import remotetrimmer_tf
    out = {"python": platform.python_version(), "keras": keras.__version__,
           "keras_backend": keras.backend.backend(), "numpy": np.__version__,
           "remotetrimmer_tf": remotetrimmer_tf.__version__}
    for mod in ("tensorflow", "jax", "ml_collections", "ai_edge_litert"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def hardware():
    """CPU / accelerator description of this machine."""
    out = {"platform": platform.platform(), "machine": platform.machine(),
           "processor": platform.processor() or None,
           "cpu_count": os.cpu_count()}
    try:
        out["cpus_usable"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        pass
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            out["accelerators"] = [d.name for d in tf.config.list_physical_devices()
                                   if d.device_type != "CPU"]
        except Exception:  # noqa: BLE001
            pass
    return out


def accuracies(wd):
    """Accuracy after every model-producing stage, from the ledger."""
    out = {}
    names = {"train": "trained", "fold": "folded", "prune": "pruned",
             "recalibrate": "recalibrated", "finetune": "finetuned"}
    for stage, label in names.items():
        entry = wd.entry(stage) or {}
        info = entry.get("info", {})
        if stage == "recalibrate" and "metrics_before" in info:
            out["pruned_before_recalibration"] = info["metrics_before"].get("accuracy")
        m = info.get("metrics")
        if m:
            out[label] = m.get("accuracy")
        if stage == "train" and out.get(label) is not None:
            gated = ((wd.entry("attention") or {}).get("info") or {}).get("gated_metrics")
            if gated:
                out["gated"] = gated.get("accuracy")
    return out


#: the stage pairs (before, after, stage) where an accuracy drop is unexpected
#: (training and recalibration; folding the mean SE attention and pruning
#: change the function by design)
_NO_DROP = (("trained", "gated", "attention (SE gate training)"),
            ("pruned_before_recalibration", "recalibrated", "recalibrate"),
            ("recalibrated", "finetuned", "finetune"))


def stage_warnings(rep):
    """Lines for every stage that ended worse than the stage before it (with
    the numbers), a trained model at chance, and an `--init_model` whose BN
    statistics had to be re-estimated."""
    from remotetrimmer_tf.pipeline.bn_check import bn_line
    acc, stages = rep.get("accuracy") or {}, rep.get("stages") or {}
    out = []
    line = bn_line((stages.get("train") or {}).get("bn_statistics"))
    if line:
        out.append(line)
    for before, after, stage in _NO_DROP:
        if before == "recalibrated" and acc.get(before) is None:
            before = "pruned"   # fine-tuned straight from the pruned model
        a, b = acc.get(before), acc.get(after)
        if _worse(a, b):
            out.append(f"{stage} ended worse than the stage before it: {before} "
                       f"{100 * a:.1f}% -> {after} {100 * b:.1f}% ({_split_words(rep)})")
    for r in (rep.get("rounds") or [])[:-1]:   # the last round is the stages above
        a, b = r.get("accuracy_recalibrated", r.get("accuracy_pruned")), r.get("accuracy")
        if _worse(a, b):
            out.append(f"the fine-tune of pruning round {r.get('round')} ended worse than "
                       f"its input: {100 * a:.1f}% -> {100 * b:.1f}% ({_split_words(rep)})")
    chance = _chance(rep)
    trained = acc.get("trained")
    if chance and isinstance(trained, (int, float)) and trained <= chance + 1e-9:
        out.append(f"the trained model scores at chance ({100 * trained:.1f}% for "
                   f"{round(1 / chance)} classes): train longer or check the data")
    return out


def _worse(before, after):
    """Both accuracies known and ``after`` below ``before``."""
    return (isinstance(before, (int, float)) and isinstance(after, (int, float))
            and after < before - 1e-9)


def _chance(rep):
    n = (rep.get("data") or {}).get("num_classes")
    return 1.0 / n if isinstance(n, int) and n > 1 else None


def build_report(run):
    """Assembles the report dict from the run folder and its ledger."""
    wd = run.wd
    models, widths = _model_stats(run)
    rep = {"name": run.cfg.get("name", "config"), "workdir": str(wd.path),
           "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
               timespec="seconds"),
           "models": models}
    before = models.get("folded") or models.get("trained")
    after = models.get("finetuned") or models.get("pruned")
    if before and after:
        rep["reduction"] = _reduction(before, after)
    export_info = (wd.entry("export") or {}).get("info", {}).get("files", {})
    rep["accuracy"] = _accuracy(wd, export_info)
    rep["accuracy_split"] = run.cfg.evaluate.split
    rep["evaluated_samples"] = evaluated_samples(run)
    rep["files"] = {p.name: p.stat().st_size for p in sorted(wd.path.iterdir())
                    if p.is_file() and not p.name.startswith(".")
                    and p.suffix in (".keras", ".tflite", ".npz", ".json")}
    rep["litert"] = export_info
    base = widths.get("folded") or widths.get("trained") or {}
    final = widths.get("finetuned") or widths.get("pruned") or {}
    rep["widths"] = {name: {"before": w, "after": final.get(name)}
                     for name, w in base.items()}
    rep.update(_from_ledger(wd.ledger or {}))
    rounds = round_rows(wd.ledger or {}, rep["accuracy"])
    if rounds:
        rep["rounds"] = rounds
    rep["warnings"] = stage_warnings(rep)
    rep["versions"] = versions()
    rep["hardware"] = hardware()
    return rep


def _model_stats(run):
    """``({label: model_stats}, {label: layer_widths})`` of the saved models."""
    models, widths = {}, {}
    for label, fname in MODEL_FILES:
        if run.wd.exists(fname):
            model = run.load_model(fname)
            models[label] = model_stats(model, run.wd / fname)
            widths[label] = layer_widths(model)
    return models, widths


def _reduction(before, after):
    kept_p = after["params"] / max(before["params"], 1)
    kept_m = after["macs"] / max(before["macs"], 1)
    return {"params_kept": kept_p, "macs_kept": kept_m,
            "params_removed": 1 - kept_p, "macs_removed": 1 - kept_m}


def _accuracy(wd, export_info):
    """Accuracies of the stages, the evaluated fine-tuned model and the exports."""
    acc = accuracies(wd)
    if wd.exists("metrics.json"):
        acc["finetuned"] = wd.read_json("metrics.json").get(
            "accuracy", {}).get("finetuned", acc.get("finetuned"))
    for mode, e in export_info.items():
        if "accuracy" in e:
            acc[f"litert_{mode}"] = e["accuracy"]
    return acc


def round_rows(ledger, acc):
    """`report.json["rounds"]` of a run pruned in rounds (`prune.rounds` > 1;
    `[]` otherwise): per round its index, the share of the pruned groups'
    channels removed so far (`ratio`), per-layer widths, params, MACs, the
    accuracy after its prune and after its fine-tune, epochs and fine-tune
    seconds. The last round's accuracies and fine-tune are the prune /
    finetune stages'."""
    stages = ledger.get("stages") or {}
    records = ((stages.get("prune") or {}).get("info") or {}).get("rounds") or []
    out = [{k: v for k, v in r.items() if k != "history"} for r in records]
    if out:
        finetune = (stages.get("finetune") or {}).get("info") or {}
        out[-1].update(accuracy_pruned=acc.get("pruned"), accuracy=acc.get("finetuned"),
                       finetune_seconds=finetune.get("train_seconds"))
        if finetune.get("epochs") is not None:
            out[-1]["epochs"] = finetune["epochs"]
    return out


def _from_ledger(ledger):
    """Timings, stage infos, config, data and determinism of the ledger."""
    stages = ledger.get("stages", {})
    timings = {s: e.get("seconds") for s, e in stages.items()}
    timings["total"] = round(sum(v or 0 for v in timings.values()), 3)
    inputs = ledger.get("inputs") or {}
    data = inputs.get("data") or {}
    skipped = list(data.get("skipped_bad_files") or [])
    return {"timings_s": timings,
            "stages": {s: {k: v for k, v in e.get("info", {}).items()
                           if k not in ("per_gate", "rounds")}   # rounds: rep["rounds"]
                       for s, e in stages.items()},
            "config": ledger.get("config"),
            "data": {"source": data.get("source"), "files": data.get("files"),
                     "num_classes": data.get("num_classes"),
                     "fingerprint": data.get("digest"), "skipped_bad_files": skipped,
                     "skipped_count": len(skipped)},
            "determinism": inputs.get("determinism")}


def evaluated_samples(run):
    """Images the accuracies are measured on (the evaluation split's size,
    capped by `evaluate.steps`), or None if it cannot be told."""
    try:
        data = run.data(run.cfg.evaluate.split)
    except Exception:  # noqa: BLE001 - the report never fails on this
        return None
    n = getattr(data, "num_examples", None)
    if n is None and isinstance(data, tuple) and len(data) == 2:
        n = len(data[1])
    if n is None:
        return None
    steps = run.cfg.evaluate.steps
    if steps:
        n = min(int(n), int(steps) * int(run.cfg.data.batch_size))
    return int(n)


def _split_words(rep):
    n = rep.get("evaluated_samples")
    split = rep.get("accuracy_split", "test")
    return f"{split} split, {n:,} images" if isinstance(n, int) else f"{split} split"


def _fmt_int(v):
    return f"{v:,}" if isinstance(v, int) else "-"


def _fmt_acc(v):
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "-"


def _fmt_bytes(v):
    if not isinstance(v, int):
        return "-"
    return f"{v / 2**20:.2f} MiB" if v >= 2**20 else f"{v / 1024:.1f} KiB"


def table_rows(rep):
    """Rows (model, params, MACs, accuracy, file size) of the summary table."""
    acc = rep.get("accuracy", {})
    rows = []
    for label, _ in MODEL_FILES:
        m = rep["models"].get(label)
        if m is None:
            continue
        rows.append((label, _fmt_int(m["params"]), _fmt_int(m["macs"]),
                     _fmt_acc(acc.get(label)), _fmt_bytes(m["file_bytes"])))
    for mode, e in rep.get("litert", {}).items():
        name = e.get("path", mode)
        rows.append((f"LiteRT {mode}", "", "", _fmt_acc(e.get("accuracy")),
                     _fmt_bytes(e.get("size_bytes"))))
        del name
    return rows


HEADER = ("model", "params", "MACs", "accuracy", "file")


def budget_line(rep):
    """One line on the prune stage's budget (target, achieved, search time), or None."""
    b = (rep.get("stages", {}).get("prune") or {}).get("budget")
    if not b:
        return None
    if b["kind"] == "latency_ms":
        ref = b.get("reference")
        target = (f"target_latency_of='{ref['name']}' ({b['target']:.4g} ms)" if ref
                  else f"target_latency_ms={b['target']:g}")
        margin = b.get("margin") or 0.0
        aim = (f", aimed {100 * margin:.1f}% under it"
               + ("" if b.get("margin_met", True) else " (not reached)") if margin else "")
        return (f"budget: {target} ({b['runtime']} {b['dtype']}, "
                f"{b['threads']} thread(s), objective {b.get('objective', '?')}{aim}); "
                f"measured {b['measured_ms']:.4g} ms, predicted "
                f"{b['predicted_ms']:.4g} ms, unpruned {b['unpruned_ms']:.4g} ms; "
                f"search {b['search_s']:.1f} s")
    return (f"budget: target_{b['kind']}={b['target']:,}; achieved {b['achieved']:,} "
            f"({100 * (1 - b['achieved'] / b['target']):.2f}% under; unpruned "
            f"{b['unpruned']:,}); search {b['search_s']:.2f} s")


def shortfall_line(rep):
    """One line when the prune stage removed much less than asked, or None."""
    s = (rep.get("stages", {}).get("prune") or {}).get("shortfall")
    if not s or not s.get("short"):
        return None
    why = "; ".join(f"{r['reason']} ({r['channels']} channels)" for r in s["reasons"][:3])
    return (f"pruned less than asked: {100 * s['removed']:.0f}% of {s['channels']} "
            f"channels removed for {100 * s['asked']:.0f}% asked; frozen: {why}")


def rounds_line(rep):
    """One line on iterative pruning (params and accuracy per round), or None."""
    rounds = rep.get("rounds")
    if not rounds:
        return None
    steps = " -> ".join(f"{_fmt_int(r.get('params'))} ({_fmt_acc(r.get('accuracy'))})"
                        for r in rounds)
    return (f"pruned in {len(rounds)} rounds, fine-tuning between: params (accuracy "
            f"after the round's fine-tune) {steps}")


def rounds_markdown(rep):
    """report.md's table of the rounds (empty for one-shot pruning)."""
    rounds = rep.get("rounds")
    if not rounds:
        return []
    epochs = [r.get("epochs") for r in rounds]
    out = ["", "## Rounds (iterative pruning)", "",
           f"Pruned in {len(rounds)} rounds; fine-tuning epochs per round "
           f"{', '.join(str(e) for e in epochs)} (total "
           f"{sum(e or 0 for e in epochs)} = finetune.epochs). `removed`: share of the "
           "pruned groups' channels removed so far.", "",
           "| round | removed | params | MACs | pruned | fine-tuned | epochs | fine-tune s |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rounds:
        secs = r.get("finetune_seconds")
        out.append(f"| {r['round']} | {100 * r.get('ratio', 0):.1f}% | "
                   f"{_fmt_int(r.get('params'))} | {_fmt_int(r.get('macs'))} | "
                   f"{_fmt_acc(r.get('accuracy_pruned'))} | {_fmt_acc(r.get('accuracy'))} | "
                   f"{r.get('epochs', '-')} | {'-' if secs is None else secs} |")
    return out


def format_table(rep):
    """The plain-text summary table printed at the end of a run."""
    rows = [HEADER] + table_rows(rep)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(rows):
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    red = rep.get("reduction")
    if red:
        lines.append(f"params removed {100 * red['params_removed']:.1f}%, "
                     f"MACs removed {100 * red['macs_removed']:.1f}% "
                     f"(accuracy on the {_split_words(rep)})")
    for extra in (budget_line(rep), shortfall_line(rep), rounds_line(rep)):
        if extra:
            lines.append(extra)
    lines += [f"warning: {w}" for w in rep.get("warnings") or ()]
    return "\n".join(lines)


def compute_lines(rep):
    """One line per training stage: the precision and threads it ran with."""
    out = []
    for stage in ("train", "finetune"):
        c = ((rep.get("stages") or {}).get(stage, {}).get("history") or {}).get("compute")
        if not c:
            continue
        line = (f"{stage}: precision {c['precision']} (requested {c['precision_requested']}; "
                f"CPU bf16 flags: {', '.join(c['cpu_bf16']) or 'none'}), backend "
                f"{c['backend']}")
        if "intra_op_threads" in c:
            line += (f", threads intra-op {c['intra_op_threads']} / inter-op "
                     f"{c['inter_op_threads']} ({c['cpu_count']} CPUs)")
        out.append(line)
    return out


_SETTLED = {"epoch": "re-estimated after every epoch (before validation and checkpoints)",
            "end": "re-estimated once, after the last epoch",
            "off": "left as training's running averages (settle_bn=off)"}


def settle_lines(rep):
    """One line per training stage: how its BN statistics were settled and
    which epoch's weights it kept."""
    out = []
    stages = rep.get("stages") or {}
    found = [("train", (stages.get("train") or {}).get("history")),
             ("SE gates", (stages.get("attention") or {}).get("gate_history")),
             ("finetune", (stages.get("finetune") or {}).get("history"))]
    for stage, h in found:
        if not h or "bn_settle" not in h:
            continue
        line = f"{stage}: BatchNorm statistics {_SETTLED.get(h['bn_settle'], h['bn_settle'])}"
        if h["bn_settle"] != "off":
            line += f" over {h.get('bn_batches', 0)} training batches (precise BN)"
        if h.get("kept_epoch"):
            line += f"; kept epoch {h['kept_epoch']} (best val_accuracy)"
        out.append(line)
    return out


def format_markdown(rep):
    """report.md: summary table, widths, timings, environment."""
    out = [f"# RemoteTrimmer run: {rep.get('name')}", "",
           f"Run folder: `{rep.get('workdir')}` — {rep.get('created')}", "",
           "| " + " | ".join(HEADER) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(HEADER) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(rep)]
    red = rep.get("reduction")
    if red:
        out += ["", f"Parameters removed: {100 * red['params_removed']:.1f}%; "
                    f"MACs removed: {100 * red['macs_removed']:.1f}%. "
                    f"Accuracies on the {_split_words(rep)}."]
    if budget_line(rep):
        out += ["", "B" + budget_line(rep)[1:] + "."]
    if shortfall_line(rep):
        out += ["", "**P" + shortfall_line(rep)[1:] + ".**"]
    for w in rep.get("warnings") or ():
        out += ["", f"**Warning: {w}.**"]
    out += rounds_markdown(rep)
    acc = rep.get("accuracy", {})
    if acc:
        out += ["", "## Accuracy by stage", "", "| stage | accuracy |",
                "|---|---:|"]
        out += [f"| {k} | {_fmt_acc(v)} |" for k, v in acc.items()]
    if rep.get("widths"):
        out += ["", "## Per-layer widths (output channels)", "",
                "| layer | before | after |", "|---|---:|---:|"]
        out += [f"| {k} | {v['before']} | {v['after'] if v['after'] is not None else '-'} |"
                for k, v in rep["widths"].items()]
        if rep.get("files", {}).get("widths.png") or rep.get("plot"):
            out += ["", "![widths](widths.png)"]
    compute = compute_lines(rep) + settle_lines(rep)
    if compute:
        out += ["", "## Training compute", ""] + [f"- {line}" for line in compute]
    out += ["", "## Timings (seconds)", "", "| stage | s |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in rep.get("timings_s", {}).items()]
    out += ["", "## Environment", "", "```",
            "\n".join(f"{k}: {v}" for k, v in rep.get("versions", {}).items()),
            "\n".join(f"{k}: {v}" for k, v in rep.get("hardware", {}).items()),
            "```", ""]
    return "\n".join(out)


def plot_widths(rep, path):
    """Bar plot of per-layer widths before / after (after each round when
    pruned in rounds); False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    items = list(rep.get("widths", {}).items())
    if not items:
        return False
    names = [k for k, _ in items]
    series = width_series(rep, items)
    # Horizontal bars, one row per layer: every name stays readable however
    # many layers the model has (MobileNetV2: ~100); rounds: one bar each.
    row = 0.17 + 0.06 * max(0, len(series) - 1)
    fig, ax = plt.subplots(figsize=(8, max(3.0, row * len(names) + 1.6)))
    ys = list(range(len(names)))[::-1]
    ax.barh(ys, [v["before"] for _, v in items], color="#c8c8c8", label="before",
            height=0.8)
    height = 0.8 / len(series)
    cmap = matplotlib.colormaps["viridis"]
    for n, (label, widths) in enumerate(series):
        color = "#1f77b4" if len(series) == 1 else cmap(0.85 * n / (len(series) - 1))
        offset = 0.4 - height * (n + 0.5)
        ax.barh([y + offset for y in ys], widths, color=color, label=label, height=height)
    ax.set_yticks(ys)
    ax.set_yticklabels(names, fontsize=7)
    ax.set_ylim(-0.8, len(names) - 0.2)
    ax.set_xlabel("output channels")
    ax.set_title(_plot_title(rep), fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return True


def width_series(rep, items):
    """``[(label, widths per layer)]``: "after", or one per round."""
    rounds = rep.get("rounds")
    if not rounds:
        return [("after", [v["after"] or 0 for _, v in items])]
    return [(f"round {r['round']} ({_fmt_int(r.get('params'))} params)",
             [(r.get("widths") or {}).get(name, 0) for name, _ in items]) for r in rounds]


def _plot_title(rep):
    cfg = rep.get("config") or {}
    prune = cfg.get("prune", {}) if isinstance(cfg, dict) else {}
    title = f"Per-layer widths: {rep.get('name')}"
    if prune.get("ratio") is not None:
        title += (f" — ratio {prune['ratio']} ({prune.get('importance')}, "
                  f"{prune.get('scope')})")
    if rep.get("rounds"):
        title += f", {len(rep['rounds'])} rounds"
    red = rep.get("reduction")
    if red:
        title += (f"\nparams removed {100 * red['params_removed']:.1f}%, "
                  f"MACs removed {100 * red['macs_removed']:.1f}%")
    return title


def write_report(run):
    """Writes report.json, report.md (and widths.png); returns (artifacts, info)."""
    rep = build_report(run)
    wd = run.wd
    artifacts = []
    with wd.atomic("widths.png") as tmp:
        plotted = plot_widths(rep, tmp)
        if not plotted:   # nothing to rename; atomic() would complain
            open(tmp, "wb").close()
    if plotted:
        artifacts.append("widths.png")
    else:
        (wd / "widths.png").unlink(missing_ok=True)
    rep["plot"] = "widths.png" if plotted else None
    wd.write_json("report.json", rep)
    wd.write_text("report.md", format_markdown(rep))
    artifacts += ["report.json", "report.md"]
    return artifacts, {"plot": plotted}
