"""One-shot pruning of a trained model, without retraining: magnitude,
Wanda (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023).

`prune_one_shot(model, scorer, density=... | structure="2:4",
calibration_data=...)` prunes the Dense and EinsumDense kernels of a wrapped
model (the attention and MLP projections of a transformer) one layer at a
time, in the model's layer order. For each layer, the calibration batches
run through the model as pruned so far and the layer's inputs X are
accumulated into H = XᵀX (float64, on the host); then:

- `magnitude`: the smallest |W| of each output unit's inputs go;
- `wanda`: score |W_ij| · ‖X_i‖ (‖X_i‖² = H_ii, the input feature's norm over
  every calibration token); each output unit keeps its own top inputs;
- `sparsegpt`: Optimal-Brain-Surgeon reconstruction with H + λI (λ =
  `damping` · mean diag H): columns (input features) are visited in blocks of
  `block_size`; within a block the mask keeps the weights with the largest
  w² / [H⁻¹]ᵢᵢ², and every pruned weight's error is compensated on the
  block's later columns through the Cholesky factor of H⁻¹, the block's
  accumulated error on all later columns.

Any other scorer of `keras_lottery.methods.scorers` ranks the same way
(each output unit keeps its top inputs). With `structure="N:M"` every M
consecutive input features of each output unit keep N (the same groups as
`IterativeMagnitudePruning(structure=...)` and `check_pattern`). The masks are set on the model (`get_masks`, `strip`,
export and ticket files take them as for IMP); SparseGPT also writes the
reconstructed weights.

Example:
>>> model = keras_lottery.wrap(keras.Sequential([
...     keras.Input((8,)), keras.layers.Dense(4, name="fc")], name="net"))
>>> x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
>>> result = prune_one_shot(model, "sparsegpt", density=0.5, calibration_data=[x], verbose=0)
>>> float(result.masks["fc/kernel"].mean())
0.5
"""

import dataclasses
import time
import warnings

import numpy as np

from keras_lottery.core import wrapping
from keras_lottery.methods import layer_inputs
from keras_lottery.methods import scorers
from keras_lottery.methods import sparsegpt
from keras_lottery.sparsity import structure as structure_lib
from keras_lottery.sparsity import vocabulary


@dataclasses.dataclass(frozen=True)
class OneShotResult:
    """What `prune_one_shot` did.

    Attributes:
        masks: `{key: bool array}` of the pruned kernels (also set on the model).
        errors: `{key: relative reconstruction error}` on the calibration
            inputs, ‖X(W − Ŵ)‖² / ‖XW‖² (None for magnitude without data).
        seconds: wall time, calibration passes included.

    Example:
    >>> OneShotResult(masks={}, errors={}, seconds=0.0).seconds
    0.0
    """

    masks: dict
    errors: dict
    seconds: float


def prune_one_shot(model, scorer="magnitude", density=None, structure="weight",
                   calibration_data=None, exclude=None, distribution="uniform", damping=0.01,
                   block_size=128, seed=0, verbose=1, **kwargs):
    """Prunes a trained, wrapped model's Dense/EinsumDense kernels in one shot
    (see the module docstring).

    Args:
        model: a model wrapped by `keras_lottery.wrap`, trained.
        scorer: "magnitude", "wanda", "sparsegpt", another registered scorer
            name, or a `keras_lottery.methods.scorers.Scorer`.
        density: fraction of each kernel's weights kept; a dict gives
            per-kernel values by key, layer name or glob next to its
            "default" (1.0 leaves a kernel as it is). Or
        structure: "N:M" (e.g. "2:4") instead of `density`; "weight" (the
            default) prunes single weights at `density`.
        calibration_data: batches of model inputs (a list, or any iterable
            that can be read once per layer; a single array or dict is one
            batch). Needed by wanda and sparsegpt.
        exclude: keys, layer names or globs of kernels to leave as they are.
        distribution: "uniform" only: each output unit keeps its own top
            inputs (Wanda's comparison group), so every kernel is pruned to
            its own density.
        damping: SparseGPT's λ as a fraction of the mean diagonal of H.
        block_size: SparseGPT's columns per block.
        seed: the seed of the random scorer.
        verbose: 1 prints one line per layer.

    Returns:
        A `OneShotResult`.

    Raises:
        ValueError: an unknown scorer, neither or both of density and an N:M
            structure, missing calibration data, a pattern selecting no
            kernel it can prune.
        TypeError: an argument renamed by the one vocabulary (`method=`,
            `pattern=`, `keys=`), naming the new one.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="fc")], name="net"))
    >>> x = np.ones((16, 8), "float32")
    >>> prune_one_shot(model, "wanda", structure="2:4", calibration_data=x,
    ...                verbose=0).masks["fc/kernel"].sum(axis=0).tolist()
    [4, 4, 4, 4]
    """
    vocabulary.refuse_renamed("prune_one_shot", kwargs)
    started = time.perf_counter()
    vocabulary.distribution_argument(
        distribution, (vocabulary.UNIFORM,), "prune_one_shot",
        "each output unit keeps its own top inputs (Wanda's comparison group), so "
        "every kernel is pruned to its own density; use distribution='uniform'.")
    template = vocabulary.structure_argument(structure)
    if isinstance(template, structure_lib.Units):
        raise ValueError("prune_one_shot prunes single weights or N:M groups; for whole "
                         "units use IterativeMagnitudePruning(structure='neuron').")
    group = (template.n, template.m) if isinstance(template, structure_lib.NM) else None
    if (density is None) == (group is None):
        raise ValueError("Pass exactly one of density= (fraction kept) and structure='N:M'.")
    batches = scorers.input_batches(calibration_data)
    scorer = scorers.get(scorer, calibration_data=batches or None, damping=damping,
                         block_size=block_size, seed=seed)
    targets = _targets(model, exclude)
    keys = [weight.key for weight, _ in targets]
    densities = (vocabulary.per_weight(density, keys, "density") if group is None
                 else dict.fromkeys(keys, None))
    targets = [(w, layout) for w, layout in targets if densities[w.key] != 1.0]
    masks, errors = {}, {}
    for index, (weight, layout) in enumerate(targets):
        context = scorers.ScoringContext(model, keys=[weight.key], seed=seed)
        kernel = layout.to_matrix(layer_inputs.kernel_value(weight.variable))  # [in, out]
        h = context.input_gram(weight.key, batches) if batches else None
        mask, new = _prune_kernel(scorer, context, weight.key, layout, kernel, h,
                                  densities[weight.key], group)
        weight.variable.assign(layout.from_matrix(new).astype(weight.variable.dtype))
        full = layout.from_matrix(mask).astype(bool)
        wrapping.set_masks(model, {weight.key: full})
        masks[weight.key] = full
        errors[weight.key] = None if h is None else _relative_error(kernel, new, h)
        if verbose:
            error = "" if h is None else f", reconstruction error {errors[weight.key]:.4f}"
            print(f"prune_one_shot({scorer.name}) {index + 1}/{len(targets)} {weight.key}: "
                  f"{100 * mask.mean():.1f}% kept{error}", flush=True)
    wrapping.enable(model)  # the masks hold in a fine-tuning fit, on every backend
    return OneShotResult(masks=masks, errors=errors, seconds=time.perf_counter() - started)


