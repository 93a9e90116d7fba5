"""Workflows: what hardcase does, composed from the miner, models and store.

- ``mining``: score a data set with a model and store scores, embeddings and candidates;
- ``suggest``: cause suggestion for a run's candidates (transform search, neighbours, imbalance);
- ``retrain``: turn the decisions into a training plan, retrain and report;
- ``demo``: the demo model, pool and run;
- ``review``: the review service the app's handlers call (candidates, live predictions, decisions);
- ``gallery``, ``insights``, ``exports``, ``probe``: the gallery's entries, triage figures,
  fix lists and image folders, and the Try tab's model probing;
- ``images``: the PNG codec for stored images; ``classifiers``: loaded models, cached per model
  version; ``accounts``: the users file and password hashing.

Nothing here imports Gradio.
"""
