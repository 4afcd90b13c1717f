"""Dynamic sparse training: RigL (Evci et al. 2020), SET (Mocanu et al. 2018)
and static sparse training, as one Keras callback.

The network trains sparse from the first step: `on_train_begin` draws a
random mask per pruned weight at its budget (`distribution="erk"` or
`"uniform"`, the total exactly `density`). Every `update_every` optimizer
steps until `end_step`, each weight tensor drops the fraction f(t) =
`drop_fraction` · (1 + cos(π t / end_step)) / 2 of its active connections
with the smallest |θ| and grows as many among the connections that were
inactive before the update: by the largest |gradient| (RigL; the dense
gradient of one batch of `data`, computed at the update step and dropped
after it: no dense gradient is kept between updates) or at random (SET).
Grown connections start at 0 with their optimizer slots reset; the count of
every tensor is unchanged. `method="static"` never updates (the baseline).

The masks are the wrapped model's mask variables, read inside the compiled
train step as during IMP: an update needs no retrace and holds under
`steps_per_execution > 1` (updates happen at the first batch end at or after
each update step) and XLA.

An update is three calls: one compiled read of masks and weights, RigL's
compiled gradient, and one compiled write of masks, weights and slots (each
traced once per model and optimizer); drop and grow are chosen between
them on the host with NumPy's O(n) partition (on CPU ~7x faster than
`top_k` over the same tensor).

Example:
>>> model = keras_lottery.wrap(keras.Sequential([
...     keras.Input((8,)), keras.layers.Dense(16, name="fc"),
...     keras.layers.Dense(2, name="out")], name="net"))
>>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> x, y = np.ones((32, 8), "float32"), np.zeros(32, "int32")
>>> dst = DynamicSparseTraining("rigl", density=0.5, data=(x, y), update_every=2, verbose=0)
>>> _ = model.fit(x, y, batch_size=8, epochs=2, callbacks=[dst], verbose=0)
>>> round(keras_lottery.sparsity.masks.density(keras_lottery.get_masks(model)), 2)
0.5
"""

import math
import numbers
import warnings

import keras
import numpy as np

from keras_lottery.backend import compiled
from keras_lottery.backend import keras_internals
from keras_lottery.backend import optimizer_state
from keras_lottery.backend import processes
from keras_lottery.core import wrapping
from keras_lottery.methods import loss_gradients
from keras_lottery.sparsity import budgets
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import vocabulary

METHODS = ("rigl", "set", "static")


