"""keras_lottery: the Lottery Ticket Hypothesis for Keras 3.

Data flows one way:
`model -> wrap -> fit(callbacks=[IterativeMagnitudePruning]) -> results +
ticket -> strip -> export`.

Example:
>>> import keras, keras_lottery as kl
>>> model = kl.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
>>> kl.sparsity_report(model).density
1.0
"""

from keras_lottery import masks
from keras_lottery.compaction import CompactionError
from keras_lottery.compaction import CompactionResult
from keras_lottery.compaction import compact
from keras_lottery import schedules
from keras_lottery.dynamic_sparse import DynamicSparseTraining
from keras_lottery.early_bird import EarlyBird
from keras_lottery.export import ExportResult
from keras_lottery.export import ExportVerificationError
from keras_lottery.export import export_saved_model
from keras_lottery.export import export_tflite
from keras_lottery.export import size_report
from keras_lottery.export import tflite_predict
from keras_lottery.imp import IterativeMagnitudePruning
from keras_lottery.init_pruning import prune_at_init
from keras_lottery.instability import Instability
from keras_lottery.instability import InstabilityProbe
from keras_lottery.instability import InstabilitySweep
from keras_lottery.instability import instability_sweep
from keras_lottery.instability import linear_mode_connectivity
from keras_lottery.mask_constraint import MaskConstraint
from keras_lottery.one_shot import OneShotResult
from keras_lottery.one_shot import prune_one_shot
from keras_lottery.pattern_check import check_pattern
from keras_lottery.registry import register_prunable
from keras_lottery.report import SparsityReport
from keras_lottery.report import sparsity_report
from keras_lottery.sparse_inference import SparseInferenceError
from keras_lottery.sparse_inference import xnnpack_sparse_path
from keras_lottery.ticket import Ticket
from keras_lottery.ticket import TicketError
from keras_lottery.ticket import load_ticket
from keras_lottery.ticket import read_ticket
from keras_lottery.ticket import save_ticket
from keras_lottery.version import __version__
from keras_lottery.weight_state import HostSnapshot
from keras_lottery.weight_state import WeightState
from keras_lottery.wrapper import LotteryWrapper
from keras_lottery.wrapping import PrunableWeight
from keras_lottery.wrapping import enable
from keras_lottery.wrapping import get_masks
from keras_lottery.wrapping import get_plain_weights
from keras_lottery.wrapping import load_model
from keras_lottery.wrapping import non_pruned_weights
from keras_lottery.wrapping import prunable_weights
from keras_lottery.wrapping import set_masks
from keras_lottery.wrapping import set_plain_weights
from keras_lottery.wrapping import strip
from keras_lottery.wrapping import wrap

# Earlier names of get_masks / set_masks.
layer_masks = get_masks
set_layer_masks = set_masks

__all__ = [
    "CompactionError",
    "CompactionResult",
    "check_pattern",
    "compact",
    "DynamicSparseTraining",
    "EarlyBird",
    "ExportResult",
    "ExportVerificationError",
    "HostSnapshot",
    "Instability",
    "InstabilityProbe",
    "InstabilitySweep",
    "IterativeMagnitudePruning",
    "LotteryWrapper",
    "MaskConstraint",
    "OneShotResult",
    "PrunableWeight",
    "SparseInferenceError",
    "SparsityReport",
    "Ticket",
    "TicketError",
    "WeightState",
    "enable",
    "export_saved_model",
    "export_tflite",
    "get_masks",
    "get_plain_weights",
    "layer_masks",
    "instability_sweep",
    "linear_mode_connectivity",
    "load_model",
    "load_ticket",
    "masks",
    "non_pruned_weights",
    "prunable_weights",
    "prune_at_init",
    "prune_one_shot",
    "read_ticket",
    "register_prunable",
    "save_ticket",
    "schedules",
    "set_layer_masks",
    "set_masks",
    "set_plain_weights",
    "size_report",
    "sparsity_report",
    "strip",
    "tflite_predict",
    "wrap",
    "xnnpack_sparse_path",
]
