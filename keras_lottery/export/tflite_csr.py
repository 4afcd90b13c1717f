"""Re-encodes block-sparse TFLite weights as plain CSR when that is smaller.

TensorFlow Lite's converter (`Optimize.EXPERIMENTAL_SPARSITY`) encodes a
fully-connected weight in 1x4 blocks whenever the share of all-zero blocks is
above 90% of the share of zero weights. Magnitude-pruned tickets cluster their
survivors (e.g. on the central pixels of MNIST), so they usually get blocks:
every block holding one survivor stores four values, and the file ends up 2-3x
larger than a plain CSR encoding. Blocks buy TFLite's sparse FC kernel; CSR
buys size and is densified once, when the interpreter prepares the model
(the converter's own fallback for unstructured sparsity).

`reencode_as_csr(flatbuffer)` rewrites every 2-D float32/float16 tensor that
the converter encoded in 1xB blocks as CSR plus a DENSIFY op, if that makes
the file smaller, and leaves everything else untouched. `export_tflite`
verifies the result against the Keras model like any other file.
"""

import flatbuffers
import numpy as np
from tensorflow.lite.python import schema_py_generated as schema

_DTYPES = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16}


def reencode_as_csr(content):
    """Returns the flatbuffer with block-sparse 2-D weights stored as CSR.

    Args:
        content: bytes of a `.tflite` model.

    Returns:
        `(new_content, count)`: the rewritten model (the input itself when
        nothing got smaller) and how many tensors were re-encoded.

    Example:
    >>> import os, tempfile
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.tflite")
    >>> _ = keras_lottery.export_tflite(model, path, sparse="block")
    >>> reencode_as_csr(open(path, "rb").read())[1]
    0
    """
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    count = 0
    densify_code = None
    for subgraph in model.subgraphs:
        for index in range(len(subgraph.tensors)):
            tensor = subgraph.tensors[index]
            dense = _decode_row_blocks(model, tensor)
            if dense is None:
                continue
            values, segments, indices = _csr(dense)
            new_bytes = values.nbytes + segments.nbytes + indices.nbytes
            if new_bytes >= _encoded_bytes(model, tensor):
                continue
            if densify_code is None:
                densify_code = _opcode_index(model, schema.BuiltinOperator.DENSIFY)
            _store_csr(model, tensor, dense.shape, values, segments, indices)
            _insert_densify(model, subgraph, index, densify_code)
            count += 1
    if count == 0:
        return content, 0
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), count


def _decode_row_blocks(model, tensor):
    """Dense array of a 2-D tensor stored in 1xB blocks, else None."""
    sparsity = tensor.sparsity
    if sparsity is None or tensor.type not in _DTYPES or tensor.shape is None:
        return None
    if len(tensor.shape) != 2 or sparsity.blockMap is None:
        return None
    if list(sparsity.blockMap) != [1] or list(sparsity.traversalOrder) != [0, 1, 2]:
        return None
    dims = sparsity.dimMetadata
    formats = [d.format for d in dims]
    dense_, csr = schema.DimensionType.DENSE, schema.DimensionType.SPARSE_CSR
    if formats != [dense_, csr, dense_]:
        return None
    rows, cols = (int(d) for d in tensor.shape)
    block = int(dims[2].denseSize)
    if block <= 0 or cols % block:
        return None
    segments = np.asarray(dims[1].arraySegments.values, dtype=np.int64)
    indices = np.asarray(dims[1].arrayIndices.values, dtype=np.int64)
    data = model.buffers[tensor.buffer].data
    values = np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=_DTYPES[tensor.type])
    if len(segments) != rows + 1 or values.size != indices.size * block:
        return None
    dense = np.zeros((rows, cols), dtype=values.dtype)
    row_of_block = np.repeat(np.arange(rows), np.diff(segments))
    blocks = values.reshape(-1, block)
    for offset in range(block):
        dense[row_of_block, indices * block + offset] = blocks[:, offset]
    return dense


def _encoded_bytes(model, tensor):
    total = len(model.buffers[tensor.buffer].data)
    for dim in tensor.sparsity.dimMetadata:
        for vector in (dim.arraySegments, dim.arrayIndices):
            if vector is not None:
                total += np.asarray(vector.values).nbytes
    return total


def _csr(dense):
    nonzero = dense != 0
    values = dense[nonzero]
    indices = np.nonzero(nonzero)[1]
    segments = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    return values, _index_array(segments), _index_array(indices)


def _index_array(values):
    top = int(values.max()) if values.size else 0
    if top < 2**8:
        return values.astype(np.uint8)
    if top < 2**16:
        return values.astype(np.uint16)
    return values.astype(np.int32)


def _index_vector(array):
    if array.dtype == np.uint8:
        vector, kind = schema.Uint8VectorT(), schema.SparseIndexVector.Uint8Vector
    elif array.dtype == np.uint16:
        vector, kind = schema.Uint16VectorT(), schema.SparseIndexVector.Uint16Vector
    else:
        vector, kind = schema.Int32VectorT(), schema.SparseIndexVector.Int32Vector
    vector.values = array.tolist()
    return vector, kind


def _store_csr(model, tensor, shape, values, segments, indices):
    rows_dim = schema.DimensionMetadataT()
    rows_dim.format = schema.DimensionType.DENSE
    rows_dim.denseSize = int(shape[0])
    cols_dim = schema.DimensionMetadataT()
    cols_dim.format = schema.DimensionType.SPARSE_CSR
    cols_dim.arraySegments, cols_dim.arraySegmentsType = _index_vector(segments)
    cols_dim.arrayIndices, cols_dim.arrayIndicesType = _index_vector(indices)
    sparsity = schema.SparsityParametersT()
    sparsity.traversalOrder = [0, 1]
    sparsity.blockMap = []
    sparsity.dimMetadata = [rows_dim, cols_dim]
    tensor.sparsity = sparsity
    model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)


def _opcode_index(model, builtin):
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _insert_densify(model, subgraph, sparse_index, densify_code):
    sparse = subgraph.tensors[sparse_index]
    empty = schema.BufferT()
    model.buffers.append(empty)
    dense = schema.TensorT()
    dense.shape = list(sparse.shape)
    dense.type = sparse.type
    dense.buffer = len(model.buffers) - 1
    dense.name = (sparse.name or b"weight") + b"_densified"
    subgraph.tensors.append(dense)
    dense_index = len(subgraph.tensors) - 1
    for op in subgraph.operators:
        op.inputs = [dense_index if i == sparse_index else i for i in op.inputs]
    densify = schema.OperatorT()
    densify.opcodeIndex = densify_code
    densify.inputs = [sparse_index]
    densify.outputs = [dense_index]
    densify.builtinOptionsType = schema.BuiltinOptions.DensifyOptions
    densify.builtinOptions = schema.DensifyOptionsT()
    subgraph.operators.insert(0, densify)
