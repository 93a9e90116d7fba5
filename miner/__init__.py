"""The ground floor: numpy, scipy and scikit-learn numerics, no TensorFlow, Gradio or SQLAlchemy.

- ``vocabulary``: the words every layer shares (causes, decisions, roles, score fields, metrics);
- ``sources``: data sets in every supported format, read in batches, labels mapped onto a model's classes;
- ``spec``: the preprocessing spec (input size, channels, scaling, class names) and the uint8 conversion;
- ``protocols``: what the workflows need of a classifier;
- ``transform``: the geometric transform as a value (the sliders, the search, retraining);
- ``scores``: per-sample scores from ``pred_probs``;
- ``select``: hard and diverse candidates per class;
- ``causes``: cause suggestion (typicality, neighbours, imbalance, the rules).

Functions take ``labels`` of shape (N,) (``-1`` = unknown), ``pred_probs`` of shape (N, K) and
embeddings of shape (N, D) as arrays and return arrays; options are keyword-only. Scores named
``*_score`` lie in [0, 1], lower = harder. Public functions validate their inputs once
(``_validation``) and raise ``TypeError`` / ``ValueError`` naming the value.
"""
