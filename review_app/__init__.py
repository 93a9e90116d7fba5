"""The hardcase application: CLI, Gradio review app and the workflows composing the libraries."""
