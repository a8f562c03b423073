"""Wiring only: the ``leadscore`` command line (:mod:`pipelines.cli`) and the steps that
chain core, training and serving functions (:mod:`pipelines.steps`). No business logic
lives here; a command parses, calls one typed function and prints its result.
"""
