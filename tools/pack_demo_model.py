"""Packs a trained SE-ResNet-18 into the package as the default run's start.

Reads a CLI run folder whose ``train`` stage finished (its ``stages.json``
and ``model_trained.keras``), checks that it is what the demo needs
(``resnet18`` with SE gates, EuroSAT RGB at 64x64, 10 classes, trained on a
local folder that holds none of the 800 embedded sample images), writes the
weights in float16 and a ``model.json`` (the training command rebuilt from
the run's config, the data, the accuracies) into
``remotetrimmer_tf/assets/demo_model/`` (`remotetrimmer_tf.demo_model`),
and a results file ``tools/results/demo_model.md`` with this command.

Every accuracy is measured here on the float16 weights as packed: on the
run's full test split (the images the run held out of training) and on the
embedded sample (its 240-image test split, which the default run reports
on, and all 800 images); the run's own float32 test accuracy is copied from
its ledger beside them.

    python tools/pack_demo_model.py --run=/work/demo_train/run30

Exit status 2 with one line when the run does not fit (named check).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import shlex
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NEEDS = {"model.arch": "resnet18", "model.se": True, "data.name": "eurosat",
         "data.image_size": 64}


class PackError(Exception):
    """The run folder cannot be packed (one line)."""


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def _named_config(name):
    """``configs/<name>.py``'s ``get_config()`` as a plain dict, or None."""
    path = ROOT / "configs" / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"_pack_cfg_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.loads(json.dumps(module.get_config().to_dict(), default=list))


