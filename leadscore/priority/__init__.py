"""The managers' priority list: which deals to work, why, and what to do next.

* :mod:`~leadscore.priority.rank`: score open, dormant and lost deals; rank; history;
* :mod:`~leadscore.priority.health`: risk flags and next steps from configurable rules;
* :mod:`~leadscore.priority.report`: the terminal table and the HTML page with charts.
"""
