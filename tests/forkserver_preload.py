"""Imported once by script_runner's fork server: TensorFlow, Keras,
keras_lottery and the scripts' common libraries, with the native lines
TensorFlow prints while it loads kept out of the test output (as the
scripts' own `quiet_start` does). No TensorFlow op runs here: each forked
script starts TensorFlow's runtime itself."""

import os
import sys
import tempfile

sys.stderr.flush()
_saved = os.dup(2)
with tempfile.TemporaryFile() as _sink:
    os.dup2(_sink.fileno(), 2)
    try:
        import absl.app  # noqa: F401
        import absl.flags  # noqa: F401
        import keras  # noqa: F401
        import matplotlib  # noqa: F401
        import matplotlib.pyplot  # noqa: F401
        import numpy  # noqa: F401
        import sklearn.datasets  # noqa: F401
        import tensorflow  # noqa: F401

        import keras_lottery  # noqa: F401
    finally:
        os.dup2(_saved, 2)
        os.close(_saved)
