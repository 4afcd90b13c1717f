"""The one sparsity vocabulary: renamed arguments refused with their new
name, per-weight values and exclusions, structures, what does not combine."""

import pytest

from keras_lottery.sparsity import structure
from keras_lottery.sparsity import vocabulary

KEYS = ["enc/fc1/kernel", "enc/fc2/kernel", "out/kernel"]


@pytest.mark.parametrize("old, new", [("scope", "distribution="), ("granularity", "structure="),
                                      ("pattern", "structure="), ("norm", "structure="),
                                      ("method", "scorer="), ("keys", "density= and exclude=")])
def test_every_old_name_is_refused_naming_the_new_one(old, new):
    with pytest.raises(TypeError, match=f"entry\\({old}=...\\) is renamed: use {new}"):
        vocabulary.refuse_renamed("entry", {old: 1})


def test_an_unknown_name_gets_pythons_message_and_a_new_name_passes():
    with pytest.raises(TypeError, match="unexpected keyword argument 'sope'"):
        vocabulary.refuse_renamed("entry", {"sope": 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'method'"):
        vocabulary.refuse_renamed("entry", {"method": "x"}, renamed=("scope",))
    vocabulary.refuse_renamed("entry", {})


def test_per_weight_values_by_pattern_with_exclusions():
    values = vocabulary.per_weight({"default": 0.1, "enc/fc2": 0.5}, KEYS, "density",
                                   exclude="out")
    assert values == {"enc/fc1/kernel": 0.1, "enc/fc2/kernel": 0.5, "out/kernel": 1.0}
    assert vocabulary.per_weight(0.3, KEYS, "density") == dict.fromkeys(KEYS, 0.3)


@pytest.mark.parametrize("value, exclude, match", [
    ({"enc": 0.1}, None, "needs a 'default'"),
    ({"default": 0.1, "dec": 0.2}, None, r"density names \['dec'\]"),
    ({"default": 0.1, "enc": 0.2, "*/fc1/*": 0.3}, None, "different densities"),
    (1.5, None, r"density must be a number in \(0, 1\]"),
    (0.0, None, r"density must be a number in \(0, 1\]"),
    (True, None, "density must be"),
    (0.5, ["dec"], "exclude names 'dec'"),
])
def test_bad_per_weight_values_are_refused(value, exclude, match):
    with pytest.raises(ValueError, match=match):
        vocabulary.per_weight(value, KEYS, "density", exclude=exclude)


def test_structures_and_what_does_not_combine():
    assert vocabulary.structure_argument("weight") is structure.UNSTRUCTURED
    assert vocabulary.structure_argument("neuron").describe() == "units(axis=-1, norm=l1)"
    assert vocabulary.structure_argument(structure.Units(norm="l2")).norm == "l2"
    assert vocabulary.structure_argument("2:4").describe() == "2:4"
    with pytest.raises(ValueError, match="structure must be"):
        vocabulary.structure_argument("block")
    with pytest.raises(ValueError, match="one threshold"):
        vocabulary.check_combination("global", structure.Units())
    with pytest.raises(ValueError, match="fixes each kernel's density"):
        vocabulary.check_combination("erk", structure.NM(2, 4))
    vocabulary.check_combination("erk", structure.Units())
    with pytest.raises(ValueError, match="old scope='layerwise' is distribution='uniform'"):
        vocabulary.distribution_argument("layerwise")
    with pytest.raises(ValueError, match="X does not take distribution='global': why"):
        vocabulary.distribution_argument("global", ("uniform",), "X", "why")
