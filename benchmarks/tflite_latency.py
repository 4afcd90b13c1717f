"""Benchmark: are tickets faster where they are deployed? (LiteRT, CPU)

Trains one network three ways on an MNIST-format dataset and measures the
batch-1 and batch-32 `.tflite` latency of what each exports, interleaved in
one run (medians of repeated timings, 1 and 2 threads):

- `dense`: the trained dense network (round 0 of IMP);
- `structured`: an IMP ticket with `structure="neuron"` (LeNet) or
  `"channel"` (Conv-2: filters and fc units), rewound to θ0 every round,
  then compacted (`keras_lottery.compact`) and exported dense;
- `unstructured`: the paper's IMP ticket at the same number of rounds,
  exported with its dead units removed by the same surgery, and also as the
  usual sparse file;
- `scratch`: the compacted structured architecture trained from a fresh
  random init for as long (the structured baseline without rewinding).

    python -m benchmarks.tflite_latency --model=lenet
    python -m benchmarks.tflite_latency --model=conv2 --train_examples=20000

Targets (issue 18): structured LeNet ticket <= 0.5x dense batch-1 latency
within 1 accuracy point; Conv-2 <= 0.5x within 1.5 points; the ticket at
least as accurate as `scratch`.
"""

import os
import json
import sys
import tempfile
import time

from absl import app
from absl import flags

from examples import harness
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "lenet", ["lenet", "conv2"], "Network.")
harness.define_common_flags(dataset=harness.FASHION_MNIST, output="", seed=0)
flags.DEFINE_integer("rounds", 6, "IMP rounds (round 0 is the dense network).", lower_bound=2)
flags.DEFINE_float("rate", 0.3, "Units (or weights) pruned per round.")
flags.DEFINE_integer("epochs_per_round", 2, "Epochs per round.", lower_bound=1)
flags.DEFINE_integer("train_examples", 0, "Use only this many training examples (0: all).")
flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
flags.DEFINE_list("batches", ["1", "32"], "Batch sizes.")
flags.DEFINE_integer("repeats", 15, "Interleaved timing repeats (medians are reported).")
flags.DEFINE_float("seconds_per_timing", 0.05, "Invokes per timing fill about this long.")


def _build(shape):
    from examples import models

    if FLAGS.model == "lenet":
        return models.lenet_300_100(shape)
    return models.conv_net(2, input_shape=shape + (1,) if len(shape) == 2 else shape)


def _data():
    from examples import common

    (x, y), val, test = common.load_dataset(FLAGS.dataset, seed=FLAGS.seed)
    if FLAGS.train_examples:
        x, y = x[: FLAGS.train_examples], y[: FLAGS.train_examples]
    if FLAGS.model == "conv2":
        x, val, test = x[..., None], (val[0][..., None], val[1]), (test[0][..., None], test[1])
    return (x, y), val, test


def _imp_run(model, data, **kwargs):
    """IMP to the last round; returns (imp, test accuracy per round)."""
    from examples import common
    import keras_lottery as kl

    (x, y), val, test = data
    common.compile_lenet(model)
    accuracies = []
    imp = kl.IterativeMagnitudePruning(
        rounds=FLAGS.rounds, epochs_per_round=FLAGS.epochs_per_round, rate=FLAGS.rate,
        seed=FLAGS.seed, monitor="val_accuracy", verbose=1,
        on_round_end=lambda r, m, row: accuracies.append(
            common.accuracy(m.predict(test[0], batch_size=1000, verbose=0), test[1])
        ),
        **kwargs,
    )
    model.fit(x, y, batch_size=60, epochs=imp.total_epochs, validation_data=val,
              callbacks=[imp], verbose=0)
    return imp, accuracies


def _train_from_scratch(architecture, data):
    from examples import common
    import keras

    (x, y), val, test = data
    model = keras.models.clone_model(architecture)  # fresh initializers
    common.compile_lenet(model)
    best = keras.callbacks.ModelCheckpoint(
        os.path.join(tempfile.mkdtemp(), "best.weights.h5"), monitor="val_accuracy",
        save_best_only=True, save_weights_only=True,
    )
    model.fit(x, y, batch_size=60, epochs=FLAGS.epochs_per_round, validation_data=val,
              callbacks=[best], verbose=0)
    return common.accuracy(model.predict(test[0], batch_size=1000, verbose=0), test[1])


