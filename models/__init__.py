"""Everything Keras (and the pixel work of albumentations and OpenCV) above the numpy ground floor.

- ``classifier``: load a user's ``.keras`` / ``.h5`` / SavedModel safely with its
  preprocessing spec (:func:`~hardcase.models.classifier.load_classifier`) and run it:
  :class:`~hardcase.models.classifier.KerasClassifier`, the Keras implementation of the
  :class:`hardcase.miner.protocols.Classifier` protocol;
- ``saliency``: where the model looks (Grad-CAM, gradient x input);
- ``transforms``: the geometric transforms of the review sliders, the search and retraining,
  applied to pixels (the ``Transform`` value itself lives in :mod:`hardcase.miner.transform`);
- ``transform_search``: the batched search for the smallest convincing geometric fix of a
  misclassified image (the evidence of the ``augment`` cause);
- ``training``: the demo CNN, training on uint8 images with augmentation, saving with the spec;
- ``retrain``: from reviewers' decisions to a typed training plan, and retraining with it;
- ``faults``: known-cause fault injection for benchmarks and tests;
- ``demo``: the embedded MNIST demo (data, model, disturbed pool).

The preprocessing spec (:class:`hardcase.miner.spec.PreprocessingSpec`) and the uint8
conversion (:func:`hardcase.miner.spec.as_uint8`) are pure numpy and live in ``miner``.
Images are uint8 arrays (N, H, W, C) throughout.
"""

import os

# quiet TensorFlow's C++ start-up logs before anything imports it
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
