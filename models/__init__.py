"""Everything Keras: safe model loading, the preprocessing spec, the demo CNN, training."""

import os

# quiet TensorFlow's C++ start-up logs before anything imports it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
