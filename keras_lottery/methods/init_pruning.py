"""Pruning at initialization: SNIP, GraSP, SynFlow, magnitude and random
masks for a wrapped model, before any training, with per-layer budgets and
the "Missing the Mark" ablations.

Every method is a scorer (`{key: array}`, higher survives) handed to the same
selector IMP uses (`keras_lottery.sparsity.decision.select`), so masks, θ0, rewinding,
controls, tickets and export work unchanged:

- `random`: uniform noise (the baseline every method must beat);
- `magnitude`: |θ0|;
- `snip` (Lee et al. 2019): |g ⊙ θ|, g the loss gradient on a few batches;
- `grasp` (Wang et al. 2020): θ ⊙ Hg (GraSP prunes the highest −θ ⊙ Hg),
  Hg by double backprop;
- `synflow` (Tanaka et al. 2020): data-free; |∂R/∂θ ⊙ θ| with R the sum of
  the outputs of the network with |θ| on an all-ones input, pruned
  iteratively (`iterations` steps of an exponential density schedule).

Budgets: `distribution="uniform"` (every layer to `density`), `"erk"`
(Erdős–Rényi-Kernel, as in RigL: denser small layers, the same total), or
`scope="global"` (one threshold over all scores).

Ablations (Frankle et al. 2021, "Missing the Mark"): `ablation="shuffle"`
keeps each layer's count and draws its positions at random, `"invert"`
keeps what the method would prune first, `"reinit"` keeps the mask and
draws fresh weights.

Example:
>>> model = keras_lottery.wrap(keras.Sequential(
...     [keras.Input((8,)), keras.layers.Dense(16, name="fc"), keras.layers.Dense(2, name="out")]))
>>> masks = prune_at_init(model, "synflow", density=0.25, iterations=10)
>>> round(keras_lottery.sparsity.masks.density(masks), 2)
0.25
"""

import warnings

import keras
import numpy as np

from keras_lottery.sparsity import decision
from keras_lottery.backend import gradients
from keras_lottery.backend import keras_internals
from keras_lottery.core import rewinding
from keras_lottery.core import wrapping

METHODS = ("random", "magnitude", "snip", "grasp", "synflow")
DISTRIBUTIONS = ("uniform", "erk")
ABLATIONS = ("shuffle", "invert", "reinit")


def prune_at_init(
    model,
    method,
    density,
    data=None,
    loss=None,
    scope=decision.LAYERWISE,
    distribution="uniform",
    ablation=None,
    iterations=100,
    seed=0,
    temperature=1.0,
):
    """Chooses masks for the wrapped `model` at its current (initial) weights
    and sets them: pruned weights become 0, survivors keep their values.

    Args:
        model: a wrapped (`keras_lottery.wrap`), built model.
        method: one of `METHODS`.
        density: fraction of the prunable weights to keep, in (0, 1].
        data: for `snip`/`grasp`: an `(x, y)` tuple or an iterable of
            `(x, y)` batches (all of it is used; pass a few batches). Not
            read by the other methods.
        loss: `(y_true, y_pred) -> scalar`, default the model's compiled loss
            or sparse categorical cross-entropy from logits.
        scope: "layerwise" (the `distribution`'s per-layer budgets) or
            "global" (one threshold over every score).
        distribution: "uniform" or "erk" (layerwise scope only).
        ablation: None or one of `ABLATIONS`.
        iterations: SynFlow's pruning iterations.
        seed: seed of `random`, `shuffle` and `reinit`.
        temperature: SNIP/GraSP compute the loss on `outputs / temperature`
            (GraSP's reference code uses 200 on logits).

    Returns:
        The new `{key: bool array}` masks (also set on the model).

    Raises:
        ValueError: an unknown method, budget or ablation, a density outside
            (0, 1], a gradient method without data, an unwrapped model.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)]))
    >>> x, y = np.ones((8, 4), "float32"), np.zeros(8, "int32")
    >>> masks = prune_at_init(model, "snip", 0.5, data=(x, y))
    >>> int(sum(m.sum() for m in masks.values()))
    8
    """
    _check_arguments(model, method, density, data, scope, distribution, ablation)
    if method == "synflow" and ablation == "invert":
        raise ValueError("ablation='invert' needs one score per weight; SynFlow's "
                         "iterative masks have none. Use 'shuffle' or 'reinit'.")
    current = wrapping.get_masks(model)
    shapes = {key: mask.shape for key, mask in current.items()}
    targets = budgets(shapes, density, distribution if scope == decision.LAYERWISE else "uniform")
    if method == "synflow":
        new = _synflow(model, current, targets, scope, iterations)
    else:
        scores = method_scores(model, method, data=data, loss=loss, seed=seed,
                               temperature=temperature)
        if ablation == "invert":
            scores = decision.inverted(scores)
        new = decision.select(scores, current, targets, scope=scope)
    if ablation == "shuffle":
        new = shuffle_within_layers(new, seed)
    emptied = [key for key, mask in new.items() if mask.size and not mask.any()]
    if emptied:
        warnings.warn(
            f"prune_at_init({method!r}) pruned every weight of {emptied}: no signal "
            "crosses those layers (layer collapse). Use scope='layerwise' or "
            "distribution='erk' to give each layer a budget, or a higher density.",
            stacklevel=2,
        )
    _warn_dead_outputs(model, new, method)
    wrapping.set_masks(model, new)
    wrapping.enable(model)  # the masks hold in the user's next fit, on every backend
    if ablation == "reinit":
        rewinding.reinitialize(model, seed)
    return new


