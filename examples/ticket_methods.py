"""IMP tickets beside pruning-at-init masks: trials x methods x densities.

Each trial draws one θ0 (seed + trial). The `imp` arm runs global IMP,
rewound to θ0, at the rate that reaches the highest --densities in
--rounds_to_first rounds, and goes on at that rate to the lowest; its ticket
at each density is the round closest to it. Every other method (`random`,
`magnitude`, `snip`, `grasp`, `synflow`: `keras_lottery.prune_at_init`)
prunes the same θ0 to the IMP round's exact density, and trains for the
same --epochs as one IMP round. With --shuffle, every mask is also trained
shuffled within its layers (the "Missing the Mark" ablation: the same
per-layer counts at random positions).

    python -m examples.ticket_methods --dataset=idx:/usr/share/datasets/fashion-mnist \\
        --model=lenet --trials=3

Outputs (--output_dir): `config.json` (a rerun with other settings is
refused), `trial<t>/<method>_<density>.json` (one finished cell: a rerun
skips it), `trial<t>/imp_checkpoint/` (an interrupted IMP arm resumes at its
round), `trial<t>/imp_tickets/round<r>.npz`, `results.json`, `results.csv`,
`table.md` (mean [min, max] over trials) and `methods.png`.
"""

import time

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
METHODS = ("imp", "random", "magnitude", "snip", "grasp", "synflow")
harness.define_comparison_flags(METHODS, ["0.036", "0.019"], "runs/ticket_methods",
                                "Training epochs of one mask (one IMP round).")
flags.DEFINE_bool("shuffle", True, "Also train every mask shuffled within its layers.")
flags.DEFINE_integer("score_batches", 4, "Batches of 128 examples for SNIP and GraSP.", lower_bound=1)
flags.DEFINE_integer("synflow_iterations", 100, "SynFlow's pruning iterations.", lower_bound=1)
flags.DEFINE_float("grasp_temperature", 200.0, "GraSP: outputs divided by T (reference: 200).")


def run_cell(trial, method, density, imp_masks):
    """One method at one density: its test accuracy (and shuffled), mask time."""
    import keras_lottery as kl
    from keras_lottery.methods import init_pruning

    started = time.perf_counter()
    row = {"method": method, "density": density}
    if method == "imp":
        masks = imp_masks
    else:
        model = trial.fresh_model()
        started = time.perf_counter()
        options = {"data": trial.batches(FLAGS.score_batches), "distribution": "global",
                   "seed": trial.seed,
                   "iterations": FLAGS.synflow_iterations,
                   "temperature": FLAGS.grasp_temperature if method == "grasp" else 1.0}
        masks = kl.prune_at_init(model, method, density, **options)
        row["mask_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        trial.train(model)
        row["train_seconds"] = time.perf_counter() - started
        row["test_accuracy"] = trial.test_accuracy(model)
    row["kept"] = kl.masks.density(masks)
    if FLAGS.shuffle and method != "random":
        row["shuffled_accuracy"] = trial.train_masked(
            init_pruning.shuffle_within_layers(masks, trial.seed + 7))
    return row


def main(argv):
    del argv
    from examples import method_results
    from examples import method_trial

    def cell(trial, method, density, imp, imp_round):
        row = run_cell(trial, method, density, imp[imp_round][2] if method == "imp" else None)
        if method == "imp":
            row.update(test_accuracy=imp[imp_round][1], round=imp_round)
        return row

    directory, rows, started = method_trial.run_trials(FLAGS, METHODS, cell,
                                                       method_results.describe)
    method_results.write(directory, rows)
    harness.finish(directory, method_results.table(rows), "methods.png",
                   lambda path: method_results.plot(rows, path), started, rows)


if __name__ == "__main__":
    app.run(main)