def _value(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def training_command(run, ledger):
    """The CLI command that reproduces the run's train stage: its named
    config plus one ``--config.`` override per field that differs."""
    cfg = _flat(ledger["config"])
    name = ledger.get("config_name", "base")
    base = _named_config(name)
    parts = ["python", "-m", "remotetrimmer_tf.prune"]
    if base is None:
        diffs = cfg
    else:
        parts.append(f"--config=configs/{name}.py")
        flat = _flat(base)
        diffs = {k: v for k, v in cfg.items() if flat.get(k) != v}
    parts += [f"--config.{k}={_value(v)}" for k, v in sorted(diffs.items())
              if k != "name"]
    parts += [f"--workdir={run}", "--stages=train"]
    return " ".join(shlex.quote(p) for p in parts)


def _check_config(ledger):
    cfg = _flat(ledger["config"])
    for key, want in NEEDS.items():
        if cfg.get(key) != want:
            raise PackError(f"config {key}={cfg.get(key)!r}; the demo model "
                            f"must have {key}={want!r}")
    if "train" not in ledger.get("stages", {}):
        raise PackError("its train stage has not finished (stages.json); wait "
                        "for it, or pass --model=<a .keras checkpoint>")
    return cfg


def sample_overlap(data_dir):
    """Embedded sample images present in ``data_dir``'s EuroSAT folder."""
    from remotetrimmer_tf.data import sample_dir
    sample = pathlib.Path(sample_dir())
    folder = pathlib.Path(data_dir)
    root = folder / "2750" if (folder / "2750").is_dir() else folder
    return [str(p.relative_to(sample)) for p in sorted(sample.glob("2750/*/*"))
            if (root / p.parent.name / p.name).exists()]


def _accuracy(model, data_dir, split, steps=None):
    from remotetrimmer_tf import data, training
    ds = data.load("eurosat", split, data_dir=str(data_dir), image_size=64,
                   batch_size=64, shuffle=False)
    n = int(getattr(ds, "num_examples", 0))
    if steps:
        ds, n = ds.take(int(steps)), min(n, int(steps) * 64)
    result = training.evaluate(model, ds, batch_size=64)
    return {"accuracy": round(float(result["accuracy"]), 6), "images": n}


def _record(run, ledger, cfg, model_file, overlap_checked):
    from remotetrimmer_tf.data import registry
    train = ledger["stages"].get("train", {}).get("info", {})
    return {
        "arch": "resnet18", "se": True, "num_classes": 10,
        "input_shape": [64, 64, 3],
        "classes": list(registry.get_spec("eurosat").class_names),
        "training_command": training_command(run, ledger),
        "trained_model": str(model_file),
        "config_name": ledger.get("config_name"),
        "train_recipe": {k[6:]: v for k, v in cfg.items() if k.startswith("train.")},
        "train_seconds": train.get("train_seconds"),
        "data": {"name": "eurosat", "data_dir": cfg.get("data.data_dir"),
                 "split_seed": cfg.get("data.seed"),
                 "train_fraction": cfg.get("data.train_fraction"),
                 "sample_images_in_data": overlap_checked},
        "run_test_accuracy_float32": (train.get("metrics") or {}).get("accuracy"),
    }


def pack_run(run, out, model_file=None, eval_steps=None, log=print):
    """Packs ``run``'s trained model into ``out``; returns the record."""
    import keras
    import remotetrimmer_tf.models  # noqa: F401 - registers SqueezeExcite
    from remotetrimmer_tf import demo_model
    from remotetrimmer_tf.data import sample_dir
    run = pathlib.Path(run).resolve()
    ledger_path = run / "stages.json"
    if not ledger_path.is_file():
        raise PackError(f"--run={run}: no stages.json (not a run folder)")
    ledger = json.loads(ledger_path.read_text())
    if model_file is None:
        cfg = _check_config(ledger)
        model_file = run / "model_trained.keras"
    else:
        cfg = _flat(ledger["config"])
        ledger.setdefault("stages", {})
    data_dir = cfg.get("data.data_dir")
    if not data_dir:
        raise PackError("the run read EuroSAT through TFDS (no data_dir): the "
                        "sample images cannot be checked to be left out")
    overlap = sample_overlap(data_dir)
    if overlap:
        raise PackError(f"{len(overlap)} embedded sample images (e.g. "
                        f"{overlap[0]}) are in {data_dir}: the demo would "
                        "report on images the model trained on")
    record = _record(run, ledger, cfg, model_file, 0)
    log(f"loading {model_file}")
    model = keras.saving.load_model(str(model_file), compile=False)
    with tempfile.TemporaryDirectory() as tmp:
        fresh, _ = demo_model.pack(model, record, folder=pathlib.Path(tmp) / "m")
        log("measuring the float16 model")
        record["accuracy"] = {
            "test_split": _accuracy(fresh, data_dir, "test", eval_steps),
            "sample_test_split": _accuracy(fresh, sample_dir(), "test"),
            "sample_all": _accuracy(fresh, sample_dir(), "all"),
        }
    _, record = demo_model.pack(model, record, folder=out)
    return record


def write_results(record, out_md, argv):
    from remotetrimmer_tf.utils.files import write_text_atomic
    from remotetrimmer_tf.utils.provenance import results_header
    acc = record["accuracy"]
    pct = lambda a: f"{100 * a['accuracy']:.2f}% ({a['images']:,} images)"  # noqa: E731
    run32 = record.get("run_test_accuracy_float32")
    lines = [
        "# The shipped demo model (SE-ResNet-18, EuroSAT RGB)", "",
        results_header(argv),
        f"Packed {time.strftime('%Y-%m-%d')} into "
        "`remotetrimmer_tf/assets/demo_model/` (float16 weights, "
        f"{record['weights_bytes'] / 2**20:.1f} MiB).", "",
        f"Trained with: `{record['training_command']}`", "",
        "The training data left out the 800 embedded sample images "
        f"(checked: {record['data']['sample_images_in_data']} present).", "",
        "| accuracy of the float16 weights | |", "|---|---:|",
        f"| test split of the training data | {pct(acc['test_split'])} |",
        f"| embedded sample, test split (what the default run reports on) | "
        f"{pct(acc['sample_test_split'])} |",
        f"| embedded sample, all images | {pct(acc['sample_all'])} |",
        f"| the run's own float32 test accuracy (its ledger) | "
        f"{'—' if run32 is None else f'{100 * run32:.2f}%'} |", ""]
    write_text_atomic(out_md, "\n".join(lines))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="CLI run folder (train finished)")
    ap.add_argument("--model", help="a .keras file to pack instead of "
                    "RUN/model_trained.keras (e.g. a checkpoint; the run's "
                    "config still describes its training)")
    ap.add_argument("--out", default=str(ROOT / "remotetrimmer_tf/assets/demo_model"))
    ap.add_argument("--results", default=str(ROOT / "tools/results/demo_model.md"),
                    help="results file ('' for none)")
    ap.add_argument("--eval_steps", type=int, help="batches of 64 of the run's "
                    "test split to measure (default: all)")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        record = pack_run(args.run, args.out, args.model, args.eval_steps)
    except PackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.results:
        write_results(record, args.results, [os.path.relpath(sys.argv[0], ROOT)]
                      + list(sys.argv[1:] if argv is None else argv))
    print(json.dumps(record["accuracy"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
