"""sparsity_report: wrapped models by their masks, plain ones by non-zeros."""

import numpy as np

import keras_lottery as kl
from conftest import mlp


def test_wrapped_and_stripped_reports_agree():
    model = kl.wrap(mlp())
    rng = np.random.default_rng(0)
    kl.set_masks(model, {k: rng.random(m.shape) < 0.3 for k, m in kl.get_masks(model).items()})
    wrapped = kl.sparsity_report(model)
    plain = kl.sparsity_report(kl.strip(model))
    assert [w.key for w in wrapped.weights] == [w.key for w in plain.weights]
    assert wrapped.kept == plain.kept and wrapped.key_density() == plain.key_density()
    assert "total" in str(wrapped) and wrapped.as_dict()["density"] == wrapped.density
