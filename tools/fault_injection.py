"""Fault injection: kill the CLI at random points of every stage, then check.

Runs `python -m remotetrimmer_tf.prune` on a tiny config (the embedded demo
config, i.e. the modern recipe with flips/rot90 augmentation, shrunk to a
10-class, 6-images-per-class 32x32 folder and a two-conv SE model passed as
`--init_model`, CAP pruning, BN recalibration, one fine-tuning epoch of 2
steps, float32 LiteRT export) many times. Each run is killed with SIGKILL or
SIGINT at a random moment after one stage has started (the stages are taken
in turn), and then:

1. the ledger matches the files: every stage it lists has all its artifacts,
   with the sha256 it recorded;
2. every `.keras` / `.tflite` file in the run folder loads (atomic writes:
   nothing half-written has a final name);
3. SIGINT: exit status 130 and the one line "interrupted during STAGE; ...",
   no temporary file left, no lock left;
4. the same command rerun finishes (exit 0), leaves no temporary file and no
   lock, and its models equal the uninterrupted reference run's bitwise
   (seeded, deterministic kernels) and so do the report's accuracies.

"lost" counts ledger-recorded artifacts that went missing or changed.

Usage:
  python tools/fault_injection.py --minutes 30 \\
      --out tools/results/fault_injection.md
"""
import argparse
import hashlib
import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STAGES = ("train", "attention", "fold", "prune", "recalibrate", "finetune",
          "evaluate", "export", "report")
CLASSES = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway",
           "Industrial", "Pasture", "PermanentCrop", "Residential", "River",
           "SeaLake")
TMP_MARKS = (".tmp-", ".tmp")
FINAL_LINE = "interrupted during {}; rerun the same command to resume"


