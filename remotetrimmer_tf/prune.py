"""Command line: `python -m remotetrimmer_tf.prune` (console script `remotetrimmer`).

Runs the RemoteTrimmer pipeline over a run folder: train (or load
`--init_model`) -> collect SE attention -> fold it into BN -> prune ->
recalibrate BN -> fine-tune with the Adaptive Mining Loss -> evaluate ->
export LiteRT -> report. Every stage writes its artifact into `--workdir`
(atomically) and records itself in `stages.json`; a rerun resumes after the
last finished stage. The run ends with a table (params, MACs, accuracy, file
sizes) and `report.json` / `report.md` / `widths.png`.

With no flags it runs the embedded demo (`configs/demo.py`): the trained
SE-ResNet-18 shipped in the package, pruned at ratio 0.7 and fine-tuned on
the package's class-balanced EuroSAT sample, into a fresh
`./runs/<UTC timestamp>/`. A command line that names your own data
(`--config.data.*`), model (`--config.model.*`) or `--init_model` without a
`--config` starts from `configs/demo_scratch.py` instead (train from
scratch): the shipped weights fit only the sample.

Examples:
  python -m remotetrimmer_tf.prune
  python -m remotetrimmer_tf.prune --config=configs/eurosat_resnet18_modern.py \\
      --config.data.data_dir=/data/eurosat --workdir=runs/modern
  python -m remotetrimmer_tf.prune --init_model=my.keras \\
      --config.prune.ratio=0.5 --workdir=runs/r05
  # rerun the same command to resume; --stages limits what runs:
  python -m remotetrimmer_tf.prune --init_model=my.keras \\
      --config.prune.ratio=0.5 --workdir=runs/r05 --stages=export,report

Every input (config, data folder and images, --init_model, --strategy) is
checked before any file of the run folder changes; stages that rerun have
their old results moved to RUN/superseded/<timestamp>/, never deleted. Bad
input (unknown config field, missing/corrupt --init_model, an unreadable
image, a busy or non-writable --workdir, ratio outside [0, 1), a full disk,
...) exits with status 2 and one line naming the flag or file and the fix;
Ctrl-C / SIGTERM exit 130 / 143 with "interrupted during STAGE; rerun the
same command to resume". `--force=STAGE` reruns a finished stage.
"""
import difflib
import functools
import importlib.util
import os
import re
import sys

from absl import app, flags

from remotetrimmer_tf.pipeline import PipelineError, config_dir

EXIT_BAD_INPUT = 2
STRATEGIES = ("default", "mirrored", "multi_worker", "data_parallel", "tpu")


# ------------------------------------------------------------------ configs
def default_config_path(argv=()):
    """Path of the embedded default config, or "" if the configs folder is
    missing (the error is raised when it is needed).

    `configs/demo.py` (prune the shipped model on the embedded sample) unless
    the command line names the user's own data, model or `--init_model`:
    the shipped weights fit only the sample's 64x64 RGB EuroSAT classes, so
    those runs start from `configs/demo_scratch.py` (train from scratch).
    """
    name = "demo_scratch.py" if _names_own_inputs(argv) else "demo.py"
    try:
        return str(config_dir() / name)
    except PipelineError:
        return ""


def _names_own_inputs(argv):
    """Whether `argv` sets a `--config.data.*` / `--config.model.*` field or
    `--init_model`."""
    own = any(f.split(".", 1)[0] in ("data", "model") for f in given_fields(argv))
    return own or _flag_value(argv, "init_model") is not None


def load_config_file(spec):
    """Loads `path[:arg]` like `ml_collections.config_flags` does.

    Raises:
      PipelineError: missing file, no `get_config`, or an error inside it.
    """
    path, _, arg = str(spec).partition(":")
    if not path:
        config_dir()   # raises the "configs/ not found" error
    if not os.path.isfile(path):
        raise PipelineError(
            f"--config={path}: no such config file; pass --config=<a config "
            f".py>, e.g. {default_config_path() or 'configs/demo.py'}")
    if not path.endswith(".py"):
        raise PipelineError(
            f"--config={path} is not a config file (a Python .py file with a "
            f"get_config() function); pass e.g. "
            f"--config={default_config_path() or 'configs/demo.py'}")
    try:
        module_spec = importlib.util.spec_from_file_location(
            "remotetrimmer_precheck_config", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        get_config = getattr(module, "get_config", None)
        if get_config is None:
            raise PipelineError(f"--config={path} has no get_config() function; "
                                "pass a config file like configs/demo.py")
        cfg = get_config(*([arg] if arg else []))
        if not (hasattr(cfg, "to_dict") and hasattr(cfg, "lock")):
            raise PipelineError(
                f"--config={path}: get_config() returned a "
                f"{type(cfg).__name__}, not an ml_collections ConfigDict; "
                "build it on configs/base.py (see configs/demo.py)")
        return cfg
    except PipelineError:
        raise
    except Exception as e:  # noqa: BLE001 - user code: report it in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise PipelineError(
            f"--config={path} failed to load ({type(e).__name__}: {msg}); "
            "fix the config file") from None


