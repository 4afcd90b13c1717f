"""Starts TensorFlow without the native log lines it prints on every start.

TensorFlow's C++ libraries write lines such as "Could not find cuda drivers",
"failed call to cuInit" and "All log messages before absl::InitializeLog()"
straight to file descriptor 2 while they load, before (and regardless of)
`TF_CPP_MIN_LOG_LEVEL`. The scripts call `start_tensorflow()` once their
flags are parsed: it loads TensorFlow and lists its devices with descriptor
2 captured, drops those known lines, and writes anything else back to
stderr. `TF_CPP_MIN_LOG_LEVEL` (default 2 here: errors only, unless the user
set it) governs what TensorFlow logs afterwards.
"""

import os
import re
import sys
import tempfile

# Lines every CPU-only start prints; nothing else is dropped.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|Could not find cuda drivers"
    r"|failed call to cuInit|cuda_platform\.cc|cpu_feature_guard\.cc"
    r"|This TensorFlow binary is optimized|To enable the following instructions"
    r"|oneDNN custom operations are on|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation_placer\.cc|TF-TRT Warning"
)


def start_tensorflow():
    """Imports TensorFlow (and initialises its device list) quietly, when
    the Keras backend is TensorFlow; returns the lines it kept.

    Example:
    >>> _ = start_tensorflow()
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the cuInit line comes here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        kept = [line for line in sink.read().decode(errors="replace").splitlines()
                if line.strip() and not NOISE.search(line)]
    for line in kept:
        print(line, file=sys.stderr)
    return kept
