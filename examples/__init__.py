"""The example scripts, run from the repository root as modules:
`python -m examples.lenet --dataset=idx:/usr/share/datasets/fashion-mnist`.

Importing the package sets what every script needs before Keras loads:
the TensorFlow backend and TensorFlow's C++ logs at errors only, unless the
environment already says otherwise.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
