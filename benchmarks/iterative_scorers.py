"""Benchmark: IMP with other scorers on LeNet-300-100 (issue 25, step 3).

`IterativeMagnitudePruning(scorer=...)` ranks each round's trained weights by
the scorer instead of their magnitude, then rewinds the survivors to θ0 as
usual: iterative SNIP and iterative SynFlow fall out of the same loop. For
each seed, every scorer starts from the same θ0 and the same data order;
the test accuracy of every round's trained network is recorded.

    python -m benchmarks.iterative_scorers --seeds=0,1,2

Writes one row per (scorer, seed, round) and, per scorer and round, the mean,
std, min and max over the seeds (`summary`); `--table=<results.json>` prints
the markdown table of docs/METHODS.md from a results file.
"""

import json
import sys
import time


import numpy as np
from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset=harness.FASHION_MNIST, output="iterative_scorers.json")
flags.DEFINE_list("scorers", ["magnitude", "snip", "synflow", "random"], "IMP scorers.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (θ0 and data order).")
flags.DEFINE_integer("rounds", 6, "IMP rounds, the dense round 0 included.", lower_bound=2)
flags.DEFINE_float("rate", 0.5, "Per-round pruning rate (output layer at half).")
flags.DEFINE_integer("epochs_per_round", 1, "Epochs per round.", lower_bound=1)
flags.DEFINE_integer("score_batches", 4, "Batches of 128 SNIP scores on.", lower_bound=1)
flags.DEFINE_string("table", None, "Print the markdown table of this results file and exit.")


def _scorer(name, batches):
    import keras_lottery as kl

    return kl.scorers.Snip(data=batches) if name == "snip" else name


def _run(name, seed, data, batches):
    import keras
    from examples import common
    from examples import models
    import keras_lottery as kl

    (x, y), val, test = data
    keras.utils.set_random_seed(seed)
    model = common.compile_lenet(kl.wrap(models.lenet_300_100(x.shape[1:])))
    rows = []

    def record(round_index, trained, row):
        predictions = trained.predict(test[0], batch_size=1000, verbose=0)
        rows.append({"scorer": name, "seed": seed, "round": round_index,
                     "density": round(row["density"], 5),
                     "test_accuracy": round(common.accuracy(predictions, test[1]), 5)})

    imp = kl.IterativeMagnitudePruning(
        rounds=FLAGS.rounds, epochs_per_round=FLAGS.epochs_per_round, rate=FLAGS.rate,
        scorer=_scorer(name, batches), seed=seed, on_round_end=record, verbose=0)
    keras.utils.set_random_seed(seed + 100)  # the same data order for every scorer
    model.fit(x, y, batch_size=60, epochs=imp.total_epochs, validation_data=val,
              callbacks=[imp], verbose=0)
    return rows


def summarize(rows):
    """`[{scorer, round, density, mean, std, min, max, seeds}]` over seeds.

    Example:
    >>> summarize([{"scorer": "a", "seed": 0, "round": 1, "density": 0.5, "test_accuracy": 0.8},
    ...            {"scorer": "a", "seed": 1, "round": 1, "density": 0.5, "test_accuracy": 0.9}])[0]["mean"]
    0.85
    """
    out = []
    keys = sorted({(r["scorer"], r["round"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for scorer, round_index in keys:
        chosen = [r for r in rows if r["scorer"] == scorer and r["round"] == round_index]
        values = np.array([r["test_accuracy"] for r in chosen])
        out.append({"scorer": scorer, "round": round_index,
                    "density": float(np.mean([r["density"] for r in chosen])),
                    "mean": round(float(values.mean()), 5), "std": round(float(values.std()), 5),
                    "min": float(values.min()), "max": float(values.max()),
                    "seeds": len(chosen)})
    return out


def table(result):
    """The markdown table of a results dict: one row per round, one column
    per scorer, test accuracy in % as mean ± std [min, max]."""
    summary = result["summary"]
    scorers = list(dict.fromkeys(s["scorer"] for s in summary))
    rounds = sorted({s["round"] for s in summary})
    lines = ["| round | % weights | " + " | ".join(scorers) + " |",
             "|---|---|" + "---|" * len(scorers)]
    for r in rounds:
        cells = {s["scorer"]: s for s in summary if s["round"] == r}
        density = 100 * cells[scorers[0]]["density"]
        lines.append(f"| {r} | {density:.1f} | " + " | ".join(
            f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f} [{100 * c['min']:.2f}, "
            f"{100 * c['max']:.2f}]" for c in (cells[s] for s in scorers)) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.table:
        with open(FLAGS.table) as f:
            print(table(json.load(f)))
        return
    from examples import run_config
    from examples import common
    from keras_lottery.files import file_io

    data = common.load_dataset(FLAGS.dataset, seed=0)
    (x, y), _, _ = data
    batches = [(x[i * 128:(i + 1) * 128], y[i * 128:(i + 1) * 128])
               for i in range(FLAGS.score_batches)]
    rows, seconds = [], {}
    for seed in (int(s) for s in FLAGS.seeds):
        for name in FLAGS.scorers:
            started = time.perf_counter()
            rows += _run(name, seed, data, batches)
            seconds.setdefault(name, []).append(round(time.perf_counter() - started, 1))
            print(json.dumps(rows[-1]), flush=True)
    result = {"command": run_config.full_command(FLAGS, sys.argv[0]), "rows": rows,
              "seconds": seconds, "summary": summarize(rows)}
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(table(result))
    print(f"wrote {FLAGS.output}")


if __name__ == "__main__":
    app.run(main)
