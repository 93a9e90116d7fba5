"""Pure-numpy scoring, selection, cause suggestion and monitors.

No TensorFlow, Gradio or SQLAlchemy imports here: every function takes numpy
arrays (``labels`` of shape (N,), ``pred_probs`` of shape (N, K), embeddings of
shape (N, D)) and returns numpy arrays. Scores named ``*_score`` lie in [0, 1],
lower = harder.
"""
