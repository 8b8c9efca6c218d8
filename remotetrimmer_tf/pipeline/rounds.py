"""`--config.prune.rounds=k`: the prune stage prunes in k rounds.

The schedule is the library's (`remotetrimmer_tf.iterative`): a one-shot
plan of model_folded.keras says where every schedule ends (`schedule_of`:
its trainable-parameter count, or the MACs / params target), round i removes
the linear schedule's share (`round_widths`), and `finetune.epochs` is the
TOTAL over the rounds (`epoch_shares`). The prune stage runs rounds 1..k-1:

    prune -> BN recalibration (recalibrate.steps) -> fine-tune its share
    (the finetune recipe: AML, KD from model_trained.keras when
    finetune.distill_weight > 0; `training.fit` settles BN every epoch)

each kept in `rounds/round_<i>/`: model_pruned.keras, model_recalibrated.keras
(steps > 0), model_finetuned.keras, kept.json (kept channels as indices of
model_folded.keras) and round.json, written last. It then prunes round k into
model_pruned.keras; the recalibrate and finetune stages are round k.

Resumable per round: round.json records the prune stage's key (its config
and everything upstream) and the sha256 of the round's input and output
models, and outlives a failure of the stage (untracked atomic writes). A rerun
skips every round whose round.json still matches and resumes at the first that
does not; that round and the later ones found on disk are moved to
superseded/ first.
"""
import copy
import time
from typing import Callable, NamedTuple

from remotetrimmer_tf.iterative import epoch_shares, final_widths, schedule_of

__all__ = ["Steps", "rounds_of", "finetune_section", "prune_in_rounds", "compose_kept",
           "ROUNDS_DIR"]

ROUNDS_DIR = "rounds"
_MODELS = ("model_pruned.keras", "model_recalibrated.keras", "model_finetuned.keras")


class Steps(NamedTuple):
    """What a round does, given by the stages.

    prune: ``fn(model, widths) -> (pruned, pruner, kept.json dict)``.
    recalibrate: ``fn(run, model) -> model`` with re-estimated BN statistics.
    fit: ``fn(run, model, section, stage, teacher=, key=) -> history summary``.
    """

    prune: Callable
    recalibrate: Callable
    fit: Callable


def rounds_of(cfg):
    """`prune.rounds` (1 for a config without the field)."""
    return int(cfg.prune.get("rounds", 1) or 1)


def finetune_section(cfg, index):
    """The finetune recipe of round `index` (1-based): `cfg.finetune` itself
    for one round, else a copy with that round's share of `finetune.epochs`."""
    k = rounds_of(cfg)
    if k <= 1:
        return cfg.finetune
    section = copy.deepcopy(cfg.finetune)
    section.epochs = epoch_shares(int(cfg.finetune.epochs), k)[index - 1]
    return section


def folder(index):
    """`rounds/round_<index>`."""
    return f"{ROUNDS_DIR}/round_{index}"


def prune_in_rounds(run, folded, widths, steps):
    """Rounds 1..k-1 (finished ones read back) and the prune of round k.

    Args:
      run: the `Run`.
      folded: model_folded.keras, loaded.
      widths: the prune config's `Pruner` width arguments (ratio or target).
      steps: `Steps`.

    Returns:
      `(pruned, pruner, kept, artifacts, info)`: round k's model and Pruner,
      kept.json relative to model_folded.keras, the files of the rounds and
      `{"rounds": [...], "schedule": {...}}` for the ledger.
    """
    k = rounds_of(run.cfg)
    one_shot, pruner, _ = steps.prune(folded, widths)
    try:
        schedule = schedule_of(pruner, one_shot, k)
    except ValueError as e:   # refused by validate_config already
        from remotetrimmer_tf.pipeline.workdir import PipelineError
        raise PipelineError(f"--config.prune.rounds={k}: {e}") from None
    del one_shot
    started = pruner.budget_report     # a target: the one-shot search's range
    source, kept, records, artifacts = "model_folded.keras", {}, [], []
    for i in range(1, k):
        record = _finished(run, i, source)
        if record is None:
            _supersede_from(run, i, k)
            record = _run_round(run, i, source, schedule[i - 1], kept, steps)
        source = f"{folder(i)}/model_finetuned.keras"
        kept = run.wd.read_json(f"{folder(i)}/kept.json")
        records.append(record)
        artifacts += [f"{folder(i)}/{n}" for n in _files(run, i)]
    current = run.load_model(source)
    pruned, pruner, last = steps.prune(current, final_widths(current, schedule[-1]))
    kept = compose_kept(kept, last)
    # its accuracies are the prune / finetune stages' (the report fills them in)
    records.append(dict(_describe(run, k, pruned, kept), accuracy=None,
                        epochs=int(finetune_section(run.cfg, k).epochs)))
    info = {"rounds": records,
            "schedule": {"rounds": k, "widths": schedule,
                         "epochs": epoch_shares(int(run.cfg.finetune.epochs), k)}}
    if started and pruner.budget_report:   # "unpruned": model_folded's, not round k-1's
        info["budget"] = dict(pruner.budget_report, unpruned=started["unpruned"],
                              min_reachable=started["min_reachable"], rounds=k)
    return pruned, pruner, kept, artifacts, info


