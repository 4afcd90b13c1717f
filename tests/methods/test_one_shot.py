"""One-shot pruning: Wanda against a NumPy reference, SparseGPT's OBS update
by hand, its reconstruction against magnitude's, N:M patterns, EinsumDense
layouts, argument errors."""

import keras
import numpy as np
import pytest

import keras_lottery as kl


def _dense(inputs=8, outputs=4, seed=0):
    keras.utils.set_random_seed(seed)
    return kl.wrap(keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(outputs, name="fc")],
                                    name="net"))


def _correlated(n, d, seed=0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * (rng.random(d) * 3)[:, None]
    return (rng.normal(size=(n, d)) @ mixing).astype("float32")


def _kernel(model, name="fc"):
    return keras.ops.convert_to_numpy(model.get_layer(name).kernel).astype(np.float64)


def _attention():
    """A query projection and an output projection, as EinsumDense layers."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((5, 8))
    q = keras.layers.EinsumDense("btd,dnh->btnh", (5, 2, 4), name="qkv")(inputs)
    out = keras.layers.EinsumDense("btnh,nhd->btd", (5, 8), name="proj")(q)
    return kl.wrap(keras.Model(inputs, out, name="attn"))


def test_wanda_matches_a_numpy_reference_per_output_unit():
    model = _dense(16, 5)
    x = _correlated(200, 16)
    w = _kernel(model)
    result = kl.prune_one_shot(model, "wanda", density=0.25, calibration_data=[x[:100], x[100:]],
                               verbose=0)
    scores = np.abs(w) * np.linalg.norm(x.astype(np.float64), axis=0)[:, None]
    expected = np.zeros_like(w, bool)
    for j in range(w.shape[1]):  # each output unit keeps its own top 4 of 16
        expected[np.argsort(-scores[:, j])[:4], j] = True
    np.testing.assert_array_equal(result.masks["fc/kernel"], expected)
    np.testing.assert_allclose(_kernel(model), w * expected, rtol=1e-6)
    np.testing.assert_array_equal(kl.get_masks(model)["fc/kernel"], expected)


def test_sparsegpt_compensates_a_pruned_weight_by_hand():
    model = _dense(2, 1)
    model.get_layer("fc").kernel.assign(np.array([[0.1], [1.0]], "float32"))
    x = np.array([[1.0, 1.0], [1.0, 0.0], [2.0, 1.0]], "float32")
    h = x.T.astype(np.float64) @ x
    kl.prune_one_shot(model, "sparsegpt", density=0.5, calibration_data=x, damping=0.0, verbose=0)
    # OBS: w1 goes, w2 absorbs it: w2 + w1 * H12 / H22.
    np.testing.assert_allclose(_kernel(model)[:, 0], [0.0, 1.0 + 0.1 * h[0, 1] / h[1, 1]], rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"density": 0.5}, {"structure": "2:4"}])
def test_sparsegpt_reconstructs_better_than_wanda_and_magnitude(kwargs):
    x = _correlated(512, 32)
    x[:, ::8] *= 10.0  # a few outlier features, as in LLM activations (Wanda's case)
    errors = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        model = _dense(32, 16)
        dense_out = keras.ops.convert_to_numpy(model(x))
        result = kl.prune_one_shot(model, method, calibration_data=x, verbose=0, **kwargs)
        out = keras.ops.convert_to_numpy(model(x))
        errors[method] = np.sum((out - dense_out) ** 2) / np.sum(dense_out ** 2)
        assert result.errors["fc/kernel"] == pytest.approx(errors[method], rel=1e-3)
        assert result.masks["fc/kernel"].mean() == pytest.approx(0.5)
    assert errors["sparsegpt"] < errors["magnitude"] and errors["wanda"] < errors["magnitude"]


def test_sparsegpt_blocks_are_lazy_updates_of_the_same_algorithm():
    x = _correlated(256, 16)
    kernels = []
    for block_size in (4, 8, 128):
        model = _dense(16, 6)
        kl.prune_one_shot(model, "sparsegpt", structure="2:4", calibration_data=x,
                          block_size=block_size, verbose=0)
        kernels.append(_kernel(model))
    for other in kernels[1:]:
        np.testing.assert_allclose(other, kernels[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt"])
def test_two_four_pattern_holds(method):
    model = _dense(16, 6)
    kl.prune_one_shot(model, method, structure="2:4", calibration_data=_correlated(64, 16), verbose=0)
    assert kl.check_pattern(model, "2:4") == {"fc/kernel": 0}
    groups = kl.get_masks(model)["fc/kernel"].reshape(4, 4, 6).sum(axis=1)
    assert (groups == 2).all()


def test_layers_are_pruned_in_order_on_the_pruned_model_and_einsum_layouts():
    model = _attention()
    x = np.random.default_rng(1).normal(size=(16, 5, 8)).astype("float32")
    qkv_before = keras.ops.convert_to_numpy(model.get_layer("qkv").kernel)
    proj_before = keras.ops.convert_to_numpy(model.get_layer("proj").kernel).astype(np.float64)
    result = kl.prune_one_shot(model, "wanda", density=0.5, calibration_data=[x], verbose=0)
    assert result.masks["qkv/kernel"].shape == (8, 2, 4)
    assert result.masks["proj/kernel"].shape == (2, 4, 8)
    # qkv: each of its 8 outputs (n, h) keeps 4 of the 8 input features d.
    np.testing.assert_array_equal(result.masks["qkv/kernel"].sum(axis=0), np.full((2, 4), 4))
    # proj's inputs are the *pruned* qkv's outputs: its Wanda norms come from them.
    pruned_q = np.einsum("btd,dnh->btnh", x.astype(np.float64),
                         qkv_before * result.masks["qkv/kernel"])
    norms = np.linalg.norm(pruned_q.reshape(-1, 8), axis=0)
    scores = np.abs(proj_before.reshape(8, 8)) * norms[:, None]  # [(n, h), d]
    expected = np.zeros((8, 8), bool)
    for j in range(8):
        expected[np.argsort(-scores[:, j])[:4], j] = True
    np.testing.assert_array_equal(result.masks["proj/kernel"].reshape(8, 8), expected)
    assert "call" not in vars(model.get_layer("proj"))


def test_bad_arguments():
    model = _dense(6, 2)
    x = np.ones((4, 6), "float32")
    with pytest.raises(ValueError, match="scorer must be one of"):
        kl.prune_one_shot(model, "obs", density=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        kl.prune_one_shot(model, "magnitude", density=0.5, structure="2:4")
    with pytest.raises(ValueError, match="calibration_data"):
        kl.prune_one_shot(model, "wanda", density=0.5)
    with pytest.raises(ValueError, match="do not divide"):
        kl.prune_one_shot(model, "magnitude", structure="2:4", calibration_data=x)
    with pytest.raises(ValueError, match="exclude names 'conv'"):
        kl.prune_one_shot(model, "magnitude", density=0.5, exclude=["conv"])
    with pytest.raises(ValueError, match=r"density names \['conv'\]"):
        kl.prune_one_shot(model, "magnitude", density={"default": 1.0, "conv": 0.5})
    with pytest.raises(TypeError, match="renamed: use density= and exclude="):
        kl.prune_one_shot(model, "magnitude", density=0.5, keys=["fc/kernel"])
    with pytest.raises(TypeError, match="renamed: use structure="):
        kl.prune_one_shot(model, "magnitude", pattern="2:4")
    with pytest.raises(ValueError, match="does not take distribution='global'"):
        kl.prune_one_shot(model, "magnitude", density=0.5, distribution="global")
    with pytest.raises(ValueError, match="structure='neuron'"):
        kl.prune_one_shot(model, "magnitude", density=0.5, structure="neuron")
    assert "call" not in vars(model.get_layer("fc"))  # the capture hook is gone


@pytest.mark.backend_independent
def test_a_kerashub_decoder_every_projection_then_strip():
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=8)
    model = kl.wrap(backbone)
    rng = np.random.default_rng(0)
    batches = [{"token_ids": rng.integers(0, 60, (4, 8)).astype("int32"),
                "padding_mask": np.ones((4, 8), "int32")} for _ in range(2)]
    dense = keras.ops.convert_to_numpy(model(batches[0]))
    # The embeddings are wrapped too, and one-shot pruning leaves them: it says so.
    with pytest.warns(UserWarning, match=r"Dense/EinsumDense kernels only \(12 here\); 2 other "
                                         r"pruned weight\(s\).*token_embedding"):
        result = kl.prune_one_shot(model, "sparsegpt", density=0.5, calibration_data=batches,
                                   verbose=0)
    for layer in range(2):  # Q, K, V, output projection, both MLP kernels of every block
        for name in ("self_attention/query", "self_attention/key", "self_attention/value",
                     "self_attention/attention_output", "feedforward_intermediate_dense",
                     "feedforward_output_dense"):
            key = f"transformer_layer_{layer}/{name}/kernel"
            assert result.masks[key].mean() == pytest.approx(0.5), key
            assert 0.0 < result.errors[key] < 1.0
    assert not any("embedding" in key for key in result.masks)
    pruned = keras.ops.convert_to_numpy(model(batches[0]))
    assert 0 < np.sum((pruned - dense) ** 2) < np.sum(dense ** 2)
    plain = kl.strip(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(batches[0])), pruned, atol=1e-5)


def test_check_pattern_reads_einsum_kernels_as_prune_one_shot_groups_them():
    model = _attention()
    assert kl.check_pattern(model, "2:4") == {"qkv/kernel": 16, "proj/kernel": 16}  # dense
    x = np.random.default_rng(1).normal(size=(16, 5, 8)).astype("float32")
    kl.prune_one_shot(model, "sparsegpt", structure="2:4", calibration_data=x, verbose=0)
    assert kl.check_pattern(model, "2:4") == {"qkv/kernel": 0, "proj/kernel": 0}
    kernel = model.get_layer("proj").kernel
    broken = keras.ops.convert_to_numpy(kernel).copy()
    broken[0, :, 0] = 1.0  # 4 consecutive input features (n=0, h=0..3) of output 0
    kernel.assign(broken)
    assert kl.check_pattern(model, "2:4")["proj/kernel"] == 1


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export runs on TensorFlow")
def test_a_one_shot_model_exports_and_saves_a_ticket(tmp_path):
    model = _dense(16, 8)
    x = _correlated(128, 16)
    kl.prune_one_shot(model, "sparsegpt", structure="2:4", calibration_data=x, verbose=0)
    tflite = kl.export_tflite(model, str(tmp_path / "m.tflite"), sample_inputs=x[:8])
    assert tflite.max_abs_error <= 1e-4
    kl.save_ticket(model, str(tmp_path / "ticket.npz"))
    ticket = kl.read_ticket(str(tmp_path / "ticket.npz"))
    np.testing.assert_array_equal(ticket.masks["fc/kernel"], kl.get_masks(model)["fc/kernel"])