def make_data(root):
    """A tiny EuroSAT-layout folder of generated 32x32 JPEGs."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for i, cls in enumerate(CLASSES):
        d = root / "2750" / cls
        d.mkdir(parents=True)
        for k in range(6):
            img = (rng.random((32, 32, 3)) * 60 + i * 20).astype(np.uint8)
            Image.fromarray(img).save(d / f"{cls}_{k}.jpg")
    return root


def make_model(path):
    """A two-conv SE classifier for 32x32 inputs, 10 classes."""
    import keras
    from remotetrimmer_tf.models import SqueezeExcite
    L = keras.layers
    x = keras.Input((32, 32, 3))
    h = x
    for i, width in enumerate((8, 16), 1):
        h = L.Conv2D(width, 3, strides=i, padding="same", use_bias=False, name=f"c{i}")(h)
        h = L.BatchNormalization(name=f"bn{i}")(h)
        h = L.ReLU(name=f"r{i}")(h)
        h = SqueezeExcite(reduction=4, name=f"se{i}")(h)
    h = L.GlobalAveragePooling2D(name="gap")(h)
    keras.Model(x, L.Dense(10, name="fc")(h), name="tiny").save(path)
    return path


def cli_args(data, workdir, model):
    return [f"--workdir={workdir}", f"--config.data.data_dir={data}",
            f"--init_model={model}",
            "--config.data.image_size=32", "--config.data.batch_size=16",
            "--config.finetune.epochs=1",
            "--config.finetune.steps_per_epoch=2", "--config.finetune.batch_size=16",
            "--config.recalibrate.steps=1", "--config.export.representative_steps=1",
            "--config.export.check_samples=8", "--config.export.quantize=none",
            "--verbose=0"]


def env():
    e = dict(os.environ)
    e["TF_CPP_MIN_LOG_LEVEL"] = "3"
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("CUDA_VISIBLE_DEVICES", "")
    return e


def sha16(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()[:16]


def ledger_problems(wd):
    """Artifacts the ledger lists that are missing or differ from its digest."""
    path = wd / "stages.json"
    if not path.exists():
        return []
    ledger = json.loads(path.read_text())
    out = []
    for stage, entry in ledger["stages"].items():
        for name in entry.get("artifacts", []):
            if not (wd / name).exists():
                out.append(f"{stage}:{name} missing")
            elif name in entry.get("sha256", {}) and sha16(wd / name) != entry["sha256"][name]:
                out.append(f"{stage}:{name} digest differs")
    return out


def unloadable(wd):
    """.keras / .tflite files (outside superseded/) that fail to load."""
    import keras
    import remotetrimmer_tf.models  # noqa: F401 - registers our layers
    from remotetrimmer_tf.export.litert import LiteRTRunner
    bad = []
    for p in sorted(wd.rglob("*")):
        if "superseded" in p.parts or any(m in p.name for m in TMP_MARKS):
            continue
        try:
            if p.suffix == ".keras":
                keras.saving.load_model(p, compile=False)
            elif p.suffix == ".tflite":
                LiteRTRunner(str(p))
        except Exception as e:  # noqa: BLE001 - reported
            bad.append(f"{p.relative_to(wd)} ({type(e).__name__})")
    return bad


def temporaries(wd):
    return [str(p.relative_to(wd)) for p in wd.rglob("*")
            if any(m in p.name for m in TMP_MARKS)]


def weights(wd):
    import keras
    import remotetrimmer_tf.models  # noqa: F401
    return {n: keras.saving.load_model(wd / n, compile=False).get_weights()
            for n in ("model_trained.keras", "model_folded.keras",
                      "model_pruned.keras", "model_finetuned.keras")}


def same_weights(a, b):
    import numpy as np
    return all(len(a[n]) == len(b[n]) and all(np.array_equal(x, y)
                                              for x, y in zip(a[n], b[n]))
               for n in a)


def accuracies(wd):
    return json.loads((wd / "report.json").read_text())["accuracy"]


def run_cli(args, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "remotetrimmer_tf.prune", *args],
                          cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def interrupted_run(args, cwd, stage, sig, delay):
    """Starts the CLI; `delay` s after `stage` starts sends `sig`."""
    proc = subprocess.Popen([sys.executable, "-m", "remotetrimmer_tf.prune", *args],
                            cwd=cwd, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines, sent = [], False
    for line in proc.stderr:
        lines.append(line)
        if f"] {stage}: running" in line:
            time.sleep(delay)
            if proc.poll() is None:
                proc.send_signal(sig)
                sent = True
            break
    rest = proc.stderr.read()
    rc = proc.wait(timeout=600)
    return rc, sent, "".join(lines) + rest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=0, help="stop after N runs (0: time only)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="tools/results/fault_injection.md")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    command = "python " + " ".join([os.path.relpath(__file__, REPO)] + sys.argv[1:])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="fault_injection-"))
    data = make_data(tmp / "data")
    model = make_model(tmp / "tiny.keras")
    t_start = time.time()
    ref = tmp / "reference"
    proc = run_cli(cli_args(data, ref, model), tmp)
    if proc.returncode != 0:
        sys.exit(f"reference run failed:\n{proc.stderr[-3000:]}")
    ref_w, ref_acc = weights(ref), accuracies(ref)
    ledger = json.loads((ref / "stages.json").read_text())
    seconds = {s: float(e["seconds"]) for s, e in ledger["stages"].items()}
    ref_total = time.time() - t_start
    print(f"reference run: {ref_total:.1f} s; stage seconds {seconds}", flush=True)
    rows, deadline, i = [], t_start + 60 * a.minutes, 0
    while time.time() < deadline and (not a.runs or i < a.runs):
        stage = STAGES[i % len(STAGES)]
        sig = (signal.SIGKILL, signal.SIGINT)[(i + i // len(STAGES)) % 2]
        delay = rng.uniform(0.0, 1.2 * seconds.get(stage, 1.0) + 0.3)
        wd = tmp / f"run{i}"
        problems = []
        rc, sent, err = interrupted_run(cli_args(data, wd, model), tmp, stage, sig, delay)
        last = ([l for l in err.splitlines() if l.strip()] or [""])[-1]
        if sig == signal.SIGINT and sent and rc == 0:
            problems.append("SIGINT ignored (exit 0)")
        if sig == signal.SIGINT and sent and rc != 0:
            if rc != 130:
                problems.append(f"SIGINT exit {rc}")
            if not (last.startswith("interrupted during ") and
                    last.endswith("; rerun the same command to resume")):
                problems.append(f"last line {last[:80]!r}")
            if "Traceback" in err:
                problems.append("traceback")
            if temporaries(wd):
                problems.append(f"temporaries {temporaries(wd)[:2]}")
            if (wd / ".lock").exists():
                problems.append("lock left")
        lost = ledger_problems(wd) if wd.exists() else []
        problems += lost
        problems += [f"unloadable {b}" for b in (unloadable(wd) if wd.exists() else [])]
        killed_in = (last[len("interrupted during "):].split(";")[0]
                     if last.startswith("interrupted during ") else
                     (stage if sent else "-"))
        re = run_cli(cli_args(data, wd, model), tmp)
        if re.returncode != 0:
            problems.append(f"rerun exit {re.returncode}: {re.stderr.strip()[-200:]}")
        else:
            lost2 = ledger_problems(wd)
            lost += lost2
            problems += lost2
            problems += [f"after rerun unloadable {b}" for b in unloadable(wd)]
            if temporaries(wd):
                problems.append(f"after rerun temporaries {temporaries(wd)[:2]}")
            if (wd / ".lock").exists():
                problems.append("after rerun lock left")
            if not same_weights(weights(wd), ref_w):
                problems.append("final models differ from the reference")
            if accuracies(wd) != ref_acc:
                problems.append("report accuracies differ from the reference")
        rows.append({"run": i, "signal": signal.Signals(sig).name, "stage": stage,
                     "delay_s": round(delay, 2), "sent": sent, "exit": rc,
                     "stopped_in": killed_in, "lost": len(lost),
                     "problems": problems})
        print(f"run {i}: {rows[-1]['signal']} at {stage}+{delay:.2f}s exit {rc} "
              f"({killed_in}) -> {'OK' if not problems else problems}", flush=True)
        shutil.rmtree(wd, ignore_errors=True)
        i += 1
    write_results(a.out, command, rows, ref_total, seconds, time.time() - t_start)
    shutil.rmtree(tmp, ignore_errors=True)


def write_results(out, command, rows, ref_total, seconds, wall):
    sent = [r for r in rows if r["sent"]]
    ok = [r for r in rows if not r["problems"]]
    from remotetrimmer_tf.utils.files import write_text_atomic
    from remotetrimmer_tf.utils.provenance import git_commit
    lines = [f"Command: `{command}`", "", f"Commit: `{git_commit()}`", "",
             "# Fault injection: kill the CLI mid-stage, check, rerun", "",
             f"Wall time {wall / 60:.1f} min on this machine (2 CPU cores shared with "
             f"other jobs); reference (uninterrupted) run {ref_total:.1f} s; stage "
             "seconds of the reference: "
             + ", ".join(f"{s} {v:.1f}" for s, v in seconds.items()) + ".", "",
             f"- runs tried: {len(rows)} "
             f"(SIGKILL {sum(r['signal'] == 'SIGKILL' for r in rows)}, "
             f"SIGINT {sum(r['signal'] == 'SIGINT' for r in rows)})",
             f"- signal delivered while the run was still going: {len(sent)} "
             "(otherwise the run had finished first)",
             f"- runs with every check passed (faults survived): {len(ok)} / {len(rows)}",
             f"- artifacts lost (ledger-listed file missing or changed): "
             f"{sum(r['lost'] for r in rows)}",
             f"- reruns whose models equal the reference bitwise: "
             f"{sum(1 for r in rows if not any('differ' in p for p in r['problems']) and not any('rerun exit' in p for p in r['problems']))} / {len(rows)}",
             "", "| run | signal | after stage started | delay s | exit | stopped in | problems |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['signal']} | {r['stage']} | {r['delay_s']} | "
                     f"{r['exit']} | {r['stopped_in']} | "
                     f"{'; '.join(r['problems']) or '-'} |")
    write_text_atomic(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
