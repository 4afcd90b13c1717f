"""Benchmark: where a round's seconds go in the paper-budget LeNet run
(issue 26): training steps, validation, test evaluation, round boundary.

Runs `python -m examples.lenet` for one round of `--iterations` on the
dataset three times per repeat, alternating, so that the variants share the
machine's state:

- `train`: validation and test once, at the round's end (eval_every =
  test_every = iterations);
- `validation`: validation every 100 iterations, test once;
- `paper`: validation every 100, test every 1000 (the run in
  docs/reproduction/lenet_paper_budget).

Each run has 2 rounds and the second is timed (the first pays for XLA's
compilation, once per arm). The differences give the cost of validation and
of test evaluation, scaled to the paper-budget round of 25,000 iterations.
The round boundary (prune, rewind, optimizer reset) is
`benchmarks/imp_overheads.py`'s figure.

    python -m benchmarks.round_seconds --dataset=idx:/usr/share/datasets/fashion-mnist
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

from examples import harness

FLAGS = flags.FLAGS
harness.define_common_flags(dataset="digits", seed=0, output="round_seconds.json")
flags.DEFINE_integer("iterations", 5000, "Iterations of the measured round.", lower_bound=100)
flags.DEFINE_integer("repeats", 2, "Runs of each variant, interleaved.", lower_bound=1)
flags.DEFINE_integer("paper_iterations", 25000, "Iterations of the round the shares are scaled to.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {
    "train": lambda n: (n, n),
    "validation": lambda n: (100, n),
    "paper": lambda n: (100, 1000),
}


def _run(variant, repeat, scratch):
    eval_every, test_every = VARIANTS[variant](FLAGS.iterations)
    out = os.path.join(scratch, f"{variant}_{repeat}")
    command = [sys.executable, "-m", "examples.lenet", f"--dataset={FLAGS.dataset}",
               "--rounds=2", f"--iterations={FLAGS.iterations}",
               f"--eval_every={eval_every}", f"--test_every={test_every}", "--trials=1",
               "--controls=", f"--seed={FLAGS.seed}", "--export=false", "--tensorboard=false",
               f"--output_dir={out}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


def main(argv):
    del argv
    from examples import run_config
    from keras_lottery.files import file_io

    seconds = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(FLAGS.repeats):
            for variant in VARIANTS:
                row = _run(variant, repeat, scratch)[1]  # round 1: compiled already
                seconds[variant].append(row["train_seconds"])
                print(f"repeat {repeat} {variant}: {row['train_seconds']:.1f} s", flush=True)
    median = {v: statistics.median(s) for v, s in seconds.items()}
    scale = FLAGS.paper_iterations / FLAGS.iterations
    train = median["train"]
    validation = median["validation"] - median["train"]
    test = median["paper"] - median["validation"]
    total = median["paper"]
    result = {
        "command": run_config.full_command(FLAGS, sys.argv[0]),
        "seconds": seconds,
        "median_seconds": median,
        "per_paper_round_seconds": {
            "training_steps": train * scale, "validation": validation * scale,
            "test_evaluation": test * scale, "total": total * scale},
        "shares": {"training_steps": train / total, "validation": validation / total,
                   "test_evaluation": test / total},
    }
    file_io.atomic_write(FLAGS.output, lambda f: f.write(json.dumps(result, indent=1).encode()))
    print(json.dumps(result["per_paper_round_seconds"], indent=1))
    print(json.dumps(result["shares"], indent=1))


if __name__ == "__main__":
    app.run(main)
