"""One-shot pruning of a trained model, without retraining: magnitude,
Wanda (Sun et al. 2023) and SparseGPT (Frantar & Alistarh 2023).

`prune_one_shot(model, method, density=... | pattern="2:4",
calibration_data=...)` prunes the Dense and EinsumDense kernels of a wrapped
model (the attention and MLP projections of a transformer) one layer at a
time, in the model's layer order. For each layer, the calibration batches
run through the model as pruned so far and the layer's inputs X are
accumulated into H = XᵀX (float64, on the host); then:

- `magnitude`: the smallest |W| of the layer go;
- `wanda`: score |W_ij| · ‖X_i‖ (‖X_i‖² = H_ii, the input feature's norm over
  every calibration token); each output unit keeps its own top inputs;
- `sparsegpt`: Optimal-Brain-Surgeon reconstruction with H + λI (λ =
  `damping` · mean diag H): columns (input features) are visited in blocks of
  `block_size`; within a block the mask keeps the weights with the largest
  w² / [H⁻¹]ᵢᵢ², and every pruned weight's error is compensated on the
  block's later columns through the Cholesky factor of H⁻¹, the block's
  accumulated error on all later columns.

With `pattern="N:M"` every M consecutive input features of each output unit
keep N (the same groups as `IterativeMagnitudePruning(pattern=...)` and
`check_pattern`). The masks are set on the model (`get_masks`, `strip`,
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
import re
import time
import warnings

import keras
import numpy as np

from keras_lottery.backend import keras_internals
from keras_lottery.sparsity import structure
from keras_lottery.core import wrapping

METHODS = ("magnitude", "wanda", "sparsegpt")


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


def prune_one_shot(model, method="magnitude", density=None, pattern=None,
                   calibration_data=None, damping=0.01, block_size=128, keys=None, verbose=1):
    """Prunes a trained, wrapped model's Dense/EinsumDense kernels in one shot
    (see the module docstring).

    Args:
        model: a model wrapped by `keras_lottery.wrap`, trained.
        method: "magnitude", "wanda" or "sparsegpt".
        density: fraction of each kernel's weights kept; or
        pattern: "N:M" (e.g. "2:4") instead of `density`.
        calibration_data: batches of model inputs (a list, or any iterable
            that can be read once per layer; a single array or dict is one
            batch). Needed by wanda and sparsegpt.
        damping: SparseGPT's λ as a fraction of the mean diagonal of H.
        block_size: SparseGPT's columns per block.
        keys: kernel keys to prune (default: every Dense/EinsumDense kernel
            the model prunes; embeddings and convolutions are left alone).
        verbose: 1 prints one line per layer.

    Returns:
        A `OneShotResult`.

    Raises:
        ValueError: an unknown method, neither or both of density/pattern,
            missing calibration data, a key that is not such a kernel.

    Example:
    >>> model = keras_lottery.wrap(keras.Sequential([
    ...     keras.Input((8,)), keras.layers.Dense(4, name="fc")], name="net"))
    >>> x = np.ones((16, 8), "float32")
    >>> prune_one_shot(model, "wanda", pattern="2:4", calibration_data=x,
    ...                verbose=0).masks["fc/kernel"].sum(axis=0).tolist()
    [4, 4, 4, 4]
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; received {method!r}.")
    if (density is None) == (pattern is None):
        raise ValueError("Pass exactly one of density= (fraction kept) and pattern='N:M'.")
    if density is not None and not 0.0 < float(density) <= 1.0:
        raise ValueError(f"density must be in (0, 1]; received {density!r}.")
    group = None if pattern is None else structure.parse_pattern(pattern)
    batches = _batches(calibration_data)
    if method != "magnitude" and not batches:
        raise ValueError(f"method={method!r} needs calibration_data (batches of model inputs).")
    targets = _targets(model, keys)
    masks, errors = {}, {}
    for index, (weight, layout) in enumerate(targets):
        kernel = layout.to_matrix(_value(weight.variable))  # [inputs, outputs]
        h = _input_gram(model, weight.owner, layout, batches) if batches else None
        if method == "sparsegpt":
            mask, new = _sparsegpt(kernel, h, density, group, damping, block_size)
        else:
            scores = np.abs(kernel)
            if method == "wanda":
                scores = scores * np.sqrt(np.diag(h))[:, None]
            mask = _keep_per_output(scores, density, group)
            new = kernel * mask
        weight.variable.assign(layout.from_matrix(new).astype(weight.variable.dtype))
        full = layout.from_matrix(mask).astype(bool)
        wrapping.set_masks(model, {weight.key: full})
        masks[weight.key] = full
        errors[weight.key] = None if h is None else _relative_error(kernel, new, h)
        if verbose:
            error = "" if h is None else f", reconstruction error {errors[weight.key]:.4f}"
            print(f"prune_one_shot({method}) {index + 1}/{len(targets)} {weight.key}: "
                  f"{100 * mask.mean():.1f}% kept{error}", flush=True)
    wrapping.enable(model)  # the masks hold in a fine-tuning fit, on every backend
    return OneShotResult(masks=masks, errors=errors, seconds=time.perf_counter() - started)


