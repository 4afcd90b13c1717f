"""The one door to Keras internals and to each backend: the layer tree, compiled functions, gradients, optimizer state, Keras' known limits."""
