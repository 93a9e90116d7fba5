"""One module per tab of the review app; each exposes ``build(handlers, ...)``."""
