"""The mask map: the one mask type of keras_lottery, its keys and its counts.

A mask map is a plain `{key: bool array}` dict, `True` where a weight
survives. Every public function that takes or returns masks uses it:
`imp.masks`, `imp.mask_history`, `reference_masks`, ticket files, results
rows, `sparsity_report`, the pruning functions. Keys are parsed here:

- the key of a pruned weight is its path within the model: the names of
  the layers that enclose it below the model itself, then its own name, e.g.
  `"fc1/kernel"`, `"encoder/mha/query/kernel"`,
  `"lstm/lstm_cell/recurrent_kernel"`. For a functional model this is the
  Keras `variable.path`; unlike `variable.path` it does not depend on how
  the model was built or loaded (a Sequential's paths start with its own
  auto-numbered name, `sequential_3/...`, until it is reloaded), and two
  copies of one sub-model get distinct keys (`"encoder_a/fc/kernel"`,
  `"encoder_b/fc/kernel"`). `keras_lottery.core.wrapping` builds them;
- a key's *layer* is everything before its last `/` (`layer_of`).

Rates, exclusions and `output_layers` select keys by pattern (`matches`):
an exact key, a layer path or name (`"fc1"` selects `"lenet/fc1/kernel"`),
or a glob (`"*/attention/*"`).
"""

import fnmatch

import numpy as np


def layer_of(key):
    """The layer part of a mask key.

    Example:
    >>> layer_of("encoder/mha/query/kernel")
    'encoder/mha/query'
    """
    return key.rpartition("/")[0]


def weight_of(key):
    """The variable name part of a mask key.

    Example:
    >>> weight_of("lstm/lstm_cell/recurrent_kernel")
    'recurrent_kernel'
    """
    return key.rpartition("/")[2]


def matches(pattern, key):
    """Whether `pattern` selects `key`.

    A pattern selects a key when it equals the key, matches it as a glob, or
    matches a run of whole `/`-separated components of it: `"fc1"` selects
    `"lenet/fc1/kernel"`, `"fc1/kernel"` and `"*/attention/*"` select what
    they say, `"fc"` does not select `"fc1/kernel"`.

    Example:
    >>> matches("fc1", "lenet/fc1/kernel"), matches("fc", "lenet/fc1/kernel")
    (True, False)
    >>> matches("*/attention_output/*", "enc/mha/attention_output/kernel")
    True
    >>> matches("*/mha/*", "mha/query/kernel")
    True
    """
    candidates = [pattern, pattern + "/*", "*/" + pattern, "*/" + pattern + "/*"]
    if pattern.startswith("*/"):  # "*/attention/*" also selects a top-level "attention"
        candidates += [pattern[2:], pattern[2:] + "/*"]
    return any(fnmatch.fnmatchcase(key, candidate) for candidate in candidates)


def select(pattern, keys):
    """The keys `pattern` selects, in order.

    Example:
    >>> select("fc*", ["fc1/kernel", "fc2/kernel", "out/kernel"])
    ['fc1/kernel', 'fc2/kernel']
    """
    return [key for key in keys if matches(pattern, key)]


def counts(masks):
    """`(kept, total)` over every tensor of a mask map.

    Example:
    >>> counts({"a": np.array([True, False]), "b": np.array([True, True])})
    (3, 4)
    """
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    total = sum(int(np.asarray(m).size) for m in masks.values())
    return kept, total


def density(masks):
    """Fraction of surviving weights over all tensors (1.0 for no tensors).

    Example:
    >>> density({"a": np.array([True, False]), "b": np.array([True, True])})
    0.75
    """
    kept, total = counts(masks)
    return kept / total if total else 1.0


def layer_density(masks):
    """`{layer: density}` over the tensors of each layer, in key order.

    Example:
    >>> layer_density({"fc/kernel": np.array([True, False]),
    ...                "out/kernel": np.array([True])})
    {'fc': 0.5, 'out': 1.0}
    """
    kept, total = {}, {}
    for key, mask in masks.items():
        layer = layer_of(key)
        kept[layer] = kept.get(layer, 0) + int(np.count_nonzero(mask))
        total[layer] = total.get(layer, 0) + int(np.asarray(mask).size)
    return {layer: kept[layer] / total[layer] for layer in kept}


def key_density(masks):
    """`{key: density}` of every tensor.

    Example:
    >>> key_density({"fc/kernel": np.array([True, False])})
    {'fc/kernel': 0.5}
    """
    return {key: density({key: mask}) for key, mask in masks.items()}


