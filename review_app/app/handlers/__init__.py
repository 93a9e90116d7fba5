"""Gradio handlers, one module per tab: widget values in, a service call, widget values out."""