def method_scores(model, method, data=None, loss=None, seed=0, temperature=1.0):
    """`{key: array}` scores of a one-shot method (not SynFlow, which
    prunes iteratively) at the model's current weights; higher survives.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> method_scores(model, "magnitude")["fc/kernel"].shape
    (2, 1)
    """
    weights = wrapping.read_weights(model)
    if method == "magnitude":
        return decision.magnitude_scores(weights)
    if method == "random":
        return decision.random_scores(weights, seed)
    loss = _loss_of(model, loss)
    if float(temperature) != 1.0:
        plain, scale = loss, 1.0 / float(temperature)
        loss = lambda y_true, y_pred: plain(y_true, keras.ops.multiply(y_pred, scale))  # noqa: E731
    if method == "snip":
        grads = _mean_gradients(model, data, loss)
        return {key: np.abs(grads[key] * weights[key]) for key in weights}
    if method == "grasp":
        return {key: weights[key] * hg for key, hg in _hessian_gradient(model, data, loss).items()}
    raise ValueError(f"method must be one of {METHODS[:-1]} here; received {method!r}.")


def synflow_scores(model):
    """SynFlow's scores at the model's current (masked) weights: data-free,
    |∂R/∂θ ⊙ θ| with R = sum(model(ones)) on |θ|. The weights are restored
    afterwards.

    Each kernel's |θ| is divided by its largest sum over an output unit's
    inputs, so no layer enlarges its input, and the input is `1e-3`: scaling
    a layer, or the input, scales R and every score by the same factor (the
    ranking is the same, as the paper's path count), but keeps activations
    small. Without it, float32 overflows on deep networks, and bounded
    activations (ReLU6, hard sigmoid) saturate, their gradients vanish and
    whole layers score 0 (measured: every kernel of 3 MobileNetV2 blocks
    pruned at 10% global density).

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(1, name="fc")]))
    >>> synflow_scores(model)["fc/kernel"].shape
    (2, 1)
    """
    structure = keras_internals.input_structure(model)
    if structure is None:
        raise ValueError(
            f"SynFlow feeds an all-ones input of the model's input shape; '{model.name}' "
            "is subclassed and has none yet (or takes several inputs). Call it once on a "
            "batch of one input (it then has the shape), build it functionally, or use "
            "another method."
        )
    prunables = wrapping.prunable_weights(model)
    output_keys = set(wrapping.output_keys(model))
    outputs = {p.owner: p.owner.activation for p in prunables
               if p.key in output_keys and hasattr(p.owner, "activation")}
    keras_internals.sync_jax_state(model)
    saved = [keras.ops.convert_to_numpy(v.value) for v in model.variables]
    try:
        # R is taken on the logits: a softmax output sums to 1 whatever the
        # weights, and would score every weight 0.
        for layer in outputs:
            layer.activation = keras.activations.linear
        depthwise = {
            id(p.variable) for p in prunables
            if isinstance(p.owner, _DEPTHWISE) or p.name == "depthwise_kernel"
        }
        for variable, value in zip(model.variables, saved):
            if variable.trainable and np.issubdtype(value.dtype, np.floating):
                variable.assign(_non_expansive(np.abs(value), id(variable) in depthwise))
        values = {p.key: keras.ops.convert_to_numpy(p.variable.value) for p in prunables}
        ones = keras.tree.map_structure(
            lambda spec: np.full((1, *spec.shape[1:]), _SYNFLOW_INPUT, "float32"), structure
        )
        grads = gradients.weight_gradients(
            model, [p.variable for p in prunables], _sum_of_outputs, ones
        )
    finally:
        for variable, value in zip(model.variables, saved):
            variable.assign(value)
        for layer, activation in outputs.items():
            layer.activation = activation
    scores = {p.key: np.abs(g * values[p.key]) for p, g in zip(prunables, grads)}
    if not any(score.any() for score in scores.values()):
        raise ValueError(
            f"SynFlow scored every weight of '{model.name}' 0: the sum of its outputs "
            "does not depend on its weights (a normalised output, or activations that "
            "saturate on an all-positive input). Score a model that outputs logits."
        )
    return scores