def _interpreter(content, threads, batch):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - older installs
        from tensorflow.lite.python.interpreter import Interpreter
    interpreter = Interpreter(model_content=content, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).random((batch, *detail["shape"][1:])).astype("float32")
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter


def _time(interpreter, invokes):
    start = time.perf_counter()
    for _ in range(invokes):
        interpreter.invoke()
    return (time.perf_counter() - start) / invokes


def _latencies(files):
    """`{setting: {name: median µs}}`, every file timed in turn, repeats interleaved."""
    table = {}
    for threads in (int(t) for t in FLAGS.threads):
        for batch in (int(b) for b in FLAGS.batches):
            interpreters = {name: _interpreter(content, threads, batch)
                            for name, content in files.items()}
            invokes = {name: max(10, int(FLAGS.seconds_per_timing / max(_time(it, 20), 1e-7)))
                       for name, it in interpreters.items()}
            samples = {name: [] for name in files}
            for _ in range(FLAGS.repeats):
                for name, interpreter in interpreters.items():
                    samples[name].append(_time(interpreter, invokes[name]))
            table[f"threads={threads},batch={batch}"] = {
                name: round(1e6 * float(np.median(values)), 2) for name, values in samples.items()
            }
    return table


def _tflite(model, directory, name, sparse):
    import keras_lottery as kl

    path = os.path.join(directory, f"{name}.tflite")
    kl.export_tflite(model, path, sparse=sparse, overwrite=True)
    with open(path, "rb") as f:
        return f.read()


def main(argv):
    del argv
    from examples import run_config
    import keras
    import keras_lottery as kl

    keras.utils.set_random_seed(FLAGS.seed)
    data = _data()
    shape = data[0][0].shape[1:]
    unit = "neuron" if FLAGS.model == "lenet" else "channel"
    started = time.time()

    keras.utils.set_random_seed(FLAGS.seed)
    structured_model = kl.wrap(_build(shape))
    dense_plain = keras.models.clone_model(kl.strip(structured_model))
    structured_imp, structured_acc = _imp_run(structured_model, data, structure=unit)
    compacted = kl.compact(structured_model, sample_inputs=data[2][0][:64])

    keras.utils.set_random_seed(FLAGS.seed)
    unstructured_model = kl.wrap(_build(shape))
    unstructured_imp, unstructured_acc = _imp_run(unstructured_model, data)
    dead_removed = kl.compact(unstructured_model, sample_inputs=data[2][0][:64])

    keras.utils.set_random_seed(FLAGS.seed + 1)
    scratch_acc = _train_from_scratch(compacted.model, data)

    directory = tempfile.mkdtemp()
    files = {
        "dense": _tflite(dense_plain, directory, "dense", sparse=False),
        "structured_compacted": _tflite(compacted.model, directory, "structured", sparse=False),
        "unstructured_sparse": _tflite(unstructured_model, directory, "unstructured", sparse=True),
        "unstructured_dead_removed": _tflite(dead_removed.model, directory, "dead", sparse=False),
    }
    latency = _latencies(files)
    ratios = {setting: {name: round(v / row["dense"], 3) for name, v in row.items()}
              for setting, row in latency.items()}
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "granularity": unit,
        "accuracy": {
            "dense": structured_acc[0],
            "structured_ticket": structured_acc[-1],
            "structured_scratch": scratch_acc,
            "unstructured_ticket": unstructured_acc[-1],
            "structured_per_round": structured_acc,
            "unstructured_per_round": unstructured_acc,
        },
        "density": {
            "structured": structured_imp.results[-1]["density"],
            "unstructured": unstructured_imp.results[-1]["density"],
        },
        "compaction": {
            "structured_removed": compacted.removed,
            "structured_params": [compacted.params_before, compacted.params_after],
            "unstructured_dead_removed": dead_removed.removed,
            "unstructured_params": [dead_removed.params_before, dead_removed.params_after],
        },
        "bytes": {name: len(content) for name, content in files.items()},
        "latency_us": latency,
        "ratio_to_dense": ratios,
        "seconds": round(time.time() - started, 1),
    }
    output = FLAGS.output or os.path.join(HERE, "results", f"tflite_latency_{FLAGS.model}.json")
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: result[k] for k in ("accuracy", "density", "ratio_to_dense")}, indent=1))
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
