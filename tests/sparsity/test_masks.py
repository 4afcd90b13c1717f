"""The mask map: keys, patterns, counts, alignment between models, packing."""

import numpy as np
import pytest

from keras_lottery.sparsity import masks


def test_layer_and_weight_of_a_key():
    assert masks.layer_of("enc/mha/query/kernel") == "enc/mha/query"
    assert masks.weight_of("enc/mha/query/kernel") == "kernel"


@pytest.mark.parametrize(
    "pattern, key, expected",
    [
        ("fc1", "fc1/kernel", True),
        ("fc1", "lenet/fc1/kernel", True),
        ("fc", "fc1/kernel", False),
        ("fc1/kernel", "a/fc1/kernel", True),
        ("*/attention/*", "enc/attention/query/kernel", True),
        ("*/attention/*", "attention/query/kernel", True),
        ("*/attention/*", "enc/self_attention/query/kernel", False),
        ("enc/*", "enc/ffn/kernel", True),
        ("ffn", "enc/ffn_out/kernel", False),
    ],
)
def test_patterns_select_whole_components(pattern, key, expected):
    assert masks.matches(pattern, key) is expected


def test_counts_density_and_layer_density():
    m = {"a/kernel": np.array([True, False]), "a/recurrent_kernel": np.array([True, True]),
         "b/kernel": np.array([False, False, False, True])}
    assert masks.counts(m) == (4, 8)
    assert masks.density(m) == 0.5
    assert masks.layer_density(m) == {"a": 0.75, "b": 0.25}
    assert masks.density({}) == 1.0


def test_check_names_every_problem():
    with pytest.raises(ValueError, match="missing \\['b'\\].*not in the model \\['c'\\]"):
        masks.check({"a": np.ones(2, bool), "c": np.ones(1, bool)}, {"a": (2,), "b": (3,)})
    with pytest.raises(ValueError, match="boolean"):
        masks.check({"a": np.ones(2)}, {"a": (2,)})


def test_align_by_keys_then_by_position():
    same, how = masks.align({"a/kernel": (2, 3)}, {"a/kernel": (2, 3)})
    assert same == {"a/kernel": "a/kernel"} and how == "keys"
    mapping, how = masks.align({"s1/d3/kernel": (2, 3), "s1/d4/kernel": (3, 1)},
                               {"d7/kernel": (2, 3), "d8/kernel": (3, 1)})
    assert how == "order" and mapping == {"s1/d3/kernel": "d7/kernel", "s1/d4/kernel": "d8/kernel"}
    with pytest.raises(ValueError, match="shape mismatch|by position"):
        masks.align({"a/kernel": (2, 3)}, {"b/kernel": (3, 2)})
    with pytest.raises(ValueError, match="by position"):
        masks.align({"a/kernel": (2, 3)}, {"b/bias": (2, 3)})


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    m = {"a": rng.random((7, 5)) < 0.3, "b": rng.random(13) < 0.5}
    arrays, shapes = masks.pack(m)
    assert all(a.dtype == np.uint8 for a in arrays.values())
    back = masks.unpack(arrays, shapes)
    assert all(np.array_equal(back[k], m[k]) for k in m)