def check(masks, shapes, what="masks"):
    """Raises ValueError unless `masks` has exactly the keys and shapes of
    `shapes` (`{key: shape}`) and holds boolean arrays.

    Example:
    >>> check({"a": np.ones(2, bool)}, {"a": (3,)})
    Traceback (most recent call last):
    ...
    ValueError: masks do not fit the model: shape mismatch [('a', (2,), (3,))].
    """
    got = {key: tuple(np.shape(value)) for key, value in masks.items()}
    missing, extra, wrong = _differences(got, shapes)
    problems = []
    if missing:
        problems.append(f"missing {missing}")
    if extra:
        problems.append(f"not in the model {extra}")
    if wrong:
        problems.append(f"shape mismatch {wrong}")
    if problems:
        raise ValueError(f"{what} do not fit the model: {'; '.join(problems)}.")
    for key, value in masks.items():
        if np.asarray(value).dtype != bool:
            raise ValueError(
                f"{what}[{key!r}] has dtype {np.asarray(value).dtype}; masks are "
                "boolean arrays (True keeps a weight)."
            )


def align(source, target):
    """Maps the keys of one model's `{key: shape}` onto another's.

    Keys that are equal match. When they are not all equal (a second instance
    of a model gets other automatic names: `sequential_1/dense_3/kernel`), the
    two lists match by position if they have the same length, the same
    variable names and the same shapes in order.

    Args:
        source: `{key: shape}` of the saved masks, in model order.
        target: `{key: shape}` of the model, in model order.

    Returns:
        `({source key: target key}, how)` with `how` "keys" or "order".

    Raises:
        ValueError: the two do not describe the same prunable weights.

    Example:
    >>> align({"seq_1/d_3/kernel": (4, 2)}, {"seq_2/d_7/kernel": (4, 2)})
    ({'seq_1/d_3/kernel': 'seq_2/d_7/kernel'}, 'order')
    """
    source = {k: tuple(v) for k, v in source.items()}
    target = {k: tuple(v) for k, v in target.items()}
    if source == target:
        return {key: key for key in source}, "keys"
    by_order = len(source) == len(target) and all(
        weight_of(a) == weight_of(b) and source[a] == target[b]
        for a, b in zip(source, target)
    )
    if by_order:
        return dict(zip(source, target)), "order"
    missing, extra, wrong = _differences(source, target)
    raise ValueError(
        f"The masks describe other weights than the model's: missing {missing[:6]}, "
        f"not in the model {extra[:6]}, shape mismatch {wrong[:6]} (and they do "
        f"not match by position either: {len(source)} saved, {len(target)} in the "
        "model). Build the same architecture they came from."
    )


def align_each(mask_maps, shapes, what="masks"):
    """`[mask map]` renamed onto the model's keys (`align`), each checked.

    Args:
        mask_maps: a list of `{key: bool array}` (e.g. a run's mask history).
        shapes: `{key: shape}` of the model, in model order.
        what: how errors name the list.

    Example:
    >>> align_each([{"s_1/d/kernel": np.ones(2, bool)}], {"s_2/d/kernel": (2,)})[0]
    {'s_2/d/kernel': array([ True,  True])}
    """
    aligned = []
    for index, masks in enumerate(mask_maps):
        saved = {key: np.shape(value) for key, value in masks.items()}
        try:
            mapping, _ = align(saved, shapes)
        except ValueError as error:
            raise ValueError(f"{what}[{index}]: {error}") from None
        aligned.append(rename({k: np.asarray(v, bool) for k, v in masks.items()}, mapping))
    return aligned


def rename(masks, mapping):
    """`masks` with keys renamed by `mapping` (from `align`).

    Example:
    >>> rename({"a/kernel": np.ones(1, bool)}, {"a/kernel": "b/kernel"})
    {'b/kernel': array([ True])}
    """
    return {mapping[key]: value for key, value in masks.items()}


def pack(masks):
    """Bit-packed form of a mask map for files: `(arrays, shapes)` with one
    uint8 array per key (one bit per weight).

    Example:
    >>> arrays, shapes = pack({"a": np.array([[True, False, True]])})
    >>> unpack(arrays, shapes)["a"].tolist()
    [[True, False, True]]
    """
    arrays = {key: np.packbits(np.asarray(m, bool).ravel()) for key, m in masks.items()}
    shapes = {key: list(np.shape(m)) for key, m in masks.items()}
    return arrays, shapes


def unpack(arrays, shapes):
    """Inverse of `pack`.

    Example:
    >>> unpack({"a": np.packbits([1, 0])}, {"a": [2]})["a"].tolist()
    [True, False]
    """
    masks = {}
    for key, shape in shapes.items():
        count = int(np.prod(shape, dtype=np.int64))
        bits = np.unpackbits(np.asarray(arrays[key], np.uint8), count=count)
        masks[key] = bits.astype(bool).reshape(tuple(shape))
    return masks


def _differences(got, expected):
    """`(missing, extra, wrong)` between two `{key: shape}` maps, sorted:
    keys only `expected` has, keys only `got` has, `(key, got, expected)`
    shape mismatches."""
    got = {key: tuple(shape) for key, shape in got.items()}
    expected = {key: tuple(shape) for key, shape in expected.items()}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    wrong = sorted(
        (key, got[key], expected[key]) for key in set(got) & set(expected)
        if got[key] != expected[key]
    )
    return missing, extra, wrong
