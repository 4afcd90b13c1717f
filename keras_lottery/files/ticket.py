"""The winning ticket as a file: masks + θ0 (+ θk) that anyone can retrain.

One self-describing `.npz` file (NumPy's zip of arrays, readable without
keras_lottery) holds, per pruned weight `<key>` (its path, see
`keras_lottery.sparsity.masks`):

- `mask:<key>` — bool mask,
- `init:<key>` — θ0,
- `rewind:<key>` — θk (only when a rewind point was taken),

optionally `other_init:<i>` / `other_rewind:<i>` — the other weights (biases,
normalisation) at θ0 / θk, in model order, and `metadata` — a JSON string
with the format version, every prunable weight of the model (key, layer
class, shape, whether it was pruned: exclusions travel with the ticket), the
round the ticket came from, its density and that round's metrics.

`load_ticket` checks the whole file against the model before it assigns
anything: a mismatched or damaged file raises `TicketError` and leaves the
model untouched. Keys match by path, or, for a new instance whose layers got
other automatic names (`dense_7` instead of `dense_3`), by position when the
prunable weights have the same names and shapes in the same order.
"""

import dataclasses
import json
import time
import warnings

import numpy as np

from keras_lottery.backend import processes
from keras_lottery.files import file_io
from keras_lottery.sparsity import masks as masks_lib
from keras_lottery.core import wrapping
from keras_lottery.version import __version__
from keras_lottery.core.weight_state import INIT, REWIND