@dataclasses.dataclass(frozen=True)
class KernelLayout:
    """How a kernel maps to an [inputs, outputs] matrix: the kernel axes the
    layer's input contracts with come first (in kernel order).

    Example:
    >>> KernelLayout((8, 2, 4), (0,), (1, 2)).to_matrix(np.zeros((8, 2, 4))).shape
    (8, 8)
    """

    shape: tuple
    input_axes: tuple
    output_axes: tuple

    @property
    def inputs(self):
        return int(np.prod([self.shape[a] for a in self.input_axes]))

    def to_matrix(self, kernel):
        return np.transpose(kernel, self.input_axes + self.output_axes).reshape(self.inputs, -1)

    def from_matrix(self, matrix):
        order = self.input_axes + self.output_axes
        shaped = matrix.reshape([self.shape[a] for a in order])
        return np.transpose(shaped, np.argsort(order))


def kernel_layout(layer, shape):
    """How a Dense or EinsumDense kernel of `shape` reads as an [input
    features, output features] matrix (`to_matrix` / `from_matrix`), or None
    when the layer's input does not end with the axes its kernel contracts.

    Example:
    >>> layer = keras.layers.EinsumDense("btnh,nhd->btd", (5, 8))
    >>> layout = kernel_layout(layer, (2, 4, 8))
    >>> layout.input_axes, layout.inputs
    ((0, 1), 8)
    """
    if isinstance(layer, keras.layers.Dense):
        return KernelLayout(tuple(shape), (0,), (1,))
    equation = getattr(layer, "equation", "")
    match = re.fullmatch(r"([a-z.]+),([a-z]+)->([a-z.]+)", equation.replace(" ", ""))
    if match is None:
        return None
    inputs, kernel, _ = match.groups()
    contracted = [letter for letter in kernel if letter in inputs]
    # The layer's input, flattened to [tokens, features], must end with the
    # contracted letters in kernel order.
    if not contracted or not inputs.endswith("".join(contracted)):
        return None
    input_axes = tuple(kernel.index(letter) for letter in contracted)
    output_axes = tuple(a for a in range(len(kernel)) if a not in input_axes)
    return KernelLayout(tuple(shape), input_axes, output_axes)


def _targets(model, keys):
    found, refused = [], {}
    for weight in wrapping.prunable_weights(model):
        if not weight.key.endswith("kernel"):
            continue
        if not isinstance(weight.owner, (keras.layers.Dense, keras.layers.EinsumDense)):
            continue
        layout = kernel_layout(weight.owner, tuple(weight.variable.shape))
        if layout is None:
            refused[weight.key] = getattr(weight.owner, "equation", "?")
            continue
        found.append((weight, layout))
    if keys is not None:
        wanted = list(keys)
        unknown = sorted(set(wanted) - {w.key for w, _ in found})
        if unknown:
            reasons = {k: f"equation {refused[k]!r}" for k in unknown if k in refused}
            raise ValueError(
                f"prune_one_shot: {unknown} are not Dense/EinsumDense kernels it can prune "
                f"{reasons or ''}. Candidates: {[w.key for w, _ in found][:12]}.")
        found = [(w, layout) for w, layout in found if w.key in wanted]
    if not found:
        raise ValueError(f"prune_one_shot: model '{model.name}' has no Dense/EinsumDense "
                         "kernel to prune (wrap it with keras_lottery.wrap first).")
    if keys is None:
        chosen = {w.key for w, _ in found}
        left = [f"{w.key} ({type(w.owner).__name__})"
                for w in wrapping.prunable_weights(model) if w.key not in chosen]
        if left:
            warnings.warn(
                f"prune_one_shot prunes Dense/EinsumDense kernels only ({len(chosen)} here); "
                f"{len(left)} other pruned weight(s) keep their masks: "
                f"{', '.join(left[:6])}{', ...' if len(left) > 6 else ''}. Prune those "
                "with IterativeMagnitudePruning or prune_at_init, or exclude them from "
                "wrapping to silence this.",
                stacklevel=3,
            )
    return found


