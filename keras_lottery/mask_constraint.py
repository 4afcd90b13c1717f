"""The hook that keeps pruned weights at exactly zero inside the train step."""

import keras
from keras import ops

from keras_lottery import backend_compat


class MaskConstraint(keras.constraints.Constraint):
    """Multiplies a weight by its mask after the user's own constraint.

    Keras applies a variable's constraint right after every optimizer update,
    inside the compiled (and jitted, distributed, multi-step) train function,
    so pruned weights stay exactly 0.0 whatever the optimizer does.
    `LotteryWrapper` installs it; users never build one themselves.

    On JAX the optimizer step runs in a stateless scope that holds only
    trainable and optimizer variables, so the mask variable cannot be read
    there. Within the same jitted train step the forward pass runs first, and
    `LotteryWrapper` hands the constraint the mask's traced value from it
    (`traced_mask`); the constraint then masks after every update exactly as
    on the other backends.

    Args:
        mask: a float `keras.Variable` of the weight's shape (1 keeps, 0 prunes).
        inner: the constraint the weight had before, or None.

    Example:
    >>> mask = keras.Variable([1.0, 0.0], trainable=False)
    >>> w = MaskConstraint(mask)(keras.ops.ones((2,)))
    >>> keras.ops.convert_to_numpy(w).tolist()
    [1.0, 0.0]
    """

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner
        # JAX only: the mask's value in the train step being traced.
        self.traced_mask = None

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        mask = backend_compat.current_value(self.mask)
        if mask is None:
            mask = self.traced_mask
        if mask is None:
            raise RuntimeError(
                f"The mask of {self.mask.path} is not available in this "
                "optimizer step: on JAX the wrapped layer must run in the same "
                "train step (is it part of the model being trained?)."
            )
        return w * ops.cast(mask, w.dtype)

    def get_config(self):
        # The mask is a variable: `LotteryWrapper.build` re-attaches it.
        return {}