FORMAT = "keras_lottery.files.ticket"
VERSION = 2
AT = (INIT, REWIND)


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
        masks, init, rewind: `{key: array}` (rewind may be empty).
        other_init, other_rewind: the other weights at θ0 / θk, or None.

    Example:
    >>> import tempfile, os
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> ticket = read_ticket(save_ticket(model, os.path.join(tempfile.mkdtemp(), "t")))
    >>> ticket.density, list(ticket.masks)
    (1.0, ['fc/kernel'])
    """

    metadata: dict
    masks: dict
    init: dict
    rewind: dict
    other_init: list = None
    other_rewind: list = None

    @property
    def density(self):
        return masks_lib.density(self.masks)


def save_ticket(model, path, imp=None):
    """Writes the model's ticket (masks, θ0, θk) to `path` atomically.

    Args:
        model: a wrapped model (the masks are read from it).
        path: the file to write (`.npz` is appended if missing).
        imp: the `IterativeMagnitudePruning` callback of the run, to record
            the round, its metrics, θk and the other weights' values at θ0/θk
            (so a retrain starts exactly where the round started).

    Returns:
        The path written. Under several JAX processes (`keras.distribution`)
        process 0 writes; another process that calls it returns once process
        0's file holds this ticket, so every process can read it after.

    Example:
    >>> import tempfile, os
    >>> model = keras_lottery.wrap(keras.Sequential(
    ...     [keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net"))
    >>> path = save_ticket(model, os.path.join(tempfile.mkdtemp(), "t.npz"))
    >>> sorted(read_ticket(path).masks)
    ['fc/kernel']
    """
    prunables = wrapping.prunable_weights(model)
    if not prunables:
        raise ValueError(
            f"Model '{model.name}' has no pruned weights, so it has no ticket to "
            "save. Save the wrapped model used for IMP."
        )
    if not str(path).endswith(".npz"):
        path = f"{path}.npz"
    info = imp.ticket_info() if imp is not None else {}
    rewind_step = info.get("rewind_step")
    arrays = {}
    for p in prunables:
        mask = p.state.mask_array()
        arrays[f"mask:{p.key}"] = mask
        arrays[f"init:{p.key}"] = p.state.snapshot_array(INIT)
        if rewind_step is not None:
            arrays[f"rewind:{p.key}"] = p.state.snapshot_array(REWIND)
    pruned = {p.key for p in prunables}
    weights = [
        {
            "key": key,
            "layer_class": type(owner).__name__,
            "weight": masks_lib.weight_of(key),
            "shape": list(variable.shape),
            "dtype": str(variable.dtype),
            "pruned": key in pruned,
            "kept": int(arrays[f"mask:{key}"].sum()) if key in pruned else None,
        }
        for key, variable, owner in wrapping.prunable_candidates(model)
    ]
    others = {}
    for which in ("other_init", "other_rewind"):
        values = info.get(which)
        if values is None:
            continue
        others[which] = [{"name": name, "shape": list(np.shape(v))} for name, v in values]
        arrays.update({f"{which}:{i}": v for i, (_, v) in enumerate(values)})
    kept, total = masks_lib.counts({k[len("mask:"):]: v for k, v in arrays.items() if k.startswith("mask:")})
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "keras_lottery_version": __version__,
        "model_name": model.name,
        "weights": weights,
        "other_init": others.get("other_init"),
        "other_rewind": others.get("other_rewind"),
        "round": info.get("round"),
        "density": kept / total,
        "metrics": file_io.json_safe(info.get("metrics") or {}),
        "rewind_step": rewind_step,
        # One SHA-256 per array: an edited or swapped array is refused by name.
        "digests": {name: file_io.digest(array) for name, array in arrays.items()},
    }
    arrays["metadata"] = np.array(json.dumps(metadata))
    if processes.is_writer():
        with processes.local_only():
            file_io.atomic_write(path, lambda f: np.savez_compressed(f, **arrays))
    else:
        _wait_for_writer(path, metadata["digests"])
    return path


def _wait_for_writer(path, digests, timeout=600.0):
    """Under several JAX processes, returns once process 0 has written this
    very ticket (its arrays' digests, not a stale file at `path`). A wait on
    the file, not a collective: a run where process 0 alone saves does not
    hang."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with np.load(path, allow_pickle=False) as data:
                if json.loads(str(data["metadata"]))["digests"] == digests:
                    return
        except (*file_io.DAMAGED_FILE_ERRORS, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TicketError(
                f"Process {processes.index()} waited {timeout:.0f} s for process 0 to write "
                f"the ticket {path}. Every process must see the same path (a filesystem they "
                "share), and process 0 must save the same model.")
        time.sleep(0.2)


def read_ticket(path):
    """Reads and checks a ticket file without touching any model.

    Raises:
        TicketError: missing, truncated, corrupted or inconsistent file.

    Example:
    >>> read_ticket("/nonexistent.npz")
    Traceback (most recent call last):
    ...
    keras_lottery.files.ticket.TicketError: Cannot read ticket file /nonexistent.npz: ...
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
    file_io.check_header(metadata, path, FORMAT, VERSION, TicketError, "ticket")
    masks, init, rewind = {}, {}, {}
    entries = metadata.get("weights")
    if not isinstance(entries, list):
        raise TicketError(f"{path} has no list of weights in its metadata.")
    for entry in entries:
        if not entry.get("pruned"):
            continue
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
        if entry.get("kept") is not None and int(masks[key].sum()) != entry["kept"]:
            raise TicketError(
                f"{path}: 'mask:{key}' keeps {int(masks[key].sum())} weights; the metadata "
                f"says {entry['kept']}: the file was edited or damaged. Save the ticket "
                "again, or restore it from a copy."
            )
    if not masks:
        raise TicketError(f"{path} lists no pruned weights.")
    others = {}
    for which in ("other_init", "other_rewind"):
        listed = metadata.get(which)
        if listed is None:
            continue
        values = []
        for i, entry in enumerate(listed):
            name = f"{which}:{i}"
            if name not in contents or list(contents[name].shape) != entry["shape"]:
                raise TicketError(f"{path} is missing or has a bad '{name}'.")
            values.append(contents[name])
        others[which] = values
    digests = metadata.get("digests")
    if digests is not None:  # tickets written before digests carry only counts
        altered = file_io.altered_arrays(
            {k: v for k, v in contents.items() if k != "metadata"}, digests)
        if altered:
            raise TicketError(
                f"{path}: the array(s) {altered} differ from what save_ticket wrote (their "
                "SHA-256 digests do not match the metadata's): the file was edited or "
                "damaged. Save the ticket again, or restore it from a copy."
            )
    return Ticket(metadata, masks, init, rewind, others.get("other_init"), others.get("other_rewind"))


def load_ticket(path, model, at=INIT):
    """Loads a ticket into a model of the same architecture, ready to retrain.

    The pruned weights become `mask * θ0` (or `mask * θk` with
    `at="rewind"`), the masks and snapshots are restored, and (when the ticket
    has them) the other weights get their values at that point. Everything is
    checked before anything is assigned.

    Args:
        path: a file written by `save_ticket`.
        model: a built model of the same architecture, wrapped or not (an
            unwrapped model is wrapped in place, pruning the same weights the
            ticket pruned).
        at: "init" (θ0) or "rewind" (θk; the ticket must hold a rewind point).

    Returns:
        The model, holding the ticket.

    Example:
    >>> import tempfile, os
    >>> def build():
    ...     return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")], name="net")
    >>> path = save_ticket(keras_lottery.wrap(build()),
    ...                    os.path.join(tempfile.mkdtemp(), "t.npz"))
    >>> model = load_ticket(path, build())
    >>> keras_lottery.sparsity_report(model).density
    1.0
    """
    if at not in AT:
        raise ValueError(f"at must be one of {AT}; received {at!r}.")
    ticket = read_ticket(path)
    if at == REWIND and not ticket.rewind:
        raise TicketError(
            f"Ticket {path} has no rewind point (it came from a run with "
            "rewind_to='init'); load it at='init'."
        )
    if not model.built:
        raise ValueError(
            f"Model '{model.name}' is not built; build it (call it on data or "
            "`model.build(input_shape)`) before loading a ticket into it."
        )
    if not wrapping.has_lottery_state(model):
        mapping = _align_candidates(path, ticket, model)
        chosen = {mapping[key] for key in ticket.masks}
        skipped = [key for key, _, _ in wrapping.prunable_candidates(model) if key not in chosen]
        wrapping.wrap(model, exclude=skipped or None)
    prunables = wrapping.prunable_weights(model)
    model_shapes = {p.key: p.shape for p in prunables}
    saved_shapes = {key: mask.shape for key, mask in ticket.masks.items()}
    try:
        mapping, how = masks_lib.align(saved_shapes, model_shapes)
    except ValueError as error:
        raise TicketError(
            f"Ticket {path} does not fit model '{model.name}': {error}"
        ) from None
    if how == "order":
        warnings.warn(
            f"The keys of ticket {path} ({list(saved_shapes)[:3]}...) differ from "
            f"model '{model.name}''s ({list(model_shapes)[:3]}...); its "
            f"{len(mapping)} weights were matched by position (same names and "
            "shapes in the same order).",
            stacklevel=2,
        )
    others = wrapping.non_pruned_weights(model)
    values = ticket.other_rewind if at == REWIND else ticket.other_init
    if values is not None:
        shapes = [tuple(v.shape) for v in others]
        saved = [tuple(v.shape) for v in values]
        if shapes != saved:
            raise TicketError(
                f"Ticket {path} holds {len(saved)} non-pruned weights with shapes "
                f"{saved[:6]}; model '{model.name}' has {shapes[:6]}."
            )
    by_key = {p.key: p for p in prunables}
    for saved_key, key in mapping.items():
        p = by_key[key]
        init = ticket.init[saved_key]
        rewind = ticket.rewind.get(saved_key, init)
        p.snapshots[INIT].assign(init)
        p.snapshots[REWIND].assign(rewind)
        mask = ticket.masks[saved_key]
        p.state.mask.assign(mask.astype("float32"))
        start = rewind if at == REWIND else init
        p.variable.assign(start * mask.astype(start.dtype))
    if values is not None:
        for variable, value in zip(others, values):
            variable.assign(value)
    return model


def _align_candidates(path, ticket, model):
    saved = {e["key"]: tuple(e["shape"]) for e in ticket.metadata["weights"]}
    candidates = {key: tuple(v.shape) for key, v, _ in wrapping.prunable_candidates(model)}
    try:
        mapping, _ = masks_lib.align(saved, candidates)
    except ValueError as error:
        raise TicketError(f"Ticket {path} does not fit model '{model.name}': {error}") from None
    return mapping