def _prune_kernel(scorer, context, key, layout, kernel, h, density, group):
    """`(mask, new kernel)` of one [inputs, outputs] kernel."""
    if isinstance(scorer, scorers.SparseGPT):
        return scorer.prune_layer(kernel, h, density, group)
    if isinstance(scorer, scorers.CalibrationScorer):
        if h is None:
            raise ValueError(f"scorer={scorer.name!r} needs calibration_data (batches of "
                             "model inputs).")
        scores = scorer.matrix_scores(kernel, h)
    else:
        scores = layout.to_matrix(np.asarray(scorer.scores(context)[key], np.float64))
    mask = _keep_per_output(scores, density, group)
    return mask, kernel * mask


def _targets(model, exclude):
    prunables = wrapping.prunable_weights(model)
    excluded = vocabulary.excluded_keys(exclude, [w.key for w in prunables])
    found, refused = [], {}
    for weight in prunables:
        if weight.key in excluded or not layer_inputs.is_dense_kernel(weight):
            continue
        layout = layer_inputs.kernel_layout(weight.owner, tuple(weight.variable.shape))
        if layout is None:
            refused[weight.key] = getattr(weight.owner, "equation", "?")
            continue
        found.append((weight, layout))
    if not found:
        raise ValueError(f"prune_one_shot: model '{model.name}' has no Dense/EinsumDense "
                         "kernel to prune (wrap it with keras_lottery.wrap first).")
    chosen = {w.key for w, _ in found}
    left = [f"{w.key} ({type(w.owner).__name__})"
            for w in prunables if w.key not in chosen and w.key not in excluded]
    if left:
        reasons = {k: f"equation {v!r}" for k, v in refused.items()}
        warnings.warn(
            f"prune_one_shot prunes Dense/EinsumDense kernels only ({len(chosen)} here); "
            f"{len(left)} other pruned weight(s) keep their masks: "
            f"{', '.join(left[:6])}{', ...' if len(left) > 6 else ''}"
            f"{f' (cannot read the inputs of {reasons})' if reasons else ''}. Prune those "
            "with IterativeMagnitudePruning or prune_at_init, or pass exclude=[...] to "
            "leave them alone and silence this.",
            stacklevel=3,
        )
    return found


def _keep_per_output(scores, density, group):
    """Bool [inputs, outputs]: per output column, the top `density` of its
    inputs, or the top N of every M consecutive inputs."""
    inputs, outputs = scores.shape
    mask = np.zeros(scores.shape, bool)
    if group is None:
        keep = int(round(density * inputs))
        order = np.argsort(-scores, axis=0, kind="stable")[:keep]
        np.put_along_axis(mask, order, True, axis=0)
        return mask
    n, m = group
    sparsegpt.check_groups(inputs, m)
    grouped = scores.reshape(inputs // m, m, outputs)
    order = np.argsort(-grouped, axis=1, kind="stable")[:, :n]
    kept = np.zeros(grouped.shape, bool)
    np.put_along_axis(kept, order, True, axis=1)
    return kept.reshape(inputs, outputs)


def _relative_error(kernel, new, h):
    delta = kernel - new
    total = np.trace(kernel.T @ h @ kernel)
    return float(np.trace(delta.T @ h @ delta) / total) if total > 0 else 0.0
