"""Insights sales managers run the team by: funnel, stage times, exits, rep numbers, trends,
and A/B comparisons of sales strategies.

Pure functions of the stored CRM tables, no I/O: build the facts once
(:func:`~leadscore.insights.facts.deal_facts`), then ask for any ``[start, end)`` window
in UTC and any cut (``owner_id``, ``channel``, ``industry``, ``size_band``, or any text
column of deals or accounts). Every answer is a frame with the deals behind each value,
small groups flagged, and a reason wherever a value cannot be computed;
:func:`~leadscore.insights.facts.to_records` makes it JSON.

:func:`~leadscore.insights.compare.compare_groups` compares the groups of one cut (a
playbook, a campaign, a team) against a baseline on win rate, cycle length and stage
conversion, with differences, 95% intervals, effect sizes and Holm-corrected p-values,
says "not enough deals yet" below ``min_deals``, and, given each deal's win probability
at creation (:mod:`leadscore.priority.at_creation`, from the champion model), warns when
the groups were handed leads of different quality.

The pipeline forecast (:mod:`~leadscore.insights.forecast`) is the one insight that looks
ahead: the open deals' probability x amount spread over their likely close months, with
a backtest that rebuilds it at past month starts from what was known then and measures
its error against what was won. Its probabilities are a parameter, so it stays free of
the registry.

Two insights answer "where?" rather than "how much?": each rep's strengths and
weaknesses against the rest of the team by stage and deal type, flagged only beyond a
95% interval (:mod:`~leadscore.insights.strengths`), and each channel's similarity to
the won customers' profile (:mod:`~leadscore.insights.channels`). Both return plain
dataclasses with English and Chinese labels, for the command line and the page alike.
"""

from leadscore.insights.channels import ChannelQuality, channel_quality
from leadscore.insights.compare import (
    COMPARE_METRICS,
    NOT_ENOUGH,
    Comparison,
    compare_groups,
    compared_deals,
)
from leadscore.insights.facts import (
    ALL,
    MIN_DEALS,
    SIZE_BANDS,
    UNKNOWN,
    CutUnavailable,
    Facts,
    deal_facts,
    period_edges,
    to_records,
)
from leadscore.insights.funnel import FUNNEL_METRICS, funnel_metrics, lost_exits, stage_durations
from leadscore.insights.reps import REP_NUMBERS, rep_numbers
from leadscore.insights.strengths import Strength, rep_strengths
from leadscore.insights.trends import funnel_trends, with_changes

__all__ = [
    "ALL",
    "COMPARE_METRICS",
    "FUNNEL_METRICS",
    "MIN_DEALS",
    "NOT_ENOUGH",
    "REP_NUMBERS",
    "SIZE_BANDS",
    "UNKNOWN",
    "ChannelQuality",
    "Comparison",
    "CutUnavailable",
    "Facts",
    "Strength",
    "channel_quality",
    "compare_groups",
    "compared_deals",
    "deal_facts",
    "funnel_metrics",
    "funnel_trends",
    "lost_exits",
    "period_edges",
    "rep_numbers",
    "rep_strengths",
    "stage_durations",
    "to_records",
    "with_changes",
]
