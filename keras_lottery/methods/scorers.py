"""Scorers: what ranks a wrapped model's weights, one small class per
method, registered by name.

A scorer has one method, `scores(context)`: `{key: array}` for the keys of
the `ScoringContext`, higher survives. Turning scores into masks (the
`distribution=` and `structure=` of the sparsity vocabulary) is the same
for every scorer (`keras_lottery.sparsity.decision.select`), so a scorer
works wherever one is taken: `IterativeMagnitudePruning(scorer=...)` (the
scores of each round's trained weights decide the next round's masks),
`prune_at_init(model, scorer, ...)` and, for the scorers of Dense kernels,
`prune_one_shot(model, scorer, ...)`.

| name | ranks by | reads |
|---|---|---|
| `magnitude` | \\|θ\\| | weights |
| `random` | uniform noise | a seed |
| `snip` (Lee et al. 2019) | \\|g ⊙ θ\\| | `data`: `(x, y)` batches |
| `grasp` (Wang et al. 2020) | θ ⊙ Hg | `data`: `(x, y)` batches |
| `synflow` (Tanaka et al. 2020) | \\|∂R/∂θ ⊙ θ\\| on \\|θ\\| and an all-ones input | nothing (data-free) |
| `wanda` (Sun et al. 2023) | \\|θ\\| · ‖X‖ of each input feature | `calibration_data`: input batches |
| `sparsegpt` (Frantar & Alistarh 2023) | θ² / [H⁻¹]ᵢᵢ², H = XᵀX | `calibration_data`; `prune_layer` also reconstructs |

A new method is one class:

>>> @register_scorer("tiny_first")
... class TinyFirst(Scorer):
...     def scores(self, context):
...         return {k: -np.abs(w) for k, w in context.weights.items()}
>>> get("tiny_first").name
'tiny_first'
>>> unregister_scorer("tiny_first")
"""

import inspect

import keras
import numpy as np

from keras_lottery.backend import keras_internals
from keras_lottery.core import wrapping
from keras_lottery.methods import layer_inputs
from keras_lottery.methods import loss_gradients
from keras_lottery.methods import sparsegpt
from keras_lottery.methods import synflow
from keras_lottery.sparsity import decision

_REGISTRY = {}


def register_scorer(name):
    """Class decorator: makes a `Scorer` subclass available by `name`
    everywhere a scorer is taken.

    Example:
    >>> @register_scorer("negated_magnitude")
    ... class NegatedMagnitude(Scorer):
    ...     def scores(self, context):
    ...         return {k: -np.abs(w) for k, w in context.weights.items()}
    >>> "negated_magnitude" in names()
    True
    >>> unregister_scorer("negated_magnitude")
    """

    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Scorer)):
            raise TypeError(f"register_scorer takes a Scorer subclass; received {cls!r}.")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"A scorer named {name!r} is registered already "
                             f"({_REGISTRY[name].__name__}).")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def unregister_scorer(name):
    """Removes a scorer registered by `register_scorer`.

    Example:
    >>> unregister_scorer("no_such_scorer")
    Traceback (most recent call last):
    ...
    KeyError: "No scorer named 'no_such_scorer'."
    """
    if name not in _REGISTRY:
        raise KeyError(f"No scorer named {name!r}.")
    del _REGISTRY[name]


def names():
    """The registered scorer names.

    Example:
    >>> names()[:3]
    ('magnitude', 'random', 'snip')
    """
    return tuple(_REGISTRY)


