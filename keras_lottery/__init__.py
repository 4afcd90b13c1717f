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

from keras_lottery.sparsity import masks
from keras_lottery.methods import scorers
from keras_lottery.methods.scorers import Scorer
from keras_lottery.methods.scorers import register_scorer
from keras_lottery.sparsity.structure import NM
from keras_lottery.sparsity.structure import Units
from keras_lottery.export.compaction import CompactionError
from keras_lottery.export.compaction import CompactionResult
from keras_lottery.export.compaction import compact
from keras_lottery.imp import schedules
from keras_lottery.methods.dynamic_sparse import DynamicSparseTraining
from keras_lottery.methods.early_bird import EarlyBird
from keras_lottery.export.exporters import ExportResult
from keras_lottery.export.exporters import ExportVerificationError
from keras_lottery.export.exporters import export_saved_model
from keras_lottery.export.exporters import export_tflite
from keras_lottery.export.exporters import size_report
from keras_lottery.export.exporters import tflite_predict
from keras_lottery.imp.callback import IterativeMagnitudePruning
from keras_lottery.methods.init_pruning import prune_at_init
from keras_lottery.methods.instability import Instability
from keras_lottery.methods.instability import InstabilityProbe
from keras_lottery.methods.instability import InstabilitySweep
from keras_lottery.methods.instability import instability_sweep
from keras_lottery.methods.instability import linear_mode_connectivity
from keras_lottery.core.mask_constraint import MaskConstraint
from keras_lottery.methods.one_shot import OneShotResult
from keras_lottery.methods.one_shot import prune_one_shot
from keras_lottery.export.pattern_check import check_pattern
from keras_lottery.core.registry import register_prunable
from keras_lottery.core.report import SparsityReport
from keras_lottery.core.report import sparsity_report
from keras_lottery.export.sparse_inference import SparseInferenceError
from keras_lottery.export.sparse_inference import xnnpack_sparse_path
from keras_lottery.files.ticket import Ticket
from keras_lottery.files.ticket import TicketError
from keras_lottery.files.ticket import load_ticket
from keras_lottery.files.ticket import read_ticket
from keras_lottery.files.ticket import save_ticket
from keras_lottery.version import __version__
from keras_lottery.core.weight_state import HostSnapshot
from keras_lottery.core.weight_state import WeightState
from keras_lottery.core.wrapper import LotteryWrapper
from keras_lottery.core.wrapping import PrunableWeight
from keras_lottery.core.wrapping import enable
from keras_lottery.core.wrapping import get_masks
from keras_lottery.core.wrapping import get_plain_weights
from keras_lottery.core.wrapping import load_model
from keras_lottery.core.wrapping import non_pruned_weights
from keras_lottery.core.wrapping import prunable_weights
from keras_lottery.core.wrapping import set_masks
from keras_lottery.core.wrapping import set_plain_weights
from keras_lottery.core.wrapping import strip
from keras_lottery.core.wrapping import wrap

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
    "NM",
    "register_scorer",
    "Scorer",
    "scorers",
    "Units",
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
