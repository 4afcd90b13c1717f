"""What `ticket_methods.py` and `sparse_training.py` share: one trial's θ0,
data and training, and the IMP arm they compare against.

Every cell of a trial trains from the same θ0 (same seed) for the same
epochs; the IMP arm runs global IMP rewound to θ0 at the rate `imp_plan`
chooses, writes a ticket and a score file per round, and resumes from its
checkpoint.
"""

import json
import time
import math
import os

LEARNING_RATES = {"lenet": 1.2e-3, "conv2": 2e-4}


def parse_densities(values):
    """Distinct densities in (0, 1), highest first.

    >>> parse_densities(["0.019", "0.036"])
    [0.036, 0.019]
    """
    try:
        densities = sorted({float(d) for d in values}, reverse=True)
    except ValueError:
        raise ValueError(f"densities must be numbers; received {values}.") from None
    if not densities or not all(0.0 < d < 1.0 for d in densities):
        raise ValueError(f"densities must be in (0, 1); received {values}.")
    return densities


def imp_plan(densities, rounds_to_first):
    """(rate, rounds, {density: round}) of the IMP arm: the rate reaching the
    highest density in `rounds_to_first` rounds, and for each density the
    round closest to it (in log density).

    >>> rate, rounds, at = imp_plan([0.036, 0.019], 5)
    >>> round(rate, 4), rounds, at
    (0.4856, 7, {0.036: 5, 0.019: 6})
    """
    keep = densities[0] ** (1.0 / rounds_to_first)
    at = {d: max(1, round(math.log(d) / math.log(keep))) for d in densities}
    return 1.0 - keep, max(at.values()) + 1, at


def checked_plan(densities, rounds_to_first, with_imp):
    """`imp_plan`, refusing densities that two land on one IMP round (when
    the run has an IMP arm): raises ValueError naming the rounds.

    >>> checked_plan([0.3, 0.2], 1, with_imp=True)
    Traceback (most recent call last):
    ...
    ValueError: at rate 0.700 IMP reaches the densities in rounds {0.3: 1, 0.2: 1}; two land on one round. Raise --rounds_to_first.
    """
    rate, rounds, at = imp_plan(densities, rounds_to_first)
    if with_imp and len(set(at.values())) < len(densities):
        raise ValueError(f"at rate {rate:.3f} IMP reaches the densities in rounds {at}; two "
                         "land on one round. Raise --rounds_to_first.")
    return rate, rounds, at


def load_data(dataset, seed, train_examples=0):
    """`common.load_dataset`, keeping the first `train_examples` training
    examples (0: all)."""
    from examples import common

    data = common.load_dataset(dataset, seed)
    if train_examples:
        (x, y), val, test = data
        data = ((x[:train_examples], y[:train_examples]), val, test)
    return data


