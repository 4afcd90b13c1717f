"""The one sparsity vocabulary of every way to prune, and the checks of the
arguments that speak it.

`IterativeMagnitudePruning`, `prune_at_init`, `prune_one_shot` and
`DynamicSparseTraining` take the same names:

- how much: `density=` (fraction kept) for the methods that prune once;
  `rate=` / `schedule=` (per round) for IMP. A dict gives per-weight values
  by key, layer name or glob next to its `"default"`.
- `distribution=`: how the total is spread over the weights: `"uniform"`
  (the same fraction in every weight tensor), `"global"` (one threshold
  over all of them) or `"erk"` (Erdős–Rényi-Kernel: denser small layers,
  the same total).
- `structure=`: what one decision removes: `"weight"`, `"neuron"` /
  `"channel"` (whole output units, ranked by the L1 norm of their scores;
  `Units(norm="l2")` for L2), `"N:M"` (N of every M consecutive inputs), or
  a `Units` / `NM` object.
- `scorer=`: what ranks the weights (`keras_lottery.methods.scorers`).
- `exclude=`: keys, layer names or globs whose weights stay dense.

The names the entry points used before are refused with the new one
(`refuse_renamed`).

Example:
>>> distribution_argument("erk")
'erk'
>>> structure_argument("2:4").describe()
'2:4'
"""

import numbers

from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.sparsity import structure as structure_lib

UNIFORM = "uniform"
GLOBAL = "global"
ERK = "erk"
DISTRIBUTIONS = (UNIFORM, GLOBAL, ERK)
DEFAULT = "default"

RENAMED = {
    "scope": "distribution= ('layerwise' is now 'uniform', 'global' stays 'global')",
    "granularity": "structure= (structure='neuron' or structure='channel')",
    "pattern": "structure= (structure='2:4')",
    "norm": ("structure= (structure=keras_lottery.sparsity.structure.Units(norm='l2') "
             "ranks units by their L2 norm)"),
    "method": "scorer= (the same names: scorer='snip')",
    "keys": ("density= and exclude= (density={'default': 1.0, 'fc1/kernel': 0.5} prunes "
             "fc1's kernel only; exclude=[...] leaves the named weights dense)"),
}

_PLURALS = {"rate": "rates", "density": "densities"}

GLOBAL_TAKES_WEIGHTS = (
    "distribution='global' ranks single weights against each other with one "
    "threshold; it does not combine with a neuron/channel structure or an N:M "
    "pattern. Use distribution='uniform' (or 'erk' for units)."
)


def refuse_renamed(entry, kwargs, renamed=tuple(RENAMED)):
    """Raises TypeError for leftover keyword arguments: a name from before
    the one vocabulary gets its new name, anything else Python's message.

    Example:
    >>> refuse_renamed("prune_at_init", {"scope": "global"})
    Traceback (most recent call last):
    ...
    TypeError: prune_at_init(scope=...) is renamed: use distribution= ('layerwise' is now 'uniform', 'global' stays 'global'). See README.md, 'One vocabulary'.
    """
    for name in kwargs:
        if name in renamed:
            raise TypeError(
                f"{entry}({name}=...) is renamed: use {RENAMED[name]}. See README.md, "
                "'One vocabulary'."
            )
    if kwargs:
        raise TypeError(f"{entry}() got an unexpected keyword argument {next(iter(kwargs))!r}.")


def distribution_argument(value, allowed=DISTRIBUTIONS, entry=None, why=""):
    """`value` if it is a distribution `entry` takes, else ValueError saying
    why (`why`: the reason `entry` refuses the others).

    Example:
    >>> distribution_argument("layerwise")
    Traceback (most recent call last):
    ...
    ValueError: distribution must be one of ('uniform', 'global', 'erk'); received 'layerwise' (the old scope='layerwise' is distribution='uniform').
    """
    if value in allowed:
        return value
    if value in DISTRIBUTIONS:
        raise ValueError(f"{entry} does not take distribution={value!r}: {why}")
    hint = " (the old scope='layerwise' is distribution='uniform')" if value == "layerwise" else ""
    raise ValueError(f"distribution must be one of {tuple(allowed)}; received {value!r}{hint}.")


def structure_argument(value):
    """The `structure=` argument as a template: `Unstructured`, `Units` or
    `NM` (the axes are chosen per layer by `structure.structures_for`).

    Example:
    >>> structure_argument("channel").describe(), structure_argument("weight").describe()
    ('units(axis=-1, norm=l1)', 'weight')
    """
    if value is None or value == "weight" or isinstance(value, structure_lib.Unstructured):
        return structure_lib.UNSTRUCTURED
    if isinstance(value, (structure_lib.Units, structure_lib.NM)):
        return value
    if value in ("neuron", "channel"):
        return structure_lib.Units()
    if isinstance(value, str) and ":" in value:
        return structure_lib.NM(*structure_lib.parse_pattern(value))
    raise ValueError(
        "structure must be 'weight', 'neuron', 'channel', an 'N:M' pattern such as "
        "'2:4', or a keras_lottery.sparsity.structure Units / NM object; received "
        f"{value!r}."
    )


