"""The output directory of an example run, and resuming it.

Layout (`--output_dir`):

- `config.json` — the run's settings (`RunConfig.settings()`) and trials; a
  rerun with other settings is refused, with the differences listed;
- `trial<t>/<arm>.json` — one finished arm (its rows and learning curve); a
  rerun skips it;
- `trial<t>/<arm>_checkpoint/` — the IMP callback's round checkpoints: an
  arm killed mid-run resumes at the round it was in; the ticket arm also
  keeps its round-0 checkpoint, where the control arms start from;
- `trial<t>/tickets/round<r>.npz` — the ticket arm's ticket of every round
  (masks, θ0, metrics); the control arms read their masks from them;
- `results.json`, `results.csv`, the plots, `tensorboard/`,
  `ticket_trial<t>.npz`, `trial<t>/model.keras` and `export/`.

Only the chief of a multi-worker run writes.
"""

import json
import os

from absl import app

from keras_lottery.files import file_io


class RunDirectory:
    """Paths and resume rules of one run directory.

    Args:
        path: the directory (`--output_dir`).
        chief: whether this process writes (False on non-chief workers).
    """

    def __init__(self, path, chief=True):
        # Absolute, so that a path from `file()` handed back to `write_json`
        # is not joined to a relative --output_dir a second time.
        self.path = os.path.abspath(path)
        self.chief = chief

    def prepare(self, settings, trials):
        """Checks the directory is writable and holds no run with other
        settings; records the settings."""
        if self.chief:
            self._check_writable()
        config_path = os.path.join(self.path, "config.json")
        if os.path.exists(config_path):
            with open(config_path) as f:
                saved = json.load(f)
            saved.pop("trials", None)
            if "scope" in saved:  # runs started before the one sparsity vocabulary
                scope = saved.pop("scope")
                saved["distribution"] = "uniform" if scope == "layerwise" else scope
            differences = file_io.config_differences(saved, settings)
            if differences:
                raise app.UsageError(
                    f"{self.path} holds a run with other settings "
                    f"({file_io.describe_differences(differences)}). Use a new "
                    "--output_dir, or the same flags to resume."
                )
        if self.chief:
            self.write_json("config.json", {**settings, "trials": trials})

    def _check_writable(self):
        try:
            os.makedirs(self.path, exist_ok=True)
            probe = os.path.join(self.path, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as error:
            raise app.UsageError(
                f"--output_dir={self.path} is not a writable directory ({error}). "
                "Choose another --output_dir."
            ) from None

    def file(self, *parts):
        """A path inside the directory (parent folders created)."""
        path = os.path.join(self.path, *parts)
        if self.chief:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def arm_file(self, trial, arm):
        return self.file(f"trial{trial}", f"{arm}.json")

    def checkpoint_dir(self, trial, arm):
        return os.path.join(self.path, f"trial{trial}", f"{arm}_checkpoint")

    def round_ticket(self, trial, round_index):
        return self.file(f"trial{trial}", "tickets", f"round{round_index}.npz")

    def load_arm(self, trial, arm):
        """The saved result of a finished arm, or None."""
        path = os.path.join(self.path, f"trial{trial}", f"{arm}.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def write_json(self, name, data):
        """Writes JSON atomically (chief only)."""
        if not self.chief:
            return
        path = name if os.path.isabs(name) else self.file(name)
        payload = json.dumps(file_io.json_safe(data), indent=2, default=float).encode()
        file_io.atomic_write(path, lambda f: f.write(payload))
