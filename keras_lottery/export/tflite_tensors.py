"""The constant tensors of a `.tflite` file, as stored (TensorFlow only).

What the file holds, not what the interpreter computes: an int8 file's
weights come back as int8 with their scales, so a test can count the pruned
weights that stayed exactly 0 after quantization.

Example:
>>> import os, tempfile
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc")])
>>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
>>> _ = keras_lottery.export_tflite(model, path, sparse=False)
>>> [t.shape for t in constant_tensors(open(path, "rb").read()) if t.array.ndim == 2]
[(2, 4)]
"""

import dataclasses

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

_DTYPES = {
    schema.TensorType.FLOAT32: np.float32,
    schema.TensorType.FLOAT16: np.float16,
    schema.TensorType.INT8: np.int8,
    schema.TensorType.INT32: np.int32,
    schema.TensorType.INT64: np.int64,
    schema.TensorType.UINT8: np.uint8,
}


@dataclasses.dataclass
class ConstantTensor:
    """One constant tensor of a `.tflite` file.

    Attributes:
        name: the tensor's name in the file.
        shape: its shape (TFLite's layout: a Dense kernel is `(out, in)`).
        array: its values as stored (int8 for quantized weights).
        scales: per-channel (or per-tensor) quantization scales, or None.
        zero_points: the matching zero points, or None.
        sparse: True when stored in TFLite's sparse encoding (`array` is
            then the raw value buffer, not the dense tensor).
    """

    name: str
    shape: tuple
    array: np.ndarray
    scales: object
    zero_points: object
    sparse: bool


def constant_tensors(content):
    """Every constant tensor of the first subgraph of a `.tflite` flatbuffer.

    Args:
        content: the file's bytes.

    Returns:
        A list of `ConstantTensor`.

    Example:
    >>> constant_tensors.__name__
    'constant_tensors'
    """
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    result = []
    for tensor in model.subgraphs[0].tensors:
        data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
        if data is None or len(data) == 0 or tensor.type not in _DTYPES:
            continue
        raw = np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype=_DTYPES[tensor.type])
        shape = tuple(int(d) for d in (tensor.shape if tensor.shape is not None else ()))
        sparse = tensor.sparsity is not None
        quantization = tensor.quantization
        scales = getattr(quantization, "scale", None) if quantization is not None else None
        zeros = getattr(quantization, "zeroPoint", None) if quantization is not None else None
        result.append(
            ConstantTensor(
                name=tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
                shape=shape,
                array=raw if sparse else raw.reshape(shape),
                scales=None if scales is None else np.asarray(scales),
                zero_points=None if zeros is None else np.asarray(zeros),
                sparse=sparse,
            )
        )
    return result