class Trial:
    """One trial's data, θ0 and training: every cell trains from the same θ0
    for the same epochs and is scored on the same test set.

    Args:
        data: `((x, y), (x_val, y_val), (x_test, y_test))`.
        seed: the trial's seed (its θ0).
        model: "lenet" (LeNet-300-100) or "conv2".
        learning_rate: Adam's (None: the paper's for `model`).
        batch_size, epochs: of one training (one IMP round).
    """

    def __init__(self, data, seed, model="lenet", learning_rate=None, batch_size=60, epochs=2):
        self.data, self.seed, self.model = data, seed, model
        self.learning_rate = learning_rate or LEARNING_RATES[model]
        self.batch_size, self.epochs = batch_size, epochs

    def batches(self, count, size=128):
        """The first `count` training batches of `size`: (x, y) pairs."""
        (x, y), _, _ = self.data
        return [(x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]) for i in range(count)]

    def fresh_model(self):
        """The trial's θ0, wrapped and compiled (same seed: same weights)."""
        import keras

        import keras_lottery as kl
        from examples import models

        keras.utils.set_random_seed(self.seed)
        shape = self.data[0][0].shape[1:]
        if self.model == "lenet":
            network = models.lenet_300_100(shape)
        else:
            network = models.conv_net(2, shape if len(shape) == 3 else (*shape, 1))
        model = kl.wrap(network)
        model.compile(
            keras.optimizers.Adam(self.learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model

    def train(self, model, epochs=None, callbacks=(), initial_epoch=0):
        (x, y), val, _ = self.data
        model.fit(x, y, batch_size=self.batch_size, epochs=epochs or self.epochs,
                  initial_epoch=initial_epoch, validation_data=val, callbacks=list(callbacks),
                  verbose=0)

    def test_accuracy(self, model):
        from examples import common

        _, _, (xt, yt) = self.data
        return common.accuracy(model.predict(xt, batch_size=1000, verbose=0), yt)

    def train_masked(self, masks):
        """Trains θ0 under `masks`; returns the test accuracy."""
        import keras_lottery as kl

        model = self.fresh_model()
        kl.set_masks(model, masks)
        self.train(model)
        return self.test_accuracy(model)


def run_imp(trial, directory, t, rate, rounds):
    """The IMP arm (global, rewound to θ0) of trial `t`, resumed from its
    checkpoint; returns its per-round `(density, test accuracy, masks, steps)`."""
    import keras_lottery as kl

    tickets = [directory.file(f"trial{t}", "imp_tickets", f"round{r}.npz") for r in range(rounds)]
    scores = [os.path.join(f"trial{t}", "imp_tickets", f"round{r}.json") for r in range(rounds)]

    def save_round(round_index, model, row):
        kl.save_ticket(model, tickets[round_index], imp=imp)
        directory.write_json(scores[round_index], {"test_accuracy": trial.test_accuracy(model),
                                                   "steps": row["steps"]})

    if not all(os.path.exists(directory.file(path)) for path in scores):
        model = trial.fresh_model()
        imp = kl.IterativeMagnitudePruning(
            rounds=rounds, epochs_per_round=trial.epochs, rate=rate, distribution="global",
            seed=trial.seed + 1000, checkpoint_dir=directory.file(f"trial{t}", "imp_checkpoint"),
            on_round_end=save_round, verbose=1,
        )
        print(f"trial {t} imp: {rounds} rounds x {trial.epochs} epochs at rate {rate:.4f}",
              flush=True)
        trial.train(model, epochs=imp.total_epochs, callbacks=[imp],
                    initial_epoch=imp.initial_epoch)
    out = []
    for ticket_path, score_path in zip(tickets, scores):
        masks = kl.read_ticket(ticket_path).masks
        with open(directory.file(score_path)) as f:
            score = json.load(f)
        out.append((kl.masks.density(masks), score["test_accuracy"], masks, score.get("steps")))
    return out


def run_trials(flag_values, methods, cell, describe, check=None):
    """The main loop of `ticket_methods.py` and `sparse_training.py`: the
    flags checked, the IMP plan, the data, the run directory (resumed, other
    settings refused), then per trial the IMP arm and every method at every
    density, each cell written as it finishes and skipped when a rerun finds
    it. Returns `(directory, rows, start time)`.

    Args:
        flag_values: the script's parsed flags (`methods`, `densities`,
            `rounds_to_first`, `epochs`, `model`, `learning_rate`,
            `batch_size`, `train_examples` and the common ones).
        methods: the methods the script knows.
        cell: `(trial, method, density, imp, imp_round) -> row` (`imp`: the
            IMP arm's per-round results, or None; `imp_round`: its round at
            this density).
        describe: `row -> str`, the end of the line printed per cell.
        check: optional `data -> None`, raising `app.UsageError`, run once
            the data is loaded (before any training).
    """
    from absl import app

    from examples import harness
    from examples import run_config
    from examples.run_directory import RunDirectory

    f = flag_values
    unknown = sorted(set(f.methods) - set(methods))
    if unknown or not f.methods:
        raise app.UsageError(f"--methods: unknown {unknown}; choose from {list(methods)}.")
    try:
        densities = parse_densities(f.densities)
    except ValueError as error:
        raise app.UsageError(f"--{error}") from None
    try:
        rate, rounds, imp_round = checked_plan(densities, f.rounds_to_first, "imp" in f.methods)
    except ValueError as error:
        raise app.UsageError(f"--densities={f.densities}: {error}") from None
    data, started = harness.start(lambda: load_data(f.dataset, f.seed, f.train_examples),
                                  what=f"--dataset={f.dataset}")
    if check is not None:
        check(data)
    import sys

    settings = {k: v for k, v in run_config.script_flags(f, [sys.argv[0]]).items()
                if k not in run_config.NOT_RESULT_FLAGS}
    directory = RunDirectory(f.output_dir)
    directory.prepare(settings, f.trials)
    rows = []
    for t in range(f.trials):
        trial = Trial(data, f.seed + t, f.model, f.learning_rate, f.batch_size, f.epochs)
        imp = run_imp(trial, directory, t, rate, rounds) if "imp" in f.methods else None
        for target in densities:
            # Every method at the IMP ticket's exact density (its closest round's).
            density = imp[imp_round[target]][0] if imp else target
            for method in f.methods:
                name = f"{method}_{target:g}"
                row = directory.load_arm(t, name)
                if row is not None:
                    print(f"trial {t} {method} at {target:g}: already done, skipped", flush=True)
                else:
                    cell_started = time.perf_counter()
                    row = cell(trial, method, density, imp, imp_round.get(target))
                    row.update(method=method, target=target, trial=t)
                    directory.write_json(directory.arm_file(t, name), row)
                    print(f"trial {t} {method} at {100 * row['kept']:.2f}%: {describe(row)} "
                          f"({time.perf_counter() - cell_started:.0f}s)", flush=True)
                rows.append(row)
    return directory, rows, started
