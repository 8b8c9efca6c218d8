"""Budget pruning benchmark: ResNet-18 (64x64, 10 classes) pruned to a MACs,
a parameter and a measured LiteRT latency budget.

For each budget it prints the target, the achieved value and the search time;
for the latency budget (float32 and int8, ``--threads``; the default
objective, then every other objective with the cached tables) also the
predicted and measured latency, and the search's noise margin. The
comparison: the published ratio-0.7 widths (19/19/38/76/153,
``Pruner(ratio=0.7)``), the MACs-budget model at the same
MACs (``round_to=16``, global scope) and the latency-budget model at the
measured latency of the published widths (``target_latency_of=published``:
every candidate is timed side by side with the published model): latency,
MACs, speed-up ÷ MAC reduction of each, and ``--head-to-head`` fresh
side-by-side runs of each latency-budget model against the published widths
alone (what a user checking the result would run). The latency model's
prediction error on held-out random width plans (multiples of 16) is
reported too.

Timing: ai_edge_litert interpreter (XNNPACK), batch 1; the final table times
all models interleaved (``--rounds`` rounds ``--gap-s`` apart, each model
``--runs`` invokes per round, rounds alternate between the models, each
re-warmed with 3 invokes at its turn; by default the regime the search
measures its candidates in) and reports the minimum over
rounds of the per-round median: the machine is shared and noisy, and load
only adds time. int8 models are calibrated on random standard-normal inputs
(latency does not depend on the calibration).

Weights: ``--weights model.keras`` (a trained ResNet-18); otherwise a
randomly initialised one (seed 0), whose L1 importance is as good as any for
timing purposes.

Example:

    python tools/bench_budget.py --out tools/results/budget
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def widths(model):
    names = ("stem_conv", "stage1_block1_conv1", "stage2_block1_conv1",
             "stage3_block1_conv1", "stage4_block1_conv1")
    return [int(model.get_layer(n).filters) for n in names]


def all_widths(model):
    return [int(l.filters) for l in model.layers if l.__class__.__name__ == "Conv2D"]


def interleaved(models, threads, dtype, rounds, runs, gap_s):
    """``{name: ms}`` of Keras models or ``.tflite`` bytes, all timed side by side
    (``litert_timing.time_interleaved``)."""
    from remotetrimmer_tf.export.litert_timing import time_interleaved

    names = list(models)
    ms = time_interleaved([models[k] for k in names], threads, dtype, rounds=rounds,
                          runs=runs, gap_s=gap_s)
    return dict(zip(names, ms))


def held_out(model, lm, n_plans, seed, report):
    """Predicted vs measured latency of random width plans (multiples of 16):
    with the latency model calibrated on the measured unpruned model only, and
    as fitted during the search (unpruned + the search's measured results;
    the held-out plans are not among them)."""
    import remotetrimmer_tf as rt
    from remotetrimmer_tf.latency_budget import width_latency

    p = rt.Pruner(model, importance="l1", ratio=0.0)
    p.plan()                                   # scores only
    pl, search = width_latency(p.graph, p.scored_groups, lm, block=16)
    first = (pl.alpha, pl.beta)
    fitted = (report["fit"]["alpha"], report["fit"]["beta"])
    rng = np.random.default_rng(seed)
    out = []
    near = {int(k): int(v) for k, v in report["widths"].items()}
    plans = [("random", {gi: int(rng.choice(c)) for gi, c in search.cands.items()})
             for _ in range(n_plans)]
    for _ in range(n_plans):   # near the budget: the result, each group moved 0-2 steps
        w = {}
        for gi, c in search.cands.items():
            k = c.index(near[gi]) if near.get(gi) in c else len(c) - 1
            w[gi] = c[int(np.clip(k + rng.integers(-2, 3), 0, len(c) - 1))]
        plans.append(("near", w))
    for kind, w in plans:
        pl.alpha, pl.beta = first
        pred = search.predicted(w)
        pl.alpha, pl.beta = fitted
        pred_r = search.predicted(w)
        small = pl.build(search.plan(w))
        meas = lm.model_ms(small)
        out.append({"kind": kind, "widths": widths(small), "macs": rt.count_macs(small),
                    "predicted_ms": pred, "predicted_result_calibrated_ms": pred_r,
                    "measured_ms": meas, "error": pred / meas - 1,
                    "error_result_calibrated": pred_r / meas - 1})
        log(f"  held-out {widths(small)}: predicted {pred:.3f} / {pred_r:.3f} ms "
            f"(unpruned-calibrated / search-fitted), measured {meas:.3f} ms")
    lm.save()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tools/results/budget")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--threads", default="1", help="comma-separated, e.g. 1,2")
    ap.add_argument("--dtypes", default="float32,int8")
    ap.add_argument("--params-budget", type=int, default=1_000_000)
    # the final table in the search's own regime (latency.MODEL_TIMING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from remotetrimmer_tf.latency import MODEL_TIMING
    ap.add_argument("--rounds", type=int, default=MODEL_TIMING["rounds"])
    ap.add_argument("--runs", type=int, default=MODEL_TIMING["runs"])
    ap.add_argument("--gap-s", type=float, default=MODEL_TIMING["gap_s"])
    ap.add_argument("--held-out", type=int, default=3)
    ap.add_argument("--head-to-head", type=int, default=3,
                    help="fresh side-by-side runs of each latency-budget model vs published")
    ap.add_argument("--cache-dir", default=None,
                    help="latency tables (default ~/.cache/remotetrimmer_tf/latency)")
    ap.add_argument("--machine-note", default="")
    args = ap.parse_args(argv)
    import keras

    import remotetrimmer_tf as rt
    from remotetrimmer_tf.export.litert_timing import convert, machine_key
    from remotetrimmer_tf.choices import OBJECTIVES
    from remotetrimmer_tf.latency import LatencyModel

    if args.weights:
        base = keras.saving.load_model(args.weights, compile=False)
        weights_note = f"loaded from {args.weights}"
    else:
        keras.utils.set_random_seed(0)
        base = rt.models.resnet18(10, (64, 64, 3))
        weights_note = "random initialisation (seed 0)"
    rows, budgets = [], []
    published = rt.Pruner(base, importance="l1", ratio=0.7).prune()
    pub_macs = rt.count_macs(published)
    log(f"published ratio 0.7: widths {widths(published)}, MACs {pub_macs:,}")

    # ---- MACs and params budgets
    for kind, target, kw in (("macs", pub_macs, {"round_to": 16, "scope": "global"}),
                             ("macs", pub_macs, {}),
                             ("params", args.params_budget, {})):
        p = rt.Pruner(base, importance="l1", **{f"target_{kind}": target}, **kw)
        t = time.perf_counter()
        small = p.prune()
        total = time.perf_counter() - t
        r = p.budget_report
        got = (rt.count_macs(small) if kind == "macs"
               else rt.count_params(small, trainable_only=True))
        budgets.append({"kind": kind, "options": kw, "target": target,
                        "achieved": got, "under_by": 1 - got / target,
                        "search_s": r["search_s"], "prune_s": total,
                        "evaluations": r["evaluations"], "widths": widths(small)})
        log(f"target_{kind}={target:,} {kw}: achieved {got:,} "
            f"({100 * (1 - got / target):.2f}% under), search {r['search_s']:.2f}s, "
            f"widths {widths(small)}")
        if kind == "macs" and kw:
            macs_model = small

    # ---- latency budgets
    lat = []
    for threads, dtype in [(int(t), d) for t in args.threads.split(",")
                           for d in args.dtypes.split(",")]:
        lm = LatencyModel("litert", threads, dtype, cache_dir=args.cache_dir)
        cached = bool(lm.table)
        # the target: no slower than the published ratio-0.7 widths, every
        # candidate timed side by side with them (the machine drifts)
        p = rt.Pruner(base, importance="l1", target_latency_of=published, latency_model=lm)
        t = time.perf_counter()
        small = p.prune()
        total = time.perf_counter() - t
        r = p.budget_report
        target = r["target"]
        log(f"{dtype}, {threads} thread(s): published ratio-0.7 latency {target:.3f} ms "
            "(the target)")
        log(f"  latency budget: predicted {r['predicted_ms']:.3f} ms, measured "
            f"{r['measured_ms']:.3f} ms, MACs {r['macs']:,}, search {r['search_s']:.1f}s "
            f"({r['layer_measurements']} layer timings, cache was "
            f"{'warm' if cached else 'cold'}), widths {widths(small)}")
        # the same search again, tables from the disk cache: the time a re-run costs
        lm2 = LatencyModel("litert", threads, dtype, cache_dir=args.cache_dir)
        p2 = rt.Pruner(base, importance="l1", target_latency_of=published, latency_model=lm2)
        p2.plan()
        warm = {"search_s": p2.budget_report["search_s"],
                "layer_measurements": p2.budget_report["layer_measurements"],
                "measured_ms": p2.budget_report["measured_ms"]}
        log(f"  again with the cached tables: search {warm['search_s']:.1f}s, "
            f"{warm['layer_measurements']} new layer timings")
        # the other objectives, same tables: the most MACs / importance per group
        others, other_reports = {}, {}
        for objective in [o for o in OBJECTIVES if o != r["objective"]]:
            p3 = rt.Pruner(base, importance="l1", target_latency_of=published,
                           objective=objective, latency_model=lm2)
            others[f"latency_budget_objective_{objective}"] = p3.prune()
            r3 = other_reports[objective] = {k: v for k, v in p3.budget_report.items()
                                             if k != "cache"}
            log(f"  objective={objective}: predicted {r3['predicted_ms']:.3f} ms, measured "
                f"{r3['measured_ms']:.3f} ms, MACs {r3['macs']:,}, search "
                f"{r3['search_s']:.1f}s, "
                f"widths {widths(others[f'latency_budget_objective_{objective}'])}")
        budget_models = {"latency_budget": small, **others}
        ho = held_out(base, lm, args.held_out, 1, r) if args.held_out else []
        models = {"unpruned": base, "published_r0.7": published,
                  "macs_budget_round16": macs_model, **budget_models}
        tflite = {name: convert(m, dtype) for name, m in models.items()}   # converted once
        times = interleaved(tflite, threads, dtype, args.rounds, args.runs, args.gap_s)
        # fresh comparisons, as a user would check the result: each latency-budget
        # model against the published widths alone, side by side, several times
        pairs = {name: [a / b for a, b in (
                     interleaved({"m": tflite[name], "ref": tflite["published_r0.7"]},
                                 threads, dtype, args.rounds, args.runs, args.gap_s).values()
                     for _ in range(args.head_to_head))]
                 for name in budget_models}
        for name, ratios in pairs.items():
            log(f"  {name} / published, head to head: "
                + ", ".join(f"{q:.3f}" for q in ratios))
        full_macs = rt.count_macs(base)
        table = []
        for name, m in models.items():
            macs = rt.count_macs(m)
            speed = times["unpruned"] / times[name]
            table.append({"model": name, "widths": widths(m), "macs": macs,
                          "params": rt.count_params(m, trainable_only=True), "ms": times[name],
                          "speedup": speed, "mac_reduction": full_macs / macs,
                          "speedup_over_mac_reduction": speed / (full_macs / macs)})
            log(f"  {name:22s} {times[name]:.3f} ms  MACs {macs:,}  "
                f"speed-up/MAC-red {speed / (full_macs / macs):.2f}")
        lat.append({"dtype": dtype, "threads": threads, "target_ms": target,
                    "cache_warm": cached, "rerun": warm,
                    "report": {k: v for k, v in r.items() if k != "cache"},
                    "report_objectives": other_reports,
                    "prune_s": total, "held_out": ho, "table": table,
                    "head_to_head": pairs})
    from remotetrimmer_tf.utils.provenance import provenance
    payload = {**provenance(),
               "machine": machine_key("litert", 1, "-"),
               "machine_note": args.machine_note,
               "loadavg": os.getloadavg(), "weights": weights_note,
               "threads": args.threads, "rounds": args.rounds, "runs": args.runs,
               "gap_s": args.gap_s,
               "budgets": budgets, "latency": lat}
    write(args.out, payload)


def markdown(p):
    L = ["# Pruning to a budget: ResNet-18 (64x64, 10 classes)", "", "Command:", "",
         "```", p["command"], "```", "", f"Commit: `{p.get('commit', 'not recorded')}`", "",
         f"- Machine: {p['machine']['cpu']}, ai_edge_litert {p['machine']['runtime_version']}"
         f" ({p['machine_note'] or 'shared machine'}); load average at the end {p['loadavg']}.",
         f"- Weights: {p['weights']}; importance: L1.",
         f"- Timing: LiteRT interpreter (XNNPACK), batch 1, {p['threads']} thread(s); "
         f"final tables time all models interleaved, {p['rounds']} alternating rounds "
         f"({p.get('gap_s', 0)} s apart) of {p['runs']} invokes (each after 3 re-warming "
         "ones), minimum over rounds of the per-round median (shared, noisy "
         "machine: load only adds time). int8 calibrated on random normal inputs.", "",
         "## MACs / parameter budgets", "",
         "| budget | options | target | achieved | under by | search s | widths |",
         "|---|---|---|---|---|---|---|"]
    for b in p["budgets"]:
        L.append(f"| {b['kind']} | {b['options'] or 'local'} | {b['target']:,} | "
                 f"{b['achieved']:,} | {100 * b['under_by']:.2f}% | {b['search_s']:.2f} | "
                 f"{b['widths']} |")
    for lat in p["latency"]:
        r = lat["report"]
        L += ["", f"## Latency budget, {lat['dtype']}, {lat.get('threads', p['threads'])} "
              "thread(s)", "",
              f"- Target: `target_latency_of=` the published ratio-0.7 widths, measured "
              f"{lat['target_ms']:.3f} ms at the start; every candidate was timed side by "
              "side with them and its time rescaled by (start ÷ same-run reference) "
              "(reference per round: " + ", ".join(
                  f"{h['reference_ms']:.3f}" for h in r["history"] if "reference_ms" in h)
              + " ms).",
              f"- Result: predicted {r['predicted_ms']:.3f} ms, measured (in the search) "
              f"{r['measured_ms']:.3f} ms; search {r['search_s']:.1f} s "
              f"({r['layer_measurements']} layer timings; cache "
              f"{'warm' if lat['cache_warm'] else 'cold'}), {r['rounds']} round(s) "
              f"(predicted/measured per round: "
              + ", ".join(f"{h['predicted_ms']:.3f}/{h['measured_ms']:.3f}" for h in r["history"])
              + f"); under the target: {r['met']}.",
              *_margin_lines(r),
              f"- The same search again with the cached tables: {lat['rerun']['search_s']:.1f} s "
              f"({lat['rerun']['layer_measurements']} new layer timings), measured "
              f"{lat['rerun']['measured_ms']:.3f} ms.",
              *[f"- objective=\"{o}\" (cached tables): predicted {q['predicted_ms']:.3f} ms, "
                f"measured {q['measured_ms']:.3f} ms, search {q['search_s']:.1f} s, under the "
                f"target: {q['met']}, under the aim: {q.get('margin_met')}."
                for o, q in (lat.get("report_objectives") or {}).items()], ""]
        if lat["held_out"]:
            f = lat["report"]["fit"]
            L += ["Latency model on held-out random widths (multiples of 16): calibrated on "
                  "the measured unpruned model only / as fitted in the search "
                  f"(alpha {f['alpha']:.3f}, beta {f['beta']:.3g} ms per parameter, "
                  f"{len(f['points'])} measured models):", "",
                  "| plans | widths | MMACs | predicted ms (unpruned-cal.) | error | predicted ms "
                  "(search-fitted) | error | measured ms |", "|---|---|---|---|---|---|---|---|"]
            for h in lat["held_out"]:
                L.append(f"| {h.get('kind', 'random')} | {h['widths']} | {h['macs'] / 1e6:.1f} | "
                         f"{h['predicted_ms']:.3f} | "
                         f"{100 * h['error']:+.1f}% | {h['predicted_result_calibrated_ms']:.3f} | "
                         f"{100 * h['error_result_calibrated']:+.1f}% | {h['measured_ms']:.3f} |")
            L.append("")
            for kind in ("random", "near"):
                errs = [abs(h["error_result_calibrated"]) for h in lat["held_out"]
                        if h.get("kind", "random") == kind]
                if errs:
                    L.append(f"- {kind} plans, search-fitted model: mean |error| "
                             f"{100 * np.mean(errs):.1f}%, max {100 * max(errs):.1f}% "
                             f"({len(errs)} plans).")
            L.append("")
        L += ["| model | widths (stem, s1..s4) | MMACs | params | ms | speed-up | "
              "MAC red. | speed-up ÷ MAC red. |", "|---|---|---|---|---|---|---|---|"]
        for t in lat["table"]:
            L.append(f"| {t['model']} | {t['widths']} | {t['macs'] / 1e6:.2f} | "
                     f"{t['params']:,} | {t['ms']:.3f} | {t['speedup']:.2f}x | "
                     f"{t['mac_reduction']:.2f} | {t['speedup_over_mac_reduction']:.2f} |")
        rows = {t["model"]: t for t in lat["table"]}
        pub = rows["published_r0.7"]
        L += ["", "Against the published ratio-0.7 widths (interleaved medians of this table):", ""]
        for name in [t["model"] for t in lat["table"] if t["model"].startswith("latency_budget")]:
            t = rows[name]
            L.append(f"- {name}: {t['ms'] / pub['ms']:.2f}x its latency (no slower: "
                     f"{t['ms'] <= pub['ms']}), {t['macs'] / pub['macs']:.2f}x its MACs "
                     f"(>= 1.25x: {t['macs'] >= 1.25 * pub['macs']}), speed-up / MAC "
                     f"reduction {t['speedup_over_mac_reduction']:.2f} (>= 0.95: "
                     f"{t['speedup_over_mac_reduction'] >= 0.95}).")
        for name, ratios in (lat.get("head_to_head") or {}).items():
            L.append(f"- {name}, fresh head-to-head runs against the published widths alone "
                     f"(latency ratio): {', '.join(f'{q:.3f}' for q in ratios)}; no slower in "
                     f"{sum(q <= 1 for q in ratios)} of {len(ratios)}.")
    return "\n".join(L)


def _margin_lines(r):
    """How far under the reference the search aimed, and why (its noise probe)."""
    noise = r.get("comparison_noise")
    if r.get("margin") is None:
        return []
    why = ("" if not noise else
           f" (twice the noise of one side-by-side comparison: the reference against itself "
           f"{len(noise['ratios'])} times, ratios "
           + ", ".join(f"{q:.3f}" for q in noise["ratios"])
           + f", σ {100 * noise['sigma']:.2f}%)")
    return [f"- Noise margin: the search aimed {100 * r['margin']:.2f}% under the target, at "
            f"{r['aim_ms']:.4f} ms{why}; result under the aim: {r['margin_met']}."]


def plot(p, path):
    """Latency vs MACs of every model of every latency section (one panel each)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    secs = p["latency"]
    fig, axes = plt.subplots(1, len(secs), figsize=(5.2 * len(secs), 4.2), squeeze=False)
    for ax, lat in zip(axes[0], secs):
        objective = lat["report"].get("objective", "default")
        for k, t in enumerate(lat["table"]):
            ax.scatter(t["macs"] / 1e6, t["ms"], s=36)
            name = (f"lat {objective} (default)" if t["model"] == "latency_budget" else
                    t["model"].replace("latency_budget_objective_", "lat "))
            ax.annotate(name, (t["macs"] / 1e6, t["ms"]), fontsize=7,
                        xytext=(4, 3 - 10 * (k % 3)), textcoords="offset points")
        # the bar: the published widths in this same interleaved table
        pub = [t["ms"] for t in lat["table"] if t["model"] == "published_r0.7"]
        ax.axhline(pub[0] if pub else lat["target_ms"], ls="--", lw=0.8, color="grey")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("MMACs")
        ax.set_ylabel("LiteRT latency, ms (batch 1)")
        ax.set_title(f"ResNet-18 64x64, {lat['dtype']}, {lat.get('threads', 1)} thread(s)",
                     fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def write(out, payload):
    from remotetrimmer_tf.utils.files import write_bytes_atomic

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_bytes_atomic(out + ".json", json.dumps(payload, indent=1).encode())
    write_bytes_atomic(out + ".md", (markdown(payload) + "\n").encode())
    if payload["latency"]:
        import io
        buf = io.BytesIO()
        plot(payload, buf)
        write_bytes_atomic(out + ".png", buf.getvalue())
    log(f"wrote {out}.json and {out}.md")


if __name__ == "__main__":
    main()
