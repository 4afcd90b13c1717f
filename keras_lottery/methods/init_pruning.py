"""Pruning at initialization: SNIP, GraSP, SynFlow, magnitude and random
masks for a wrapped model, before any training, with per-layer budgets and
the "Missing the Mark" ablations.

Every method is a scorer of `keras_lottery.methods.scorers` (`{key: array}`,
higher survives) handed to the same selector IMP uses
(`keras_lottery.sparsity.decision.select`), so masks, θ0, rewinding, controls,
tickets and export work unchanged: `random` (the baseline every method must
beat), `magnitude` (|θ0|), `snip`, `grasp` and `synflow` (data-free, pruned
iteratively over `iterations` steps of an exponential density schedule), or
any registered scorer.

How much and where, in the one vocabulary (`keras_lottery.sparsity.vocabulary`):
`density` (a float or per-weight dict), `distribution="uniform"` (every layer
to `density`), `"erk"` (Erdős–Rényi-Kernel, as in RigL: denser small layers,
the same total) or `"global"` (one threshold over all scores); `structure`
("weight", "neuron"/"channel", "N:M"); `exclude`.

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

import numpy as np

from keras_lottery.core import rewinding
from keras_lottery.core import wrapping
from keras_lottery.methods import scorers as scorers_lib
from keras_lottery.sparsity import budgets
from keras_lottery.sparsity import decision
from keras_lottery.sparsity import structure as structure_lib
from keras_lottery.sparsity import vocabulary

ABLATIONS = ("shuffle", "invert", "reinit")


def prune_at_init(
    model,
    scorer,
    density,
    data=None,
    loss=None,
    distribution="uniform",
    structure="weight",
    exclude=None,
    ablation=None,
    iterations=100,
    seed=0,
    temperature=1.0,
    **kwargs,
):
    """Chooses masks for the wrapped `model` at its current (initial) weights
    and sets them: pruned weights become 0, survivors keep their values.

    Args:
        model: a wrapped (`keras_lottery.wrap`), built model.
        scorer: a registered scorer name ("random", "magnitude", "snip",
            "grasp", "synflow", ...) or a `keras_lottery.methods.scorers.Scorer`.
        density: fraction of the prunable weights to keep, in (0, 1]; a dict
            gives per-weight values by key, layer name or glob next to its
            "default" (1.0 leaves a weight dense).
        data: for `snip`/`grasp`: an `(x, y)` tuple or an iterable of
            `(x, y)` batches (all of it is used; pass a few batches). Not
            read by the other scorers.
        loss: `(y_true, y_pred) -> scalar`, default the model's compiled loss
            or sparse categorical cross-entropy from logits.
        distribution: "uniform" (every weight tensor at `density`), "global"
            (one threshold over every score) or "erk".
        structure: "weight", "neuron" / "channel" (whole output units; the
            output layers stay unstructured) or "N:M".
        exclude: keys, layer names or globs of weights left dense.
        ablation: None or one of `ABLATIONS`.
        iterations: the pruning steps of an iterative scorer (SynFlow).
        seed: seed of `random`, `shuffle` and `reinit`.
        temperature: SNIP/GraSP compute the loss on `outputs / temperature`
            (GraSP's reference code uses 200 on logits).

    Returns:
        The new `{key: bool array}` masks (also set on the model).

    Raises:
        ValueError: an unknown scorer, distribution, structure or ablation, a
            density outside (0, 1], a gradient scorer without data, an
            unwrapped model.
        TypeError: an argument renamed by the one vocabulary (`method=`,
            `scope=`), naming the new one.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)]))
    >>> x, y = np.ones((8, 4), "float32"), np.zeros(8, "int32")
    >>> masks = prune_at_init(model, "snip", 0.5, data=(x, y))
    >>> int(sum(m.sum() for m in masks.values()))
    8
    """
    vocabulary.refuse_renamed("prune_at_init", kwargs)
    prunables = wrapping.prunable_weights(model)
    if not prunables:
        raise ValueError(
            f"Model '{model.name}' has no prunable weights with lottery state; wrap it "
            "first: `keras_lottery.wrap(model)`."
        )
    scorer = scorers_lib.get(scorer, data=data, loss=loss, seed=seed, temperature=temperature)
    vocabulary.distribution_argument(distribution)
    template = vocabulary.structure_argument(structure)
    vocabulary.check_combination(distribution, template)
    if ablation is not None and ablation not in ABLATIONS:
        raise ValueError(f"ablation must be None or one of {ABLATIONS}; received {ablation!r}.")
    if scorer.iterative and ablation == "invert":
        raise ValueError(f"ablation='invert' needs one score per weight; {scorer.name}'s "
                         "iterative masks have none. Use 'shuffle' or 'reinit'.")
    if int(iterations) < 1:
        raise ValueError(f"iterations must be >= 1; received {iterations}.")
    current = wrapping.get_masks(model)
    shapes = {key: mask.shape for key, mask in current.items()}
    densities = vocabulary.per_weight(density, list(shapes), "density", exclude=exclude)
    targets = budgets.targets(shapes, densities, distribution)
    structures = structure_lib.structures_for(
        [(p.key, type(p.owner).__name__, tuple(p.shape)) for p in prunables], template,
        skip=() if isinstance(template, structure_lib.NM) else wrapping.output_keys(model))
    if isinstance(template, structure_lib.NM):
        targets = structure_lib.final_targets(structures, targets)
    select = lambda scores, masks, targets: decision.select(  # noqa: E731
        scores, masks, targets, distribution=distribution, structure=structures)
    if scorer.iterative:
        new = _iteratively(model, scorer, select, current, targets, int(iterations), seed)
    else:
        scores = scorer.scores(scorers_lib.ScoringContext(model, current, seed=seed))
        if ablation == "invert":
            scores = decision.inverted(scores)
        new = select(scores, current, targets)
    if ablation == "shuffle":
        new = shuffle_within_layers(new, seed)
    emptied = [key for key, mask in new.items() if mask.size and not mask.any()]
    if emptied:
        warnings.warn(
            f"prune_at_init({scorer.name!r}) pruned every weight of {emptied}: no signal "
            "crosses those layers (layer collapse). Use distribution='uniform' or 'erk' "
            "to give each layer a budget, or a higher density.",
            stacklevel=2,
        )
    _warn_dead_outputs(model, new, scorer.name)
    wrapping.set_masks(model, new)
    wrapping.enable(model)  # the masks hold in the user's next fit, on every backend
    if ablation == "reinit":
        rewinding.reinitialize(model, seed)
    return new


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
                "cannot be learned. Use distribution='global' or 'erk' (denser "
                "output layers), or a higher density.",
                stacklevel=3,
            )


def _iteratively(model, scorer, select, current, targets, iterations, seed):
    """Prunes over `iterations` steps of an exponential density schedule,
    scoring the masked model again at each (SynFlow's way); the weights are
    restored afterwards."""
    final = {key: 1.0 - t for key, t in targets.items()}
    masks = current
    prunables = wrapping.prunable_weights(model)
    originals = wrapping.read_weights(model)
    try:
        for step in range(1, iterations + 1):
            step_targets = {key: 1.0 - d ** (step / iterations) for key, d in final.items()}
            scores = scorer.scores(scorers_lib.ScoringContext(model, masks, seed=seed))
            masks = select(scores, masks, step_targets)
            wrapping.set_masks(model, masks)
    finally:
        for p in prunables:
            p.variable.assign(originals[p.key])
    return masks
