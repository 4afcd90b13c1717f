"""The LeNet run beside Frankle & Carbin's claims: a table over its trials.

    python -m examples.paper_claims --run_dir docs/reproduction/lenet_paper_budget

Reads a lenet.py run (`results.json`, or while the run goes on the finished
trials: every `trial<t>/<arm>.json` of a trial whose arms are all done) and
writes `claims.md` and `claims.json` beside it: per claim, the figure over the
trials as mean ± std [min, max], with each trial's value in the JSON. A
density of the paper is matched to the run's nearest round, whose density is
shown.
"""

import glob
import json
import os

from absl import app
from absl import flags

from examples import common

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", "runs/lenet", "Output directory of a lenet.py run.")

EARLY_STOP_DENSITIES = (0.513, 0.211, 0.070, 0.036)
ACCURACY_DENSITIES = (0.135, 0.036)
SPEED_DENSITY = 0.211


def finished_rows(run_dir):
    """The run's rows: `results.json` if the run finished, else the rows of
    every trial whose arms (config.json's) are all written.

    Example:
    >>> import tempfile
    >>> finished_rows(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    FileNotFoundError: ... holds no results.json and no config.json
    """
    path = os.path.join(run_dir, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{run_dir} holds no results.json and no config.json")
    with open(config_path) as f:
        arms = ["ticket"] + list(json.load(f)["controls"])
    rows = []
    for trial_dir in sorted(glob.glob(os.path.join(run_dir, "trial*"))):
        files = [os.path.join(trial_dir, f"{arm}.json") for arm in arms]
        if all(os.path.exists(p) for p in files):
            for p in files:
                with open(p) as f:
                    rows += json.load(f)["rows"]
    return rows


def _at(rows, arm, density):
    """Per trial, the row of `arm` at the round nearest `density`."""
    by_trial = {}
    for row in rows:
        if row["arm"] == arm:
            by_trial.setdefault(row["trial"], []).append(row)
    return {t: min(rs, key=lambda r: abs(r["density"] - density)) for t, rs in sorted(by_trial.items())}


def claims(rows):
    """The paper's LeNet claims, measured over the trials of `rows`.

    Example:
    >>> rows = [dict(trial=0, arm=a, round=r, density=d, early_stop_iteration=i,
    ...              test_accuracy_early_stop=acc)
    ...         for a, r, d, i, acc in [("ticket", 0, 1.0, 8000, 0.89), ("ticket", 1, 0.21, 4000, 0.90),
    ...                                 ("reinit", 0, 1.0, 8000, 0.89), ("reinit", 1, 0.21, 9000, 0.88)]]
    >>> [(c["claim"], round(c["ratio"]["mean"], 2)) for c in claims(rows) if "speed" in c["claim"]]
    [('ticket speed against reinit at 21.1%: reinit early-stop iteration / ticket', 2.25)]
    """
    trials = sorted({row["trial"] for row in rows})
    if not trials:
        raise ValueError("no finished trial: every arm of a trial must be done")
    dense = _at(rows, "ticket", 1.0)
    out = []
    for density in EARLY_STOP_DENSITIES:
        ticket = _at(rows, "ticket", density)
        out.append({
            "claim": f"early-stop iteration at {100 * density:.1f}%: ticket / dense",
            "density": common.summary([ticket[t]["density"] for t in trials]),
            "ticket": common.summary([ticket[t]["early_stop_iteration"] for t in trials]),
            "dense": common.summary([dense[t]["early_stop_iteration"] for t in trials]),
            "ratio": common.summary([ticket[t]["early_stop_iteration"] / dense[t]["early_stop_iteration"]
                               for t in trials]),
        })
    for density in ACCURACY_DENSITIES:
        ticket = _at(rows, "ticket", density)
        out.append({
            "claim": f"test accuracy at {100 * density:.1f}% (at early stop): ticket - dense, points",
            "density": common.summary([ticket[t]["density"] for t in trials]),
            "ticket": common.summary([100 * ticket[t]["test_accuracy_early_stop"] for t in trials]),
            "dense": common.summary([100 * dense[t]["test_accuracy_early_stop"] for t in trials]),
            "difference": common.summary([100 * (ticket[t]["test_accuracy_early_stop"]
                                           - dense[t]["test_accuracy_early_stop"]) for t in trials]),
        })
    if any(row["arm"] == "reinit" for row in rows):
        reinit = [row for row in rows if row["arm"] == "reinit"]
        below = []
        for t in trials:
            under = [r["density"] for r in reinit if r["trial"] == t
                     and r["test_accuracy_early_stop"] < dense[t]["test_accuracy_early_stop"]]
            below.append(max(under) if under else float("nan"))
        out.append({"claim": "highest density at which reinit's test accuracy falls below dense's",
                    "density": common.summary(below)})
        # The first crossing is one noisy round; from where on does it stay below?
        stays = []
        for t in trials:
            runs = sorted((r["density"], r["test_accuracy_early_stop"]
                           < dense[t]["test_accuracy_early_stop"])
                          for r in reinit if r["trial"] == t and not r.get("shared"))
            held = [d for i, (d, _) in enumerate(runs) if all(b for _, b in runs[:i + 1])]
            stays.append(max(held) if held else float("nan"))
        out.append({"claim": "highest density from which reinit stays below dense at every "
                             "sparser round", "density": common.summary(stays)})
        ticket, again = _at(rows, "ticket", SPEED_DENSITY), _at(rows, "reinit", SPEED_DENSITY)
        out.append({
            "claim": f"ticket speed against reinit at {100 * SPEED_DENSITY:.1f}%: "
                     "reinit early-stop iteration / ticket",
            "density": common.summary([ticket[t]["density"] for t in trials]),
            "ticket": common.summary([ticket[t]["early_stop_iteration"] for t in trials]),
            "reinit": common.summary([again[t]["early_stop_iteration"] for t in trials]),
            "ratio": common.summary([again[t]["early_stop_iteration"] / ticket[t]["early_stop_iteration"]
                               for t in trials]),
        })
    return out


def _cell(summary, digits):
    if summary is None:
        return "-"
    f = f"{{:.{digits}f}}"
    return (f"{f.format(summary['mean'])} ± {f.format(summary['std'])} "
            f"[{f.format(summary['min'])}, {f.format(summary['max'])}]")


def markdown(found, trials):
    """The claims as a markdown table (mean ± std [min, max] over `trials`)."""
    lines = [f"Over {trials} trial{'s' if trials != 1 else ''}: mean ± std [min, max].", "",
             "| claim | % remaining (run) | ticket | dense / reinit | ratio or difference |",
             "|---|---|---|---|---|"]
    for c in found:
        digits = 0 if "iteration" in c["claim"] else 2
        other = c.get("dense") or c.get("reinit")
        measure = c.get("ratio") or c.get("difference")
        lines.append("| " + " | ".join([
            c["claim"],
            _cell({k: 100 * v if k != "values" else v for k, v in c["density"].items()}, 1),
            _cell(c.get("ticket"), digits), _cell(other, digits), _cell(measure, 2)]) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    rows = finished_rows(FLAGS.run_dir)
    found = claims(rows)
    trials = len({row["trial"] for row in rows})
    text = markdown(found, trials)
    with open(os.path.join(FLAGS.run_dir, "claims.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(FLAGS.run_dir, "claims.json"), "w") as f:
        json.dump({"command": f"python -m examples.paper_claims --run_dir={FLAGS.run_dir}",
                   "trials": trials, "claims": found}, f, indent=1)
    print(text)


if __name__ == "__main__":
    app.run(main)