def budgets(shapes, density, distribution="uniform"):
    """`{key: sparsity}` targets whose kept weights total `density` of all.

    `uniform`: every key at `density`. `erk`: key k at `ε · sum(shape) /
    prod(shape)` (capped at 1, the rest spread over the others), ε chosen so
    the total is met.

    Example:
    >>> t = budgets({"a": (300, 100), "b": (100, 10)}, 0.3, "erk")
    >>> round(1 - t["a"], 4), round(1 - t["b"], 4)  # b capped dense, a takes the rest
    (0.2767, 1.0)
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}; received {distribution!r}.")
    if distribution == "uniform":
        return {key: 1.0 - density for key in shapes}
    sizes = {key: int(np.prod(shape)) for key, shape in shapes.items()}
    raw = {key: sum(shape) / sizes[key] for key, shape in shapes.items()}
    dense = set()
    while True:
        budget = density * sum(sizes.values()) - sum(sizes[k] for k in dense)
        free = [k for k in shapes if k not in dense]
        epsilon = budget / sum(raw[k] * sizes[k] for k in free)
        over = [k for k in free if epsilon * raw[k] > 1.0]
        if not over:
            return {k: 0.0 if k in dense else 1.0 - epsilon * raw[k] for k in shapes}
        dense.update(over)


def shuffle_within_layers(masks, seed):
    """The "shuffle" ablation: each mask keeps its count of survivors at
    random positions.

    Example:
    >>> m = shuffle_within_layers({"a": np.arange(10) < 3}, seed=0)
    >>> int(m["a"].sum())
    3
    """
    rng = np.random.default_rng(seed)
    shuffled = {}
    for key, mask in masks.items():
        flat = np.asarray(mask, bool).ravel().copy()
        rng.shuffle(flat)
        shuffled[key] = flat.reshape(np.shape(mask))
    return shuffled


# ------------------------------------------------------------------ helpers


def _warn_dead_outputs(model, masks, method):
    """An output unit with no incoming weight is a class the model can only
    predict from its bias: say so (SNIP and GraSP do it at low density)."""
    for key in wrapping.output_keys(model):
        mask = masks[key]
        if mask.ndim < 2:
            continue
        fed = mask.reshape(-1, mask.shape[-1]).any(axis=0)
        if not fed.all():
            warnings.warn(
                f"prune_at_init({method!r}) left {int((~fed).sum())} of {fed.size} output "
                f"units of {key!r} without any incoming weight (outputs "
                f"{np.flatnonzero(~fed).tolist()[:10]}): they only see their bias, and "
                "cannot be learned. Use scope='global' or distribution='erk' (denser "
                "output layers), or a higher density.",
                stacklevel=3,
            )


def _check_arguments(model, method, density, data, scope, distribution, ablation):
    if not wrapping.prunable_weights(model):
        raise ValueError(
            f"Model '{model.name}' has no prunable weights with lottery state; wrap it "
            "first: `keras_lottery.wrap(model)`."
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}.")
    if not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be in (0, 1]; received {density!r}.")
    if method in ("snip", "grasp") and data is None:
        raise ValueError(f"method={method!r} scores weights by loss gradients: pass "
                         "data=(x, y) or an iterable of (x, y) batches.")
    if scope not in decision.SCOPES:
        raise ValueError(f"scope must be one of {decision.SCOPES}; received {scope!r}.")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}; received {distribution!r}.")
    if scope == decision.GLOBAL and distribution != "uniform":
        raise ValueError("scope='global' sets its own per-layer densities; "
                         "distribution='erk' needs scope='layerwise'.")
    if ablation is not None and ablation not in ABLATIONS:
        raise ValueError(f"ablation must be None or one of {ABLATIONS}; received {ablation!r}.")


def _batches(data):
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
        return [data]
    return list(data)


def loss_gradients(model, data, loss=None):
    """`{key: mean over data's batches of d loss / d weight}` for every pruned
    weight, at the model's current weights (dense: pruned entries included).

    Args:
        model: a wrapped model.
        data: one `(x, y)` batch or a list of them.
        loss: `(y_true, y_pred) -> scalar`; default the compiled loss.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
    >>> loss_gradients(model, (np.ones((4, 2), "float32"), np.zeros(4)))["fc/kernel"].shape
    (2, 2)
    """
    return _mean_gradients(model, data, _loss_of(model, loss))


def compiled_loss_gradients(model, loss=None):
    """A compiled `(x, y) -> {key: d loss / d weight}` for every pruned
    weight of `model`, at its weights when called: `loss_gradients` of one
    batch, traced once for loops that call it often (RigL's updates).

    Args:
        model: a wrapped model.
        loss: `(y_true, y_pred) -> scalar`; default the compiled loss.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((2,)), keras.layers.Dense(2, name="fc")]))
    >>> grad = compiled_loss_gradients(model)
    >>> grad(np.ones((4, 2), "float32"), np.zeros(4, "int32"))["fc/kernel"].shape
    (2, 2)
    """
    prunables = wrapping.prunable_weights(model)
    compute = gradients.compiled_weight_gradients(
        model, [p.variable for p in prunables], _loss_of(model, loss))
    return lambda x, y: dict(zip((p.key for p in prunables), compute(x, y)))


def _loss_of(model, loss):
    """`(y_true, y_pred) -> scalar`: `loss`, or the model's compiled loss (a
    dict or list of per-output losses is summed with the compiled
    `loss_weights`), or sparse categorical cross-entropy from logits."""
    weights = None
    if loss is None:
        loss = getattr(model, "loss", None)
        config = model.get_compile_config() if getattr(model, "compiled", False) else None
        weights = (config or {}).get("loss_weights")
    if loss is None:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if not isinstance(loss, (list, tuple, dict)):
        return _scalar(loss)
    return _structured_loss(model, loss, weights)


def _scalar(loss):
    """A loss (object, name or function) as `(y_true, y_pred) -> scalar`:
    `keras.losses.get("mse")` is a per-example function (JAX's grad needs a
    scalar; a tape would silently sum)."""
    fn = keras.losses.get(loss) if isinstance(loss, str) else loss
    if isinstance(fn, keras.losses.Loss):
        return fn
    return lambda y_true, y_pred: keras.ops.mean(fn(y_true, y_pred))


def _structured_loss(model, losses, weights):
    """The sum over a multi-output model's outputs of each output's loss."""
    names = list(getattr(model, "output_names", None) or [])
    if isinstance(losses, dict):
        per_output = {name: _scalar(fn) for name, fn in losses.items() if fn is not None}
    else:
        per_output = {i: _scalar(fn) for i, fn in enumerate(losses) if fn is not None}
    if isinstance(weights, dict):
        factor = {k: float(weights.get(k, 1.0)) for k in per_output}
    elif isinstance(weights, (list, tuple)):
        factor = {k: float(weights[k if isinstance(k, int) else names.index(k)]) for k in per_output}
    else:
        factor = {k: 1.0 for k in per_output}

    def pick(structure, key):
        if isinstance(structure, dict):
            return structure[key if not isinstance(key, int) else names[key]]
        flat = keras.tree.flatten(structure)
        return flat[key if isinstance(key, int) else names.index(key)]

    def total(y_true, y_pred):
        return sum(factor[k] * fn(pick(y_true, k), pick(y_pred, k)) for k, fn in per_output.items())

    return total


def _mean_gradients(model, data, loss):
    return _batch_mean(model, data, loss, gradients.weight_gradients)


def _hessian_gradient(model, data, loss):
    """Hg, g the mean gradient over `data`: double backprop per batch."""
    g = _mean_gradients(model, data, loss)
    return _batch_mean(
        model, data, loss,
        lambda model, variables, fn, x: gradients.hessian_vector_product(
            model, variables, fn, x, [g[key] for key in g]),
    )


def _batch_mean(model, data, loss, compute):
    """`{key: mean over data's batches of compute(model, variables, fn, x)}`
    for the prunable variables, `fn` the batch's loss of the outputs."""
    prunables = wrapping.prunable_weights(model)
    batches = _batches(data)
    total = None
    for x, y in batches:
        y = keras.tree.map_structure(keras.ops.convert_to_tensor, y)
        results = compute(model, [p.variable for p in prunables], lambda out, y=y: loss(y, out), x)
        total = results if total is None else [t + r for t, r in zip(total, results)]
    return {p.key: t / len(batches) for p, t in zip(prunables, total)}