class DynamicSparseTraining(keras.callbacks.Callback):
    """Trains a wrapped model sparse, moving connections during training
    (see the module docstring).

    Args:
        method: "rigl", "set" or "static".
        density: fraction of the pruned weights kept, in (0, 1).
        distribution: "erk" (Erdős–Rényi-Kernel, RigL's default) or "uniform".
        structure: "weight" (the only one: connections move one by one).
        exclude: keys, layer names or globs of weights kept dense (never
            pruned, never moved); the others share `density`.
        update_every: optimizer steps between mask updates.
        drop_fraction: fraction of active connections moved at step 0 of the
            cosine decay.
        end_step: the optimizer step updates stop at (the cosine reaches 0
            there; default: 3/4 of the steps taken once the current `fit` ends,
            as in RigL, recomputed at each `fit`).
        data: RigL: `(x, y)` arrays to draw its gradient batches from, in
            order (one batch of `batch_size` per update).
        batch_size: RigL's gradient batch size.
        loss: RigL's loss (default: the compiled loss).
        seed: seed of the initial masks and of SET's growth.
        verbose: 1 prints one line per update.

    Attributes:
        updates: one dict per update: `step`, `fraction`, `moved` (connections
            dropped = grown over all tensors), `seconds`, `phase_seconds` (the
            compiled `read`, RigL's gradient or SET's draw `grow_scores`, the
            host's `choose`, the compiled `write`), and for RigL
            `grow_candidates_nonzero` (the share of inactive connections whose
            gradient is nonzero).

    Example:
    >>> DynamicSparseTraining("set", density=0.1).distribution
    'erk'
    """

    def __init__(self, method="rigl", density=0.1, distribution="erk", structure="weight",
                 exclude=None, update_every=100, drop_fraction=0.3, end_step=None, data=None,
                 batch_size=128, loss=None, seed=0, verbose=1, **kwargs):
        super().__init__()
        vocabulary.refuse_renamed("DynamicSparseTraining", kwargs,
                                  renamed=("scope", "granularity", "pattern", "norm"))
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; received {method!r}.")
        if not isinstance(density, numbers.Real) or not 0.0 < density < 1.0:
            raise ValueError(f"density must be a fraction in (0, 1); received {density!r}.")
        vocabulary.distribution_argument(
            distribution, (vocabulary.ERK, vocabulary.UNIFORM), "DynamicSparseTraining",
            "every tensor keeps its count of connections while they move, so the budget "
            "is set per tensor; use 'erk' or 'uniform'.")
        if not vocabulary.structure_argument(structure).elementwise:
            raise ValueError(f"DynamicSparseTraining moves single connections; "
                             f"structure={structure!r} is not one it can keep. Use "
                             "structure='weight'.")
        for name, value in (("update_every", update_every), ("batch_size", batch_size)):
            if not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int; received {value!r}.")
        if not 0.0 <= drop_fraction <= 1.0:
            raise ValueError(f"drop_fraction must be in [0, 1]; received {drop_fraction!r}.")
        if method == "rigl" and data is None:
            raise ValueError("method='rigl' grows by gradient: pass data=(x, y), the training "
                             "arrays its gradient batches are drawn from.")
        if data is not None:
            data = _checked_data(data)
        self.method, self.density, self.distribution = method, float(density), distribution
        self.exclude = exclude
        self.update_every, self.drop_fraction = int(update_every), float(drop_fraction)
        self._end_step_argument = end_step
        self.end_step, self.data, self.batch_size, self.loss = end_step, data, batch_size, loss
        self.seed, self.verbose = int(seed), int(verbose)
        self.updates = []
        self._rng = np.random.default_rng(self.seed)
        self._next_update = self.update_every
        self._batch_index = 0
        self._compiled_for = None  # the (model, optimizer) the compiled functions serve
        self._gradient = self._read = self._write = None

    def on_train_begin(self, logs=None):
        model = self.model
        wrapping.install_mask_feed(model)
        processes.check_fit(model)
        prunables = wrapping.prunable_weights(model)
        if not prunables:
            raise ValueError(f"DynamicSparseTraining: model '{model.name}' prunes no weight; "
                             "wrap it with keras_lottery.wrap first.")
        shapes = {p.key: tuple(p.shape) for p in prunables}
        densities = vocabulary.per_weight(self.density, list(shapes), "density",
                                          exclude=self.exclude)
        targets = budgets.targets(shapes, densities, self.distribution)
        current = optimizer_state.iterations(model.optimizer)
        if self._end_step_argument is None:  # 3/4 of all steps, this fit's included
            params = self.params or {}
            total = (params.get("steps") or 0) * (params.get("epochs") or 0)
            self.end_step = int(0.75 * (current + total)) if total else None
        if current == 0:
            masks = {}
            for p in prunables:
                keep = int(round((1.0 - targets[p.key]) * np.prod(p.shape)))
                flat = np.zeros(int(np.prod(p.shape)), bool)
                flat[self._rng.permutation(flat.size)[:keep]] = True
                masks[p.key] = flat.reshape(p.shape)
            wrapping.set_masks(model, masks)
        self._next_update = (current // self.update_every + 1) * self.update_every
        self._updates_at_fit_start = len(self.updates)
        if self.method != "static":
            params = self.params or {}
            steps = params.get("steps")
            if steps is not None and params.get("epochs") is not None:
                self._refuse_fit_without_update(current, steps * params["epochs"])

    def _refuse_fit_without_update(self, current, total):
        """Raises when a fit of `total` steps from step `current` reaches no
        update step before `end_step`: it would train a static sparse network
        under the name of RigL or SET."""
        every = getattr(self.model, "steps_per_execution", 1) or 1
        # Batch ends (where updates happen) come every `every` steps.
        first = current + -(-(self._next_update - current) // every) * every
        if first <= current + total and (self.end_step is None or first < self.end_step):
            return
        ends = "" if self.end_step is None else f", and updates stop at end_step={self.end_step}"
        default = (" (3/4 of all steps, the default)" if self._end_step_argument is None
                   else "")
        last = current + total if self.end_step is None else min(current + total,
                                                                 self.end_step - 1)
        fix = (f"pass update_every <= {last - current}, a later end_step, or train longer"
               if last > current else "pass a later end_step, or train longer")
        raise ValueError(
            f"DynamicSparseTraining({self.method!r}) would make no update in this fit: it "
            f"trains {total} steps (optimizer steps {current}-{current + total}), the first "
            f"update is due at step {first} (update_every={self.update_every}"
            f"{', steps_per_execution=' + str(every) if every > 1 else ''}){ends}{default}. "
            f"The masks would never move: {fix}; method='static' trains with fixed masks "
            "on purpose."
        )

    def on_train_end(self, logs=None):
        if self.method != "static" and len(self.updates) == self._updates_at_fit_start:
            warnings.warn(
                f"DynamicSparseTraining({self.method!r}) made no update in this fit "
                f"(update_every={self.update_every}, end_step={self.end_step}, optimizer "
                f"step {optimizer_state.iterations(self.model.optimizer)} at its end): the "
                "masks did not move, as with method='static'. Lower update_every, set "
                "end_step, or train longer.",
                stacklevel=2,
            )

    def on_train_batch_end(self, batch, logs=None):
        if self.method == "static":
            return
        step = optimizer_state.iterations(self.model.optimizer)
        if step < self._next_update:
            return
        self._next_update = (step // self.update_every + 1) * self.update_every
        if self.end_step is not None and step >= self.end_step:
            return  # the cosine has reached 0: nothing would move
        self.update(step)

    def drop_fraction_at(self, step):
        """The cosine-decayed fraction of connections moved at `step`.

        Example:
        >>> DynamicSparseTraining("set", end_step=100).drop_fraction_at(50)
        0.15
        """
        if self.end_step is None or self.end_step <= 0:
            return self.drop_fraction
        progress = min(1.0, step / self.end_step)
        return round(self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * progress)), 12)

    def update(self, step):
        """Drops and grows connections now (the callback calls it every
        `update_every` steps); returns `{key: (dropped, grown)}` bool arrays."""
        import time

        started = time.perf_counter()
        model = self.model
        keras_internals.sync_jax_state(model)
        prunables = wrapping.prunable_weights(model)
        # Traced once per model and optimizer (and again if the optimizer gains
        # variables, e.g. built after an update called before any step).
        serves = (id(model), id(model.optimizer), len(model.optimizer.variables))
        if serves != self._compiled_for:
            self._compiled_for = serves
            self._read = _state_reader(prunables)
            self._write = _mask_writer(model.optimizer, prunables)
            self._gradient = None
        state = [tuple(keras.ops.convert_to_numpy(t) for t in pair) for pair in self._read()]
        masks = {p.key: mask for p, (mask, _) in zip(prunables, state)}
        weights = {p.key: weight for p, (_, weight) in zip(prunables, state)}
        read = time.perf_counter()
        grow_scores = self._grow_scores(model, masks)
        scored = time.perf_counter()
        inactive = sum(int((~m).sum()) for m in masks.values())
        # RigL grows by |gradient|: the share of candidates with a nonzero one.
        nonzero = (sum(int(np.count_nonzero(grow_scores[k][~m])) for k, m in masks.items())
                   / inactive if inactive and self.method == "rigl" else None)
        fraction = self.drop_fraction_at(step)
        new, moves, moved = {}, {}, 0
        for p in prunables:
            mask = masks[p.key]
            count = int(round(fraction * mask.sum()))
            count = min(count, int((~mask).sum()))  # can't grow more than is free
            dropped, grown = _move(mask, np.abs(weights[p.key]), grow_scores[p.key], count)
            new[p.key] = (mask & ~dropped) | grown
            moves[p.key] = (dropped, grown)
            moved += int(dropped.sum())
        # Grown connections start at 0: inactive before, the mask constraint held
        # them there after every step; the writer zeroes the dropped ones.
        chosen = time.perf_counter()
        self._write([new[p.key] for p in prunables])
        done = time.perf_counter()
        self.updates.append({"step": int(step), "fraction": fraction, "moved": moved,
                             "seconds": done - started,
                             "phase_seconds": {"read": read - started, "grow_scores": scored - read,
                                               "choose": chosen - scored, "write": done - chosen},
                             "grow_candidates_nonzero": nonzero})
        if self.verbose:
            print(f"DynamicSparseTraining({self.method}) step {step}: moved {moved} "
                  f"connections ({100 * fraction:.1f}% of the active ones), density "
                  f"{100 * masks_lib.density(new):.2f}%", flush=True)
        return moves

    def _grow_scores(self, model, masks):
        if self.method == "set":
            return {key: self._rng.random(mask.shape) for key, mask in masks.items()}
        x, y = self.data
        size = _length(x)
        start = (self._batch_index * self.batch_size) % size
        index = np.arange(start, start + self.batch_size) % size
        self._batch_index += 1
        if self._gradient is None:  # traced once per model and optimizer
            self._gradient = loss_gradients.compiled_loss_gradients(model, self.loss)
        batch = keras.tree.map_structure(lambda a: a[index], (x, y))
        return {key: np.abs(g) for key, g in self._gradient(*batch).items()}

    def get_config(self):
        return {"method": self.method, "density": self.density,
                "distribution": self.distribution, "update_every": self.update_every,
                "drop_fraction": self.drop_fraction, "end_step": self.end_step,
                "batch_size": self.batch_size, "seed": self.seed}


def _checked_data(data):
    """`data` as `(x, y)` of NumPy arrays (x and y may each be an array, a
    list or a dict of arrays, as `fit` takes them), all of one length;
    raises, saying why, for anything else."""
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise ValueError(
            "DynamicSparseTraining draws RigL's gradient batches from data by index: "
            "data must be an (x, y) pair of arrays (x and y may be lists or dicts of "
            f"arrays, e.g. a KerasHub model's inputs); received a {type(data).__name__}. "
            "From a tf.data.Dataset take a few thousand examples as NumPy arrays first."
        )
    try:
        data = keras.tree.map_structure(np.asarray, tuple(data))
    except (TypeError, ValueError) as error:
        raise ValueError(f"DynamicSparseTraining: data could not be read as arrays ({error}).") from None
    sizes = {a.shape[0] if a.ndim else None for a in keras.tree.flatten(data)}
    if None in sizes or len(sizes) != 1 or 0 in sizes:
        raise ValueError(
            "DynamicSparseTraining: every array of data=(x, y) needs the same non-zero "
            f"first (batch) dimension; received lengths {sorted(str(n) for n in sizes)}."
        )
    return data


def _length(x):
    return keras.tree.flatten(x)[0].shape[0]


def _state_reader(prunables):
    """A compiled `() -> [(bool mask, weight)]` of every pruned weight: one
    call to read what an update decides on."""
    return compiled.function(
        lambda: [(keras.ops.greater(p.state.mask.value, 0.5), p.variable.value)
                 for p in prunables],
        variables=[v for p in prunables for v in (p.state.mask, p.variable)])


def _mask_writer(optimizer, prunables):
    """A compiled `(bool masks) -> None`: per pruned weight, assigns its new
    mask, zeroes the weights it prunes and the optimizer slots of the
    connections it grows (on in the new mask, off in the old). One graph call
    instead of a dozen eager ones, fed bools (a quarter of float32's bytes to
    convert): the update's cost, issue 17."""
    slots = [keras_internals.slots_of(optimizer, p.variable) for p in prunables]
    ops = keras.ops

    def write(masks):
        for p, its_slots, mask in zip(prunables, slots, masks):
            mask = ops.cast(mask, p.state.mask.dtype)
            keep = ops.subtract(1.0, ops.multiply(mask, ops.subtract(1.0, p.state.mask.value)))
            p.state.mask.assign(mask)
            p.variable.assign(ops.multiply(p.variable.value, ops.cast(mask, p.variable.dtype)))
            for slot in its_slots:
                slot.assign(ops.multiply(slot.value, ops.cast(keep, slot.dtype)))  # 0 where grown

    return compiled.function(write, variables=[
        v for p, its_slots in zip(prunables, slots) for v in (p.state.mask, p.variable, *its_slots)])


def _move(mask, magnitude, grow_score, count):
    """(dropped, grown): the `count` active entries of smallest magnitude, and
    the `count` entries inactive before the update with the highest grow
    score. Disjoint by construction."""
    dropped = np.zeros(mask.shape, bool)
    grown = np.zeros(mask.shape, bool)
    if count <= 0:
        return dropped, grown
    active = np.flatnonzero(mask)
    dropped.ravel()[active[_smallest(magnitude.ravel()[active], count)]] = True
    inactive = np.flatnonzero(~mask)
    grown.ravel()[inactive[_smallest(-grow_score.ravel()[inactive], count)]] = True
    return dropped, grown


def _smallest(values, count):
    """Indices of the `count` smallest values (ties: lowest index), in O(n)."""
    if count >= values.size:
        return np.arange(values.size)
    threshold = np.partition(values, count - 1)[count - 1]
    below = np.flatnonzero(values < threshold)
    ties = np.flatnonzero(values == threshold)[:count - below.size]
    return np.concatenate([below, ties])
