"""The review app's tabs, one module each: components and event wiring (every event has an ``api_name``)."""
