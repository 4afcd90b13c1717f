"""SparseGPT (Frantar & Alistarh 2023) on one kernel: the Optimal-Brain-
Surgeon mask and reconstruction, on NumPy arrays.

`prune_layer(kernel, gram, density | group)` visits the input features
(columns of the paper's layout) in blocks; within a block the mask keeps the
weights with the largest w² / [U]ᵢᵢ², U the upper Cholesky factor of
(H + λI)⁻¹, and every pruned weight's error is compensated on the block's
later columns, the block's accumulated error on all later columns.

Example:
>>> x = np.random.default_rng(0).normal(size=(32, 8))
>>> mask, new = prune_layer(np.ones((8, 2)), x.T @ x, 0.5, None)
>>> int(mask.sum())
8
"""

import numpy as np


def check_groups(inputs, m):
    """ValueError when N:M groups of `m` do not divide a kernel's `inputs`.

    Example:
    >>> check_groups(8, 4)
    """
    if inputs % m:
        raise ValueError(f"N:M groups of {m} do not divide a kernel's {inputs} input "
                         "features; exclude it (exclude=[...]), or use density=.")


def damped(gram, damping):
    """`(H + λI, dead)`: the damped Hessian, λ = `damping` · mean diag H, with
    dead inputs (a zero diagonal: always 0) made harmless, and their mask.

    Example:
    >>> h, dead = damped(np.diag([2.0, 0.0]), 0.5)
    >>> h.tolist(), dead.tolist()
    ([[2.75, 0.0], [0.0, 1.75]], [False, True])
    """
    h = np.array(gram, np.float64, copy=True)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    h[np.diag_indices(len(h))] += damping * np.mean(np.diag(h))
    return h, dead


def prune_layer(kernel, gram, density, group, damping=0.01, block_size=128, keep=None):
    """SparseGPT on one [inputs, outputs] kernel: `(mask, new kernel)` at
    `density` (fraction kept) or N:M `group` (`(n, m)`). `keep` (bool
    [inputs, outputs]) fixes the mask: only the reconstruction runs.

    Example:
    >>> x = np.random.default_rng(0).normal(size=(32, 8))
    >>> mask, new = prune_layer(np.ones((8, 2)), x.T @ x, 0.5, None)
    >>> int(mask.sum()), bool((new[~mask] == 0).all())
    (8, True)
    """
    w = kernel.T.copy()  # the paper's layout: rows are output units
    columns = w.shape[1]
    h, dead = damped(gram, damping)
    w[:, dead] = 0.0
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T  # upper Cholesky factor of H⁻¹
    mask = np.zeros(w.shape, bool)  # True: kept
    if group is not None:
        check_groups(columns, group[1])
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