_SYNFLOW_INPUT = 1e-3


_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)


def _non_expansive(magnitude, depthwise=False):
    """|W| scaled so that no output unit sums more than 1 over its inputs
    (vectors such as biases and BatchNorm's are left as they are). A
    depthwise kernel's output channel reads its spatial taps only."""
    if magnitude.ndim < 2 or not magnitude.size:
        return magnitude
    if depthwise:
        peak = magnitude.sum(axis=tuple(range(magnitude.ndim - 2))).max()
    else:
        peak = magnitude.reshape(-1, magnitude.shape[-1]).sum(axis=0).max()
    return magnitude / peak if peak > 0 else magnitude


def _sum_of_outputs(outputs):
    return sum(keras.ops.sum(o) for o in keras.tree.flatten(outputs))


def _synflow(model, current, targets, scope, iterations):
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; received {iterations}.")
    final = {key: 1.0 - t for key, t in targets.items()}
    masks = current
    keras_internals.sync_jax_state(model)
    prunables = wrapping.prunable_weights(model)
    originals = {p.key: keras.ops.convert_to_numpy(p.variable.value) for p in prunables}
    try:
        for step in range(1, iterations + 1):
            step_targets = {key: 1.0 - d ** (step / iterations) for key, d in final.items()}
            masks = decision.select(synflow_scores(model), masks, step_targets, scope=scope)
            wrapping.set_masks(model, masks)
    finally:
        for p in prunables:
            p.variable.assign(originals[p.key])
    return masks
