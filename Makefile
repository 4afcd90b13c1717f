# The two set-up commands of README.md: `make demo` and `make test`.
# Each creates .venv on first use and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The demo needs TensorFlow and the examples' extras only; the tests add
# JAX, PyTorch, KerasHub, tfmot and tensorflow-datasets on top.
DEMO_STAMP := $(VENV)/.installed-demo
STAMP := $(VENV)/.installed

.PHONY: demo test bazel-test clean

# tools/pip_install.py installs through uv with pip's own configuration (3x
# faster on these wheels), and falls back to pip (KERAS_LOTTERY_INSTALLER=pip
# forces pip).
INSTALL := $(PY) tools/pip_install.py $(PY)

$(DEMO_STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(INSTALL) -e ".[examples,export]"
	touch $(DEMO_STAMP)

$(STAMP): setup.py $(DEMO_STAMP)
	$(INSTALL) -e ".[test]"
	touch $(STAMP)

# LeNet-300-100 on the embedded digits: ticket + both controls, 2 trials, 15 rounds
# (rounds 0-14, 4.8% of the weights remaining), table and plots in runs/demo.
demo: $(DEMO_STAMP)
	$(PY) -m examples.lenet --rounds=15 --iterations=300 --eval_every=30 --trials=2 --output_dir=runs/demo

# `make test`: every module on TensorFlow, then on JAX and PyTorch (CPU) the
# modules whose code touches the backend: variables, optimizer state, train
# steps, gradients, compiled functions. The pure-NumPy modules, structure-only
# analysis (compaction, XNNPACK's path, round plans, N:M checks, reports) and
# the TensorFlow-only ones (export, TFLite, tf.distribute, tfmot) run once.
# Two pytest workers (pytest-xdist) share the two cores.
CORE_TESTS := tests/core/test_wrapper.py tests/core/test_wrapping.py tests/core/test_weight_state.py \
	tests/core/test_mask_constraint.py tests/backend/test_keras_internals.py \
	tests/imp/test_callback.py tests/test_imp_callbacks.py tests/test_any_model.py \
	tests/core/test_rewinding.py tests/backend/test_optimizer_state.py \
	tests/files/test_checkpoint.py tests/files/test_ticket.py tests/test_resume.py \
	tests/test_docstrings.py tests/backend/test_gradients.py \
	tests/methods/test_init_pruning.py tests/methods/test_early_bird.py tests/methods/test_instability.py \
	tests/methods/test_one_shot.py tests/methods/test_dynamic_sparse.py tests/backend/test_compiled.py \
	tests/methods/test_scorers.py tests/methods/test_loss_gradients.py tests/methods/test_layer_inputs.py \
	tests/imp/test_run.py tests/imp/test_settings.py tests/methods/test_synflow.py \
	tests/test_entry_points.py tests/backend/test_processes.py
PYTEST := $(PY) -m pytest -q -n 2 --dist worksteal

test: $(STAMP)
	$(PYTEST) tests
	KERAS_BACKEND=jax $(PYTEST) $(CORE_TESTS)
	KERAS_BACKEND=torch $(PYTEST) $(CORE_TESTS)

# Bazel users: Debian's offline bazel-bootstrap builds //... (every library,
# binary and py_test) and runs the py_tests tagged "fast" (BUILD, WORKSPACE,
# .bazelrc, third_party/bazel/). `bazel test //...` runs them all.
BAZEL_PACKAGES := bazel-bootstrap bazel-platforms bazel-rules-java

bazel-test: $(STAMP)
	@command -v bazel >/dev/null && [ -d /usr/share/bazel/rules/java ] || \
	  { apt-get update -qq && apt-get install -y -qq $(BAZEL_PACKAGES); }
	tools/write_bazelrc_local.sh
	bazel test --test_tag_filters=fast //...

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .bazelrc.local
	-bazel clean --expunge 2>/dev/null
