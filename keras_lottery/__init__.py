"""keras_lottery: the Lottery Ticket Hypothesis for Keras 3.

Data flows one way:
`model -> wrap -> fit(callbacks=[IterativeMagnitudePruning]) -> results -> strip`.

Example:
>>> import keras, keras_lottery as kl
>>> model = kl.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
>>> kl.sparsity_report(model).density
1.0
"""

from keras_lottery import schedules
from keras_lottery.imp import IterativeMagnitudePruning
from keras_lottery.mask_constraint import MaskConstraint
from keras_lottery.registry import register_prunable
from keras_lottery.report import SparsityReport
from keras_lottery.report import sparsity_report
from keras_lottery.wrapper import LotteryWrapper
from keras_lottery.wrapping import find_wrappers
from keras_lottery.wrapping import layer_masks
from keras_lottery.wrapping import set_layer_masks
from keras_lottery.wrapping import strip
from keras_lottery.wrapping import wrap

__version__ = "0.1.0"

__all__ = [
    "IterativeMagnitudePruning",
    "LotteryWrapper",
    "MaskConstraint",
    "SparsityReport",
    "find_wrappers",
    "layer_masks",
    "register_prunable",
    "schedules",
    "set_layer_masks",
    "sparsity_report",
    "strip",
    "wrap",
]
