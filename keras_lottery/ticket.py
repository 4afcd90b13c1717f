"""The winning ticket as a file: masks + θ0 (+ θk) that anyone can retrain.

One self-describing `.npz` file (NumPy's zip of arrays, readable without
keras_lottery) holds, per prunable weight `<layer>/<weight>`:

- `mask:<layer>/<weight>` — bool mask,
- `init:<layer>/<weight>` — θ0,
- `rewind:<layer>/<weight>` — θk (only when a rewind point was taken),

optionally `other_init:<i>` — the initial values of the model's other weights
(biases, normalisation) in model order, and `metadata` — a JSON string with
the format version, layer names, classes and shapes, the round the ticket
came from, its density and that round's metrics.

`load_ticket` checks the whole file against the model before it assigns
anything: a mismatched or damaged file raises `TicketError` and leaves the
model untouched.
"""

import dataclasses
import json

import numpy as np

from keras_lottery import file_io
from keras_lottery.version import __version__
from keras_lottery.wrapper import INIT, REWIND
from keras_lottery.wrapping import find_wrappers
from keras_lottery.wrapping import non_pruned_weights
from keras_lottery.wrapping import wrap

FORMAT = "keras_lottery.ticket"
VERSION = 1


class TicketError(ValueError):
    """A ticket file is damaged or does not fit the model it is loaded into.

    Example:
    >>> issubclass(TicketError, ValueError)
    True
    """


@dataclasses.dataclass
class Ticket:
    """The contents of a ticket file.

    Attributes:
        metadata: the JSON metadata (dict).
        masks, init, rewind: `{"layer/weight": array}` (rewind may be empty).
        other_init: initial values of the other model weights, or None.

    Example:
    >>> import tempfile, os
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="fc")]))
    >>> ticket = read_ticket(save_ticket(model, os.path.join(tempfile.mkdtemp(), "t")))
    >>> ticket.density, ticket.metadata["weights"][0]["key"]
    (1.0, 'fc/kernel')
    """

    metadata: dict
    masks: dict
    init: dict
    rewind: dict
    other_init: list

    @property
    def density(self):
        total = sum(m.size for m in self.masks.values())
        return sum(int(m.sum()) for m in self.masks.values()) / total


def save_ticket(model, path, imp=None):
    """Writes the model's ticket (masks, θ0, θk) to `path` atomically.

    Args:
        model: a wrapped model (the masks are read from it).
        path: the file to write (`.npz` is appended if missing).
        imp: the `IterativeMagnitudePruning` callback of the run, to record
            the round, its metrics and the initial values of the non-pruned
            weights (so a retrain starts exactly where the round started).

    Returns:
        The path written.

    Example:
    >>> import tempfile, os
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="fc")]))
    >>> path = save_ticket(model, os.path.join(tempfile.mkdtemp(), "t.npz"))
    >>> sorted(read_ticket(path).masks)
    ['fc/kernel']
    """
    wrappers = find_wrappers(model)
    if not wrappers:
        raise ValueError(
            f"Model '{model.name}' has no LotteryWrapper layers, so it has no "
            "ticket to save. Save the wrapped model used for IMP."
        )
    if not str(path).endswith(".npz"):
        path = f"{path}.npz"
    arrays = {}
    weights = []
    rewind_step = getattr(imp, "rewind_step", None) if imp is not None else None
    for wrapper in wrappers:
        masks = wrapper.get_masks()
        init = wrapper.get_snapshot(INIT)
        rewind = wrapper.get_snapshot(REWIND)
        for p in wrapper.prunable_weights:
            key = f"{wrapper.name}/{p.name}"
            arrays[f"mask:{key}"] = masks[p.name]
            arrays[f"init:{key}"] = init[p.name]
            if rewind_step is not None:
                arrays[f"rewind:{key}"] = rewind[p.name]
            weights.append(
                {
                    "key": key,
                    "layer": wrapper.name,
                    "layer_class": type(wrapper.layer).__name__,
                    "weight": p.name,
                    "shape": list(masks[p.name].shape),
                    "dtype": str(init[p.name].dtype),
                    "kept": int(masks[p.name].sum()),
                }
            )
    others = None
    if imp is not None and getattr(imp, "initial_other_weights", None) is not None:
        others = []
        for i, (name, value) in enumerate(imp.initial_other_weights):
            arrays[f"other_init:{i}"] = value
            others.append({"name": name, "shape": list(value.shape), "dtype": str(value.dtype)})
    row = imp.results[-1] if imp is not None and imp.results else {}
    kept = sum(w["kept"] for w in weights)
    total = sum(int(np.prod(w["shape"])) for w in weights)
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "keras_lottery_version": __version__,
        "model_name": model.name,
        "weights": weights,
        "other_weights": others,
        "round": row.get("round"),
        "density": kept / total,
        "metrics": file_io.json_safe(row),
        "rewind_step": rewind_step,
    }
    arrays["metadata"] = np.array(json.dumps(metadata))
    file_io.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    return path