def _batches(data):
    if data is None:
        return []
    if isinstance(data, (np.ndarray, dict)) or hasattr(data, "shape"):
        return [data]
    return list(data)


def _value(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable.value), np.float64)


def _input_gram(model, layer, layout, batches):
    """XᵀX of the layer's inputs over every calibration batch."""
    gram = np.zeros((layout.inputs, layout.inputs))
    original = layer.call

    def capture(*args, **kwargs):
        x = args[0] if args else kwargs["inputs"]
        x = np.asarray(keras.ops.convert_to_numpy(x), np.float64).reshape(-1, layout.inputs)
        gram[...] += x.T @ x
        return original(*args, **kwargs)

    keras_internals.sync_jax_state(model)
    patched_before = "call" in vars(layer)
    layer.call = capture
    try:
        for batch in batches:
            model(batch, training=False)
    finally:
        if patched_before:
            layer.call = original
        else:
            del layer.call  # back to the class's method
    return gram


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
    _check_groups(inputs, m)
    grouped = scores.reshape(inputs // m, m, outputs)
    order = np.argsort(-grouped, axis=1, kind="stable")[:, :n]
    kept = np.zeros(grouped.shape, bool)
    np.put_along_axis(kept, order, True, axis=1)
    return kept.reshape(inputs, outputs)


def _check_groups(inputs, m):
    if inputs % m:
        raise ValueError(f"pattern groups of {m} do not divide a kernel's {inputs} input "
                         "features; pass keys= without it, or use density=.")


def _sparsegpt(kernel, h, density, group, damping, block_size, keep=None):
    """SparseGPT on one [inputs, outputs] kernel; returns (mask, new kernel).
    `keep` (bool [inputs, outputs]) fixes the mask: only the reconstruction runs."""
    w = kernel.T.copy()  # the paper's layout: rows are output units
    columns = w.shape[1]
    h = h.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices(columns)] += damping * np.mean(np.diag(h))
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H⁻¹
    mask = np.zeros(w.shape, bool)  # True: kept
    if group is not None:
        _check_groups(columns, group[1])
        block_size = max(group[1], block_size - block_size % group[1])
    for start in range(0, columns, block_size):
        stop = min(start + block_size, columns)
        block = w[:, start:stop].copy()
        errors = np.zeros_like(block)
        hinv_block = hinv[start:stop, start:stop]
        diag = np.diag(hinv_block)
        if keep is not None:
            pruned = ~keep.T[:, start:stop]
        elif group is None:
            saliency = block ** 2 / diag[None, :] ** 2
            prune = int(round((1.0 - density) * saliency.size))
            pruned = np.zeros(saliency.size, bool)
            pruned[np.argsort(saliency, axis=None, kind="stable")[:prune]] = True
            pruned = pruned.reshape(saliency.shape)
        else:
            pruned = np.zeros(block.shape, bool)
        for i in range(stop - start):
            if keep is None and group is not None and i % group[1] == 0:
                n, m = group
                saliency = block[:, i:i + m] ** 2 / diag[None, i:i + m] ** 2
                lowest = np.argsort(saliency, axis=1, kind="stable")[:, :m - n]
                np.put_along_axis(pruned[:, i:i + m], lowest, True, axis=1)
            column = block[:, i]
            quantized = np.where(pruned[:, i], 0.0, column)
            error = (column - quantized) / hinv_block[i, i]
            block[:, i:] -= np.outer(error, hinv_block[i, i:])
            block[:, i] = quantized
            errors[:, i] = error
        w[:, start:stop] = block
        w[:, stop:] -= errors @ hinv[start:stop, stop:]
        mask[:, start:stop] = ~pruned
    w[~mask] = 0.0
    return mask.T, w.T


def _relative_error(kernel, new, h):
    delta = kernel - new
    total = np.trace(kernel.T @ h @ kernel)
    return float(np.trace(delta.T @ h @ delta) / total) if total > 0 else 0.0