def get(scorer, **options):
    """A scorer from a name (built with the `options` its class takes; the
    others are ignored) or a `Scorer` instance (returned as it is).

    Raises:
        ValueError: an unknown name, or a scorer whose required arguments
            (its data) are missing from `options`.

    Example:
    >>> get("snip", data=(np.ones((2, 3)), np.zeros(2)), seed=1).name
    'snip'
    >>> get("snip")
    Traceback (most recent call last):
    ...
    ValueError: scorer='snip' needs data: pass keras_lottery.methods.scorers.Snip(data=...) as the scorer.
    """
    if isinstance(scorer, Scorer):
        return scorer
    if isinstance(scorer, type) and issubclass(scorer, Scorer):
        raise TypeError(f"scorer takes an instance or a name; received the class "
                        f"{scorer.__name__} (write {scorer.__name__}()).")
    if not isinstance(scorer, str) or scorer not in _REGISTRY:
        raise ValueError(f"scorer must be one of {names()} or a Scorer; received {scorer!r}.")
    cls = _REGISTRY[scorer]
    parameters = inspect.signature(cls.__init__).parameters
    given = {k: v for k, v in options.items() if k in parameters and v is not None}
    missing = [p.name for p in parameters.values()
               if p.name != "self" and p.default is inspect.Parameter.empty
               and p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in given]
    if missing:
        raise ValueError(
            f"scorer={scorer!r} needs {', '.join(missing)}: pass "
            f"keras_lottery.methods.scorers.{cls.__name__}("
            f"{', '.join(m + '=...' for m in missing)}) as the scorer."
        )
    return cls(**given)


class ScoringContext:
    """What a scorer reads: a wrapped model at its current weights and
    masks, the keys to score, and a seed.

    Attributes:
        model: the wrapped model.
        masks: `{key: bool array}` current survivors.
        keys: the keys to score (default: every pruned weight).
        seed: the seed of random draws (IMP: one per round).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> ScoringContext(model).weights["fc/kernel"].shape
    (2, 1)
    """

    def __init__(self, model, masks=None, keys=None, seed=0):
        self.model = model
        self._masks = masks
        prunables = wrapping.prunable_weights(model)
        self.keys = [p.key for p in prunables] if keys is None else list(keys)
        self.prunables = {p.key: p for p in prunables if p.key in set(self.keys)}
        self.seed = int(seed)
        self._weights = None
        self._grams = {}

    @property
    def masks(self):
        """`{key: bool array}` current survivors (read when first asked)."""
        if self._masks is None:
            self._masks = wrapping.get_masks(self.model)
        return self._masks

    @property
    def weights(self):
        """`{key: float32 array}` of the keys' current values."""
        if self._weights is None:
            keras_internals.sync_jax_state(self.model)
            self._weights = {key: keras.ops.convert_to_numpy(self.prunables[key].variable.value)
                             for key in self.keys}
        return self._weights

    def dense_kernel(self, key, scorer):
        """`(layout, [inputs, outputs] matrix)` of a Dense/EinsumDense kernel,
        or ValueError naming the key and `scorer`."""
        weight = self.prunables[key]
        layout = None
        if layer_inputs.is_dense_kernel(weight):
            layout = layer_inputs.kernel_layout(weight.owner, tuple(weight.variable.shape))
        if layout is None:
            raise ValueError(
                f"scorer={scorer!r} scores Dense and EinsumDense kernels by their "
                f"layer's inputs; {key!r} ({type(weight.owner).__name__}) is not one it "
                "can read. Exclude it (exclude=[...]) or use another scorer."
            )
        return layout, layout.to_matrix(np.asarray(self.weights[key], np.float64))

    def input_gram(self, key, batches):
        """XᵀX of the inputs of `key`'s layer over `batches` of model inputs
        (computed once per context)."""
        if key not in self._grams:
            weight = self.prunables[key]
            layout = layer_inputs.kernel_layout(weight.owner, tuple(weight.variable.shape))
            self._grams[key] = layer_inputs.input_gram(self.model, weight.owner, layout, batches)
        return self._grams[key]


