"""Packaging for keras-lottery."""

import setuptools

EXTRAS = {
    "tfmot": ["tensorflow-model-optimization>=0.8", "tf-keras"],
    "datasets": ["tensorflow-datasets"],
    "examples": ["scikit-learn", "matplotlib", "tensorboard"],
    "export": ["ai-edge-litert"],
    # Models users prune in the tests (KerasHub backbones built from config).
    "models": ["keras-hub"],
    # Other Keras backends for the core (CPU builds; torch 2.13.0 is the CPU
    # wheel these machines provide).
    "jax": ["jax"],
    "torch": ["torch==2.13.0"],
}
EXTRAS["test"] = sorted(
    {
        "pytest",
        "pytest-xdist",
        "hypothesis",
        *EXTRAS["tfmot"],
        *EXTRAS["datasets"],
        *EXTRAS["examples"],
        *EXTRAS["export"],
        *EXTRAS["models"],
        *EXTRAS["jax"],
        *EXTRAS["torch"],
    }
)

setuptools.setup(
    name="keras-lottery",
    version="0.1.0",
    description="The Lottery Ticket Hypothesis for Keras 3: IMP wrappers, "
    "callback, controls and ticket export.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["keras_lottery", "keras_lottery.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.5",
        "numpy",
        "absl-py",
    ],
    extras_require=EXTRAS,
    license="Apache-2.0",
)
