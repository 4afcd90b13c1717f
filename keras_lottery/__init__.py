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
from keras_lottery.export import ExportResult
from keras_lottery.export import ExportVerificationError
from keras_lottery.export import export_saved_model
from keras_lottery.export import export_tflite
from keras_lottery.export import size_report
from keras_lottery.export import tflite_predict
from keras_lottery.imp import IterativeMagnitudePruning
from keras_lottery.mask_constraint import MaskConstraint
from keras_lottery.registry import register_prunable
from keras_lottery.report import SparsityReport
from keras_lottery.report import sparsity_report
from keras_lottery.ticket import Ticket
from keras_lottery.ticket import TicketError
from keras_lottery.ticket import load_ticket
from keras_lottery.ticket import read_ticket
from keras_lottery.ticket import save_ticket
from keras_lottery.version import __version__
from keras_lottery.wrapper import HostSnapshot
from keras_lottery.wrapper import LotteryWrapper
from keras_lottery.wrapping import find_wrappers
from keras_lottery.wrapping import layer_masks
from keras_lottery.wrapping import non_pruned_weights
from keras_lottery.wrapping import set_layer_masks
from keras_lottery.wrapping import strip
from keras_lottery.wrapping import wrap

__all__ = [
    "ExportResult",
    "ExportVerificationError",
    "HostSnapshot",
    "IterativeMagnitudePruning",
    "LotteryWrapper",
    "MaskConstraint",
    "SparsityReport",
    "Ticket",
    "TicketError",
    "export_saved_model",
    "export_tflite",
    "find_wrappers",
    "layer_masks",
    "load_ticket",
    "non_pruned_weights",
    "read_ticket",
    "register_prunable",
    "save_ticket",
    "schedules",
    "set_layer_masks",
    "size_report",
    "sparsity_report",
    "strip",
    "tflite_predict",
    "wrap",
]
