"""The hook that keeps pruned weights at exactly zero inside the train step."""

import keras
from keras import ops

from keras_lottery.backend import keras_internals


@keras.saving.register_keras_serializable(package="keras_lottery")
class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a weight by its mask after the user's own constraint.

    Keras applies a variable's constraint right after every optimizer update,
    inside the compiled (jitted, distributed, multi-step) train function, so
    pruned weights stay exactly 0.0 whatever the optimizer does.
    `keras_lottery.wrap` installs it; users never build one themselves.

    On JAX the optimizer step runs in a stateless scope that holds only
    trainable and optimizer variables, so the mask variable cannot be read
    there; the model's train step hands the constraint the mask's traced
    value instead (`traced_mask`, see `keras_internals.install_jax_mask_feed`).

    Args:
        mask: a float `keras.Variable` of the weight's shape (1 keeps, 0
            prunes).
        inner: the constraint the weight had before, or None.

    Example:
    >>> mask = keras.Variable([1.0, 0.0], trainable=False)
    >>> w = MaskConstraint(mask)(keras.ops.ones((2,)))
    >>> keras.ops.convert_to_numpy(w).tolist()
    [1.0, 0.0]
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = keras.constraints.get(inner)
        self.traced_mask = None

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        if self.mask is None:
            raise ValueError(
                "This MaskConstraint has no mask variable: it was rebuilt from "
                "a config. keras_lottery attaches masks with keras_lottery.wrap."
            )
        mask = keras_internals.current_value(self.mask)
        if mask is None:
            mask = self.traced_mask
        if mask is None:
            raise RuntimeError(
                f"The mask of {self.mask.path} is not available in this optimizer "
                "step. On JAX the train step hands masks to their constraints: "
                "train the model with keras_lottery.wrap(model) applied to the "
                "model you call fit on (or with a keras_lottery callback), or "
                "call keras_lottery.enable(model) once before fit."
            )
        return w * ops.cast(mask, w.dtype)

    def get_config(self):
        # The mask is a variable of the model, re-attached by keras_lottery.wrap
        # (or a LotteryWrapper's build); only the user's constraint is config.
        return {"mask": None, "inner": keras.constraints.serialize(self.inner)}