def _run_round(run, i, source, widths, kept_before, steps):
    """Round `i` from the model file `source`: prune, recalibrate,
    fine-tune; its files written atomically, round.json last."""
    where = folder(i)
    model = run.load_model(source)
    pruned, _, kept = steps.prune(model, widths)
    kept = compose_kept(kept_before, kept)
    run.save_model(pruned, f"{where}/model_pruned.keras", track=False)
    accuracy_pruned = run.accuracy(pruned).get("accuracy")
    model = steps.recalibrate(run, pruned)
    accuracy_input = accuracy_pruned   # what the round's fine-tune starts from
    if model is not pruned:
        run.save_model(model, f"{where}/model_recalibrated.keras", track=False)
        accuracy_input = run.accuracy(model).get("accuracy")
    section = finetune_section(run.cfg, i)
    teacher = (run.load_model("model_trained.keras")
               if float(section.get("distill_weight", 0.0)) > 0 else None)
    t0 = time.time()
    history = steps.fit(run, model, section, f"prune/round_{i}", teacher=teacher,
                        key=run.keys.get("prune", ""))
    seconds = round(time.time() - t0, 2)
    run.save_model(model, f"{where}/model_finetuned.keras", track=False)
    run.wd.write_json(f"{where}/kept.json", kept, track=False)
    record = dict(_describe(run, i, model, kept), accuracy_pruned=accuracy_pruned,
                  accuracy_recalibrated=accuracy_input,
                  accuracy=run.accuracy(model).get("accuracy"), epochs=int(section.epochs),
                  finetune_seconds=seconds, history=history)
    run.wd.write_json(f"{where}/round.json", dict(
        record, key=run.keys.get("prune", ""), input={source: run.wd.digest(source)},
        sha256={n: run.wd.digest(f"{where}/{n}") for n in _files(run, i, models_only=True)}),
        track=False)
    return record


def _describe(run, i, model, kept):
    """What the report shows of round `i`'s model."""
    from remotetrimmer_tf.cost import count_macs, count_params
    from remotetrimmer_tf.pipeline.report import layer_widths
    size = sum(v["size"] for v in kept.values())
    left = sum(len(v["kept"]) for v in kept.values())
    return {"round": i, "rounds": rounds_of(run.cfg),
            # share of the pruned groups' channels removed so far (of model_folded)
            "ratio": round(1.0 - left / size, 6) if size else 0.0,
            "widths": layer_widths(model),
            "params": int(count_params(model, trainable_only=True)),
            "macs": int(count_macs(model))}


def _files(run, i, models_only=False):
    """The files of finished round `i` (round.json last)."""
    names = [n for n in _MODELS if run.wd.exists(f"{folder(i)}/{n}")]
    return names if models_only else names + ["kept.json", "round.json"]


def _finished(run, i, source):
    """Round `i`'s record when its round.json matches this config (stage
    key), its input `source` and its own models (sha256); else None."""
    path = f"{folder(i)}/round.json"
    if not run.wd.exists(path):
        return None
    try:
        saved = run.wd.read_json(path)
    except ValueError:
        return None
    if saved.get("key") != run.keys.get("prune", "") or not run.wd.exists(source) \
            or saved.get("input") != {source: run.wd.digest(source)}:
        return None
    for name, digest in (saved.get("sha256") or {}).items():
        rel = f"{folder(i)}/{name}"
        if not run.wd.exists(rel) or run.wd.digest(rel) != digest:
            return None
    if "model_finetuned.keras" not in (saved.get("sha256") or {}):
        return None
    return {k: v for k, v in saved.items() if k not in ("key", "input", "sha256")}


def _supersede_from(run, i, k):
    """Finished rounds from `i` on (round.json present) are stale: moved to
    superseded/ (never deleted) so none is read as this config's."""
    for j in range(i, k):
        if run.wd.exists(f"{folder(j)}/round.json"):
            run.wd.supersede(folder(j))


def compose_kept(earlier, later):
    """kept.json of two pruning steps as indices of the first step's input.

    Args:
      earlier: kept.json of the earlier steps (indices of the original model),
        `{group: {"size", "kept", "layers"}}`; `{}` for none.
      later: kept.json of the next step (indices of the earlier result).

    Returns:
      kept.json relative to the original model; groups are matched by their
      layers (a group's number may change between models).

    Example:
      >>> a = {"0": {"size": 8, "kept": [1, 3, 5, 7], "layers": ["c1"]}}
      >>> b = {"0": {"size": 4, "kept": [0, 2], "layers": ["c1"]}}
      >>> compose_kept(a, b)["0"]["kept"], compose_kept(a, b)["0"]["size"]
      ([1, 5], 8)
    """
    by_layers = {tuple(v["layers"]): (gi, v) for gi, v in earlier.items()}
    out = {}
    for gi, v in later.items():
        hit = by_layers.pop(tuple(v["layers"]), None)
        if hit is None:     # not pruned before
            out[gi] = dict(v)
            continue
        first, before = hit
        out[first] = {"size": before["size"], "kept": [before["kept"][j] for j in v["kept"]],
                      "layers": list(v["layers"])}
    for first, before in by_layers.values():   # pruned before, untouched now
        out.setdefault(first, dict(before))
    return dict(sorted(out.items(), key=lambda kv: _group_number(kv[0])))


def _group_number(key):
    return (int(key), "") if str(key).isdigit() else (0, str(key))