class Scorer:
    """Base class of the scorers: subclasses implement `scores(context)`.

    Class attributes:
        name: the registered name (set by `register_scorer`).
        iterative: `prune_at_init` prunes with it over `iterations` steps
            of an exponential density schedule, scoring again at each.

    Example:
    >>> Magnitude().name, Synflow().iterative
    ('magnitude', True)
    """

    name = None
    iterative = False

    def scores(self, context):
        """`{key: array}` for every key of `context`, higher survives."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


@register_scorer("magnitude")
class Magnitude(Scorer):
    """|θ|: magnitude pruning (IMP's default).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> Magnitude().scores(ScoringContext(model))["fc/kernel"].shape
    (2, 1)
    """

    def scores(self, context):
        return decision.magnitude_scores(context.weights)


@register_scorer("random")
class Random(Scorer):
    """Uniform noise: random pruning, the baseline every method must beat.

    Args:
        seed: the draw's seed (default: the context's, e.g. IMP's round seed).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> Random(seed=0).scores(ScoringContext(model))["fc/kernel"].shape
    (2, 1)
    """

    def __init__(self, seed=None):
        self.seed = seed

    def scores(self, context):
        return decision.random_scores({key: context.masks[key] for key in context.keys},
                                      context.seed if self.seed is None else self.seed)


class _LossScorer(Scorer):
    """A scorer of loss gradients on labelled batches."""

    def __init__(self, data, loss=None, temperature=1.0):
        self.data = data
        self.loss = loss
        self.temperature = float(temperature)

    def _loss(self, model):
        loss = loss_gradients.loss_of(model, self.loss)
        if self.temperature == 1.0:
            return loss
        scale = 1.0 / self.temperature
        return lambda y_true, y_pred: loss(y_true, keras.ops.multiply(y_pred, scale))

    def __repr__(self):
        return f"{type(self).__name__}(data=..., temperature={self.temperature})"


@register_scorer("snip")
class Snip(_LossScorer):
    """SNIP (Lee et al. 2019): |g ⊙ θ|, g the mean loss gradient over `data`.

    Args:
        data: an `(x, y)` batch or an iterable of them (all are used).
        loss: `(y_true, y_pred) -> scalar` (default: the compiled loss, or
            sparse categorical cross-entropy from logits).
        temperature: the loss is taken on `outputs / temperature`.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
    >>> data = (np.ones((4, 2), "float32"), np.zeros(4, "int32"))
    >>> Snip(data).scores(ScoringContext(model))["fc/kernel"].shape
    (2, 2)
    """

    def scores(self, context):
        grads = loss_gradients.mean_gradients(context.model, self.data, self._loss(context.model))
        return {key: np.abs(grads[key] * context.weights[key]) for key in context.keys}


@register_scorer("grasp")
class Grasp(_LossScorer):
    """GraSP (Wang et al. 2020): θ ⊙ Hg by double backprop (GraSP prunes the
    highest −θ ⊙ Hg, so θ ⊙ Hg ranks what survives). Arguments as `Snip`
    (GraSP's reference code uses `temperature=200` on logits).

    Example (scores as `Snip`'s, tests/methods/test_init_pruning.py checks
    them against θ ⊙ Hg by finite differences):
    >>> get("grasp", data=[(np.ones((4, 2)), np.zeros(4))], temperature=200.0)
    Grasp(data=..., temperature=200.0)
    """

    def scores(self, context):
        hg = loss_gradients.hessian_gradient(context.model, self.data, self._loss(context.model))
        return {key: context.weights[key] * hg[key] for key in context.keys}


@register_scorer("synflow")
class Synflow(Scorer):
    """SynFlow (Tanaka et al. 2020), data-free (`keras_lottery.methods.synflow`).
    `prune_at_init` prunes with it over `iterations` steps; IMP scores once
    per round (its rounds are the iterations).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> Synflow().scores(ScoringContext(model))["fc/kernel"].shape
    (2, 1)
    """

    iterative = True

    def scores(self, context):
        scores = synflow.scores(context.model)
        return {key: scores[key] for key in context.keys}


class CalibrationScorer(Scorer):
    """Base of the scorers of Dense/EinsumDense kernels by their layer's
    inputs: subclasses implement `matrix_scores(kernel, gram)`, which
    `prune_one_shot` calls layer by layer on the model pruned so far.

    Example:
    >>> isinstance(Wanda(calibration_data=[np.ones((2, 3))]), CalibrationScorer)
    True
    """

    def __init__(self, calibration_data):
        self.calibration_data = calibration_data
        self._batches = None

    @property
    def batches(self):
        """The calibration batches as a list (read once)."""
        if self._batches is None:
            self._batches = input_batches(self.calibration_data)
        return self._batches

    def scores(self, context):
        out = {}
        for key in context.keys:
            layout, kernel = context.dense_kernel(key, self.name)
            gram = context.input_gram(key, self.batches)
            out[key] = layout.from_matrix(self.matrix_scores(kernel, gram)).astype(np.float32)
        return out

    def matrix_scores(self, kernel, gram):
        """Scores of one [inputs, outputs] kernel from its inputs' XᵀX."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(calibration_data=...)"


@register_scorer("wanda")
class Wanda(CalibrationScorer):
    """Wanda (Sun et al. 2023): |θᵢⱼ| · ‖Xᵢ‖, the norm of input feature i over
    every calibration token.

    Args:
        calibration_data: batches of model inputs (a list or iterable; one
            array or dict is one batch).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, name="fc")]))
    >>> Wanda(np.ones((8, 4), "float32")).scores(ScoringContext(model))["fc/kernel"].shape
    (4, 2)
    """

    def matrix_scores(self, kernel, gram):
        return np.abs(kernel) * np.sqrt(np.diag(gram))[:, None]


@register_scorer("sparsegpt")
class SparseGPT(CalibrationScorer):
    """SparseGPT (Frantar & Alistarh 2023): the Optimal-Brain-Surgeon
    saliency θ² / [U]ᵢᵢ², U the upper Cholesky factor of (H + λI)⁻¹, H = XᵀX,
    λ = `damping` · mean diag H. `prune_layer` is the method itself: the
    mask chosen block by block while every pruned weight's error is
    compensated on the later columns (what `prune_one_shot` runs);
    `reconstruct` compensates a given mask.

    Args:
        calibration_data: batches of model inputs.
        damping: λ as a fraction of the mean diagonal of H.
        block_size: columns per block.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((4,)), keras.layers.Dense(2, name="fc")]))
    >>> x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    >>> SparseGPT(x).scores(ScoringContext(model))["fc/kernel"].shape
    (4, 2)
    """

    def __init__(self, calibration_data, damping=0.01, block_size=128):
        super().__init__(calibration_data)
        self.damping = float(damping)
        self.block_size = int(block_size)

    def matrix_scores(self, kernel, gram):
        h, dead = sparsegpt.damped(gram, self.damping)
        upper = np.linalg.cholesky(np.linalg.inv(h)).T
        scores = kernel ** 2 / np.diag(upper)[:, None] ** 2
        scores[dead] = 0.0  # inputs that are always 0: their weights do nothing
        return scores

    def prune_layer(self, kernel, gram, density=None, group=None):
        """`(mask, new kernel)` of one [inputs, outputs] kernel at `density`
        or N:M `group` (`(n, m)`), with the reconstruction."""
        return sparsegpt.prune_layer(kernel, gram, density, group, self.damping, self.block_size)

    def reconstruct(self, kernel, gram, mask):
        """The kernel with `mask` ([inputs, outputs] bool) applied and the
        pruned weights' error compensated on the kept ones."""
        return sparsegpt.prune_layer(kernel, gram, None, None, self.damping, self.block_size,
                                     keep=mask)[1]


def input_batches(data):
    """Calibration data as a list of model-input batches: None is none, one
    array or dict is one batch.

    Example:
    >>> len(input_batches(np.ones((4, 2)))), len(input_batches([np.ones(2)] * 3))
    (1, 3)
    """
    if data is None:
        return []
    if isinstance(data, (np.ndarray, dict)) or hasattr(data, "shape"):
        return [data]
    return list(data)
