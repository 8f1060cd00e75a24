"""Built-in flows: one module each, declared with :mod:`jobs.flows.model`."""