def check_combination(distribution, structure):
    """Refuses what does not combine: one global threshold ranks single
    weights; an N:M pattern fixes each kernel's density, so only "uniform".

    Example:
    >>> check_combination("erk", structure_argument("neuron"))
    >>> check_combination("erk", structure_argument("2:4"))
    Traceback (most recent call last):
    ...
    ValueError: structure='2:4' keeps 2 of every 4 weights in every kernel, so it fixes each kernel's density; use distribution='uniform'.
    """
    if distribution == GLOBAL and not structure.elementwise:
        raise ValueError(GLOBAL_TAKES_WEIGHTS)
    if distribution == ERK and isinstance(structure, structure_lib.NM):
        raise ValueError(
            f"structure='{structure.describe()}' keeps {structure.n} of every {structure.m} "
            "weights in every kernel, so it fixes each kernel's density; use "
            "distribution='uniform'."
        )


def fraction_argument(value, what, low_open=True, high_open=False):
    """`value` as a float in its interval ((0, 1] by default), else
    ValueError naming `what`.

    Example:
    >>> fraction_argument(0.25, "density")
    0.25
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = (0.0 < value if low_open else 0.0 <= value) and (
            value < 1.0 if high_open else value <= 1.0)
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{what} must be a number in {interval}; received {value!r}.")
    return value


def per_weight(value, keys, what, exclude=(), excluded_value=1.0, low_open=True):
    """`{key: value}` for every key from `value` (a float, or a dict with
    `"default"` and patterns selecting keys: a key, a layer name or a glob),
    with the `exclude` patterns at `excluded_value`.

    Raises:
        ValueError: a value outside its interval, a pattern (or exclusion)
            selecting no key, two patterns giving one key different values.

    Example:
    >>> per_weight({"default": 0.1, "out": 0.5}, ["fc/kernel", "out/kernel"], "density")
    {'fc/kernel': 0.1, 'out/kernel': 0.5}
    >>> per_weight(0.2, ["fc/kernel", "out/kernel"], "density", exclude=["out"])
    {'fc/kernel': 0.2, 'out/kernel': 1.0}
    """
    keys = list(keys)
    if isinstance(value, dict):
        if DEFAULT not in value:
            raise ValueError(f"A {what} dict needs a 'default' entry; received {value!r}.")
        patterns = {str(p): fraction_argument(v, f"{what}[{p!r}]", low_open)
                    for p, v in value.items()}
    else:
        patterns = {DEFAULT: fraction_argument(value, what, low_open)}
    excluded = _selected(exclude, keys, "exclude")
    named = {p: v for p, v in patterns.items() if p != DEFAULT}
    unknown = [p for p in named if not masks_lib.select(p, keys)]
    if unknown:
        raise ValueError(
            f"{what} names {unknown}, which select none of the pruned weights "
            f"({keys[:12]}). Use a key, a layer name or path, a glob, or 'default'."
        )
    out = {}
    for key in keys:
        chosen = pick(named, key, what)
        out[key] = excluded_value if key in excluded else (
            patterns[DEFAULT] if chosen is None else chosen)
    return out


def pick(patterns, key, what):
    """The value of the one pattern of `patterns` selecting `key` (None when
    none does); ValueError when patterns with different values select it.

    Example:
    >>> pick({"fc*": 0.5, "out": 0.1}, "fc1/kernel", "rate")
    0.5
    """
    chosen = {p: v for p, v in patterns.items() if masks_lib.matches(p, key)}
    if len(set(chosen.values())) > 1:
        raise ValueError(
            f"{what} patterns {sorted(chosen)} all select {key!r} with different "
            f"{_PLURALS.get(what, what + ' values')} "
            f"{sorted(set(chosen.values()))}; make them select disjoint weights."
        )
    return next(iter(chosen.values())) if chosen else None


def _selected(exclude, keys, what):
    if isinstance(exclude, str):
        exclude = [exclude]
    selected = set()
    for pattern in exclude or ():
        found = masks_lib.select(pattern, keys)
        if not found:
            raise ValueError(
                f"{what} names {pattern!r}, which selects none of the pruned weights "
                f"({list(keys)[:12]})."
            )
        selected.update(found)
    return selected


def excluded_keys(exclude, keys):
    """The keys the `exclude` patterns select (ValueError for a pattern that
    selects none).

    Example:
    >>> sorted(excluded_keys(["out"], ["fc/kernel", "out/kernel", "out/bias"]))
    ['out/bias', 'out/kernel']
    """
    return _selected(exclude, keys, "exclude")
