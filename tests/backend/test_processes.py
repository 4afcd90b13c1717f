"""`keras_lottery.backend.processes`: one process here; several are faked
where a check's refusal is what is tested (tests/test_jax_processes.py runs
real processes)."""

import types

import keras
import numpy as np
import pytest

from keras_lottery.backend import processes


def test_one_process_is_the_writer_and_waits_for_no_one():
    assert (processes.count(), processes.index(), processes.is_writer()) == (1, 0, True)
    processes.require_same(7, "a value")
    processes.check_fit(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    processes.require_addressable(keras.Variable(np.zeros((2, 2))))
    assert processes.local_rows(10, 4).tolist() == list(range(10))


@pytest.fixture
def second_of_two(monkeypatch):
    fake = types.SimpleNamespace(process_count=lambda: 2, process_index=lambda: 1)
    monkeypatch.setattr(processes, "_jax_processes", lambda: fake)
    return fake


def test_local_rows_give_each_process_its_share_of_every_global_batch(second_of_two):
    assert processes.local_rows(8, 4).tolist() == [2, 3, 6, 7]
    assert not processes.is_writer()
    with pytest.raises(ValueError, match="does not split over 2 processes"):
        processes.local_rows(8, 3)
    with pytest.raises(ValueError, match="last batch of 2.*x\\[:8\\]"):
        processes.local_rows(10, 4)


def test_processes_that_disagree_are_refused(second_of_two, monkeypatch):
    multihost_utils = pytest.importorskip("jax.experimental.multihost_utils")
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda value: np.array([[3], [5]]))
    with pytest.raises(RuntimeError, match="disagree on the epoch to resume from: \\[3, 5\\]"):
        processes.require_same(5, "the epoch to resume from")
    monkeypatch.setattr(multihost_utils, "process_allgather", lambda value: np.array([[5], [5]]))
    processes.require_same(5, "the epoch to resume from")


def test_fit_without_a_global_distribution_is_refused(second_of_two, monkeypatch):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)], name="net")
    monkeypatch.setattr(keras.distribution, "distribution", lambda: None)
    with pytest.raises(RuntimeError, match="'net' trains in 2 JAX processes without a global"):
        processes.check_fit(model)
    monkeypatch.setattr(keras.distribution, "distribution", lambda: object())
    processes.check_fit(model)


def test_a_block_of_one_process_lays_out_no_array_over_all(second_of_two):
    sentinel = object()  # stands for the run's DataParallel
    keras.distribution.set_distribution(sentinel)
    try:
        with processes.local_only():
            assert keras.distribution.distribution() is None
        assert keras.distribution.distribution() is sentinel
        with pytest.raises(KeyError):
            with processes.local_only():
                raise KeyError("restored on the way out")
        assert keras.distribution.distribution() is sentinel
    finally:
        keras.distribution.set_distribution(None)


def test_dynamic_sparse_training_checks_the_processes_too(second_of_two, monkeypatch):
    import keras_lottery as kl

    model = kl.wrap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="fc")],
                                     name="net"))
    model.compile("sgd", "mse")
    monkeypatch.setattr(keras.distribution, "distribution", lambda: None)
    with pytest.raises(RuntimeError, match="'net' trains in 2 JAX processes"):
        model.fit(np.ones((8, 4)), np.ones((8, 8)), epochs=1, verbose=0,
                  callbacks=[kl.DynamicSparseTraining("set", density=0.5, verbose=0)])