def _field_paths(cfg, prefix=""):
    out = []
    for key in cfg.keys():
        value = cfg[key]
        path = f"{prefix}{key}"
        out.append(path)
        if hasattr(value, "keys") and hasattr(value, "items"):
            out += _field_paths(value, path + ".")
    return out


_OVERRIDE = re.compile(r"^--?(no)?config\.([^=]+)")


def check_overrides(argv, cfg):
    """Every `--config.a.b=v` must name an existing field (the config is
    locked); raises PipelineError with a did-you-mean suggestion otherwise."""
    known = set(_field_paths(cfg))
    for arg in argv[1:]:
        if arg == "--":
            break
        m = _OVERRIDE.match(arg)
        if not m:
            continue
        path = m.group(2)
        if path in known:
            continue
        close = difflib.get_close_matches(path, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean --config.{close[0]}? " if close else ""
        raise PipelineError(
            f"--config.{path}: unknown config field; {hint}the fields are "
            f"listed in configs/base.py")


def given_fields(argv):
    """The config fields set on the command line (`--config.prune.ratio=...`
    -> `"prune.ratio"`): a ratio given there conflicts with a budget."""
    out = set()
    for arg in argv[1:]:
        if arg == "--":
            break
        m = _OVERRIDE.match(arg)
        if m:
            out.add(m.group(2))
    return frozenset(out)


def _flag_value(argv, name):
    """The value of `--name` (`--name=v` or `--name v`) on the command line,
    or None when it is not given."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            break
        m = re.match(rf"^--?{name}(=(.*))?$", arg)
        if m:
            if m.group(1) is not None:
                return m.group(2)
            return argv[i + 1] if i + 1 < len(argv) else ""
    return None


# -------------------------------------------------------------------- flags
def define_flags(argv, flag_values=None):
    """Defines the CLI flags (once per process).

    The config file is loaded and the `--config.*` overrides are checked
    first, so a bad config gives one clear line instead of a traceback.
    """
    from ml_collections import config_flags
    fv = flags.FLAGS if flag_values is None else flag_values
    spec = _flag_value(argv, "config")
    default = default_config_path(argv)
    cfg = load_config_file(spec if spec is not None else default)
    check_overrides(argv, cfg)
    if "workdir" in fv:
        return fv
    config_flags.DEFINE_config_file(
        "config", default=default,
        help_string="ml_collections config file (default: the embedded demo, "
        "configs/demo.py, or configs/demo_scratch.py when --config.data.*, "
        "--config.model.* or --init_model name your own inputs); override any "
        "field as --config.section.field=value",
        flag_values=fv, sys_argv=list(argv))
    flags.DEFINE_string(
        "workdir", None, "run folder (default: a fresh ./runs/<UTC timestamp>); "
        "a folder with a stages.json is resumed", flag_values=fv)
    flags.DEFINE_string(
        "init_model", None, "a .keras model to start from instead of training "
        "(only read; copied into the run folder)", flag_values=fv)
    flags.DEFINE_enum("strategy", "default", STRATEGIES,
                      "distribution strategy for training: mirrored (all "
                      "devices of this machine, TF), data_parallel (all local "
                      "devices, JAX), multi_worker (several machines: TF_CONFIG "
                      "or Slurm on TF, KERAS_DISTRIBUTION_* on JAX; every "
                      "worker runs the same command), tpu", flag_values=fv)
    flags.DEFINE_string(
        "stages", "all", "comma-separated stages to run (train, attention, "
        "fold, prune, recalibrate, finetune, evaluate, export, report); the "
        "earlier ones must have finished in --workdir", flag_values=fv)
    flags.DEFINE_bool(
        "resume", False, "continue a --workdir whose run used a different "
        "config: the stages whose inputs changed are rerun", flag_values=fv)
    flags.DEFINE_string(
        "force", None, "comma-separated stages to rerun even if they finished "
        "(the stages after them rerun too), or 'all'", flag_values=fv)
    flags.DEFINE_integer(
        "verbose", None, "Keras training verbosity (0 silent, 1 progress bar, "
        "2 one line per epoch); 1 or 2 also shows TensorFlow's own log lines. "
        "Default: a progress bar on a terminal, else one line per epoch, with "
        "TensorFlow's start-up noise hidden", lower_bound=0, upper_bound=2,
        flag_values=fv)
    flags.DEFINE_string(
        "custom_objects", None, "a Python module (module.path) imported before "
        "any model is loaded: your Keras layers and surgeon handlers",
        flag_values=fv)
    return fv


def _one_line(text):
    lines = [l.strip() for l in str(text).strip().splitlines() if l.strip()]
    return lines[-1] if lines else str(text)


def _die(message, code=EXIT_BAD_INPUT):
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _exit_now(code):
    """Exits at once with `code`: no traceback and no interpreter teardown
    (TensorFlow's threads can print noise or hang while exiting after a
    signal). Every file is already closed or renamed by then."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _parse_flags(argv):
    """absl flags parser that reports a bad flag in one line (exit 2)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        text = str(e)
        if "Error whilst parsing config file" in text:
            text = _one_line(text)
        _die(f"{_one_line(text)}; see --helpfull for the flags")
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        _die(f"bad --config override ({_one_line(e)}); see configs/base.py")


# --------------------------------------------------------------------- main
def main(argv, given=frozenset()):
    """Runs the pipeline with the parsed flags; returns the exit status.

    ``given``: the config fields set on the command line (:func:`given_fields`).
    """
    from remotetrimmer_tf.pipeline import run_pipeline
    from remotetrimmer_tf.pipeline.report import format_table
    from absl import logging
    FLAGS = flags.FLAGS
    if "verbosity" in FLAGS and not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)   # quiet TF's INFO lines
    if len(argv) > 1:
        _die(f"unexpected argument(s) {' '.join(argv[1:])}; flags take the "
             "form --name=value (see --helpfull)")
    cfg = FLAGS.config
    try:
        cfg.get("name")   # an unloadable config raises here
    except IOError as e:
        _die(f"--config: {_one_line(e)}")
    from remotetrimmer_tf.pipeline.interrupt import Interrupted
    try:
        # fast checks first, then TF quiet, custom objects
        from remotetrimmer_tf.pipeline import quiet, user_model, validate_config
        validate_config(cfg, FLAGS.init_model, given=given)
        verbose = FLAGS.verbose
        if verbose is None or verbose < 1:
            quiet.silence()
        if verbose is None:
            verbose = quiet.progress_verbosity()
        user_model.import_custom_objects(FLAGS.custom_objects)
        summary = run_pipeline(
            cfg, workdir=FLAGS.workdir, init_model=FLAGS.init_model,
            strategy=FLAGS.strategy, stages=FLAGS.stages, resume=FLAGS.resume,
            verbose=verbose, force=FLAGS.force)
    except PipelineError as e:
        _die(str(e), getattr(e, "exit_code", EXIT_BAD_INPUT))
    except Interrupted as e:
        print(f"interrupted during {e.stage or 'startup'}; rerun the same "
              "command to resume", file=sys.stderr, flush=True)
        _exit_now(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume",
              file=sys.stderr, flush=True)
        _exit_now(130)
    if summary.get("worker"):   # a non-chief worker of --strategy=multi_worker
        print(f"{summary['worker']}: finished; the chief wrote the run folder")
        return 0
    report = summary.get("report")
    print()
    if report:
        print(format_table(report))
        print()
    print(f"run folder: {summary['workdir']}")
    if summary.get("ran") or summary.get("skipped"):
        print(f"stages run: {', '.join(summary['ran']) or '-'}; "
              f"already finished: {', '.join(summary['skipped']) or '-'}")
    return 0


def run(argv=None):
    """Console entry point (`remotetrimmer`) and `python -m` entry."""
    argv = list(sys.argv if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        define_flags(argv)
    except PipelineError as e:
        _die(str(e))
    app.run(functools.partial(main, given=given_fields(argv)), argv=argv,
            flags_parser=_parse_flags)


if __name__ == "__main__":
    run()
