"""Summarises several seeds of `examples.one_shot_lm`: the perplexity of
each method and sparsity, mean ± std [min, max] over the runs, and how often
each ordering the methods are judged by holds.

    python -m examples.one_shot_lm_seeds \
        --run_dirs=docs/reproduction/one_shot_lm/width256,runs/lm_seed1,runs/lm_seed2 \
        --output_dir=docs/reproduction/one_shot_lm/width256_seeds

Writes `summary.json` and `summary.md` into `--output_dir`; the runs must
share every setting but the seed (`config.json`), or it says which differ.
"""

import json
import os
import sys

from absl import app
from absl import flags

from examples import common

FLAGS = flags.FLAGS
flags.DEFINE_list("run_dirs", None, "Output directories of one_shot_lm runs, one per seed.")
flags.DEFINE_string("output_dir", None, "Where summary.json and summary.md go.")


def summarise(runs):
    """`runs`: one `(config, results)` per seed (the two JSON files of a run).

    >>> rows = lambda d, m: [{"method": "dense", "sparsity": "0", "perplexity": d},
    ...                      {"method": "magnitude", "sparsity": "0.5", "perplexity": m},
    ...                      {"method": "sparsegpt", "sparsity": "0.5", "perplexity": d + 0.1}]
    >>> s = summarise([({"seed": 0}, rows(4.0, 4.5)), ({"seed": 1}, rows(4.2, 4.6))])
    >>> s["cells"]["0.5 sparsegpt"]["vs_dense"]["values"]
    [0.025, 0.0238]
    >>> s["orderings"]["0.5: sparsegpt < magnitude"]
    [True, True]
    """
    seeds = [config["seed"] for config, _ in runs]
    cells = {}
    for _, rows in runs:
        dense = next(r["perplexity"] for r in rows if r["method"] == "dense")
        for r in rows:
            if r["method"] == "dense":
                continue
            cell = cells.setdefault(f"{r['sparsity']} {r['method']}",
                                    {"perplexity": [], "vs_dense": []})
            cell["perplexity"].append(r["perplexity"])
            cell["vs_dense"].append(round(r["perplexity"] / dense - 1, 4))
        cells.setdefault("dense", {"perplexity": []})["perplexity"].append(dense)
    summary = {"seeds": seeds, "cells": {k: {name: common.summary(v) for name, v in c.items()}
                                         for k, c in cells.items()}}
    orderings = {}
    for sparsity in sorted({key.split()[0] for key in cells if key != "dense"}):
        methods = [key.split()[1] for key in cells if key.split()[0] == sparsity]
        for better, worse in [("sparsegpt", "wanda"), ("sparsegpt", "magnitude"),
                              ("wanda", "magnitude")]:
            if better in methods and worse in methods:
                orderings[f"{sparsity}: {better} < {worse}"] = [
                    a < b for a, b in zip(cells[f"{sparsity} {better}"]["perplexity"],
                                          cells[f"{sparsity} {worse}"]["perplexity"])]
        if "sparsegpt" in methods:
            orderings[f"{sparsity}: sparsegpt within 10% of dense"] = [
                v <= 0.10 for v in cells[f"{sparsity} sparsegpt"]["vs_dense"]]
    summary["orderings"] = orderings
    return summary


def markdown(summary):
    """The summary as a Markdown table and a list of orderings."""
    def cell(s, percent=False):
        f = (lambda v: f"{100 * v:+.1f}%") if percent else (lambda v: f"{v:.3f}")
        return f"{f(s['mean'])} ± {f(s['std']).lstrip('+')} [{f(s['min'])}, {f(s['max'])}]"

    n = len(summary["seeds"])
    lines = [f"Over {n} seeds ({', '.join(map(str, summary['seeds']))}): mean ± std [min, max].",
             "", "| sparsity | method | perplexity | vs dense |", "|---|---|---|---|",
             f"| 0 | dense | {cell(summary['cells']['dense']['perplexity'])} | |"]
    for key, c in summary["cells"].items():
        if key != "dense":
            sparsity, method = key.split()
            lines.append(f"| {sparsity} | {method} | {cell(c['perplexity'])} | "
                         f"{cell(c['vs_dense'], percent=True)} |")
    lines += ["", "| ordering | seeds where it holds |", "|---|---|"]
    lines += [f"| {name} | {sum(held)} of {len(held)} |" for name, held in summary["orderings"].items()]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    from examples import run_config
    from keras_lottery.files import file_io

    if not FLAGS.run_dirs or not FLAGS.output_dir:
        raise app.UsageError("--run_dirs and --output_dir are required.")
    runs = []
    for path in FLAGS.run_dirs:
        try:
            with open(os.path.join(path, "config.json")) as f:
                config = json.load(f)
            with open(os.path.join(path, "results.json")) as f:
                runs.append((config, json.load(f)))
        except (OSError, ValueError) as error:
            raise app.UsageError(f"--run_dirs: {path} is not a finished one_shot_lm run: {error}")
    differ = sorted(k for k in runs[0][0] if k not in ("seed", "output_dir")
                    and any(config.get(k) != runs[0][0][k] for config, _ in runs))
    if differ:
        raise app.UsageError(f"--run_dirs: the runs differ in more than the seed: {differ}")
    summary = summarise(runs)
    summary["command"] = run_config.full_command(FLAGS, sys.argv[0])
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    text = markdown(summary)
    file_io.atomic_write(os.path.join(FLAGS.output_dir, "summary.json"),
                         lambda f: f.write(json.dumps(summary, indent=1).encode()))
    file_io.atomic_write(os.path.join(FLAGS.output_dir, "summary.md"),
                         lambda f: f.write(text.encode()))
    print(text)


if __name__ == "__main__":
    app.run(main)
