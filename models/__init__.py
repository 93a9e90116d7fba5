"""Everything Keras: safe model loading, the preprocessing spec, the demo CNN, training."""