def read_ticket(path):
    """Reads and checks a ticket file without touching any model.

    Raises:
        TicketError: missing, truncated, corrupted or inconsistent file.

    Example:
    >>> read_ticket("/nonexistent.npz")
    Traceback (most recent call last):
    ...
    keras_lottery.ticket.TicketError: Cannot read ticket file /nonexistent.npz: ...
    """
    try:
        contents = file_io.read_npz(path)
    except file_io.DAMAGED_FILE_ERRORS as error:
        raise TicketError(
            f"Cannot read ticket file {path}: {error}. The file is missing, "
            "truncated or not a keras_lottery ticket; save it again with "
            "keras_lottery.save_ticket."
        ) from error
    if "metadata" not in contents:
        raise TicketError(f"{path} has no 'metadata' entry: not a keras_lottery ticket.")
    try:
        metadata = json.loads(str(contents["metadata"]))
    except json.JSONDecodeError as error:
        raise TicketError(f"{path} has unreadable metadata: {error}.") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise TicketError(f"{path} is not a keras_lottery ticket (format mismatch).")
    if metadata.get("version") != VERSION:
        raise TicketError(
            f"{path} has ticket format version {metadata.get('version')}; this "
            f"keras_lottery reads version {VERSION}."
        )
    masks, init, rewind = {}, {}, {}
    for entry in metadata.get("weights") or []:
        key, shape = entry.get("key"), tuple(entry.get("shape", ()))
        for prefix, target, required in (
            ("mask", masks, True),
            ("init", init, True),
            ("rewind", rewind, metadata.get("rewind_step") is not None),
        ):
            name = f"{prefix}:{key}"
            if name not in contents:
                if required:
                    raise TicketError(f"{path} is missing the array '{name}'.")
                continue
            if contents[name].shape != shape:
                raise TicketError(
                    f"{path}: '{name}' has shape {contents[name].shape}, the "
                    f"metadata says {shape}."
                )
            target[key] = contents[name]
        if masks[key].dtype != bool:
            raise TicketError(f"{path}: mask '{key}' is not boolean.")
    if not masks:
        raise TicketError(f"{path} lists no prunable weights.")
    other_init = None
    if metadata.get("other_weights") is not None:
        other_init = []
        for i, entry in enumerate(metadata["other_weights"]):
            name = f"other_init:{i}"
            if name not in contents or list(contents[name].shape) != entry["shape"]:
                raise TicketError(f"{path} is missing or has a bad '{name}'.")
            other_init.append(contents[name])
    return Ticket(metadata, masks, init, rewind, other_init)


def load_ticket(path, model):
    """Loads a ticket into a model of the same architecture, ready to retrain.

    The prunable weights become `mask * θ0`, the masks and snapshots are
    restored, and (when the ticket has them) the other weights get their
    initial values. Everything is checked before anything is assigned.

    Args:
        path: a file written by `save_ticket`.
        model: a built model of the same architecture, wrapped or not (an
            unwrapped model is wrapped first; the wrapped copy is returned).

    Returns:
        The wrapped model holding the ticket.

    Example:
    >>> import tempfile, os
    >>> def build():
    ...     return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    >>> path = save_ticket(keras_lottery.wrap(build()),
    ...                    os.path.join(tempfile.mkdtemp(), "t.npz"))
    >>> model = load_ticket(path, build())
    >>> keras_lottery.sparsity_report(model).density
    1.0
    """
    ticket = read_ticket(path)
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built; build it (call it on data or "
            "`model.build(input_shape)`) before loading a ticket into it."
        )
    if not find_wrappers(model):
        model = wrap(model)
    wrappers = find_wrappers(model)
    expected = {
        f"{w.name}/{p.name}": tuple(p.variable.shape)
        for w in wrappers
        for p in w.prunable_weights
    }
    got = {k: tuple(v.shape) for k, v in ticket.masks.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        raise TicketError(
            f"Ticket {path} does not fit model '{model.name}': "
            f"missing from the ticket {missing}, not in the model {extra}, "
            f"shape mismatch {[(k, got[k], expected[k]) for k in wrong]}. "
            "Build the same architecture (same layer names) the ticket came from."
        )
    others = non_pruned_weights(model)
    if ticket.other_init is not None:
        shapes = [tuple(v.shape) for v in others]
        saved = [tuple(v.shape) for v in ticket.other_init]
        if shapes != saved:
            raise TicketError(
                f"Ticket {path} holds {len(saved)} non-pruned weights with "
                f"shapes {saved}; the model has {shapes}."
            )
    for wrapper in wrappers:
        names = [p.name for p in wrapper.prunable_weights]
        key = lambda n: f"{wrapper.name}/{n}"  # noqa: E731
        wrapper.set_snapshot({n: ticket.init[key(n)] for n in names}, INIT)
        rewind = {n: ticket.rewind[key(n)] for n in names if key(n) in ticket.rewind}
        wrapper.set_snapshot(rewind or {n: ticket.init[key(n)] for n in names}, REWIND)
        wrapper.set_masks({n: ticket.masks[key(n)] for n in names})
        wrapper.rewind(INIT)
    if ticket.other_init is not None:
        for variable, value in zip(others, ticket.other_init):
            variable.assign(value)
    return model
