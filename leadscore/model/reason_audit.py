"""How well a list's reasons read to a rep: the figures issue 13 measured them by.

An audit reads the reasons as they are shown (text, tooltip, sign of the push), not as
they were chosen, so it measures the list a rep sees whatever code produced it: the
``positive_reasons`` and ``negative_reasons`` of :class:`~leadscore.model.explain.Explainer`
results or of a ranked list. It counts

* reasons whose tooltip contradicts them: a "+" whose tooltip says deals like this were
  won less often than overall, a "-" whose tooltip says more often (the percentages as
  the tooltip prints them);
* deals showing a track-record reason (the owner's, or any), which a rep cannot act on;
* deals showing one text twice, and deals showing one text or feature both as + and -;
* the groups (:data:`leadscore.features.catalog.ReasonGroup`) of the first reasons shown
  each way, to see whether what a rep can act on comes first;
* weak reasons (a push under :data:`WEAK` log-odds, about one percentage point), which
  a rule choosing by group rather than strength would let take a stronger one's place.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadscore.features.catalog import Feature

#: The rates a tooltip states (:attr:`leadscore.model.reasons.Fact.tooltip`).
TOOLTIP_RATES = re.compile(r"were won (\d+)% of the time, against (\d+)% overall")
#: How many reasons each way the group mix looks at: the ranked list shows three.
TOP = 3
#: A push under this (log-odds) moves a 30% deal by about one percentage point.
WEAK = 0.05


def tooltip_direction(tooltip: str | None) -> int:
    """+1 when a tooltip says such deals were won more often than overall, -1 less often,
    0 as often or when it states no rate."""
    match = TOOLTIP_RATES.search(tooltip or "")
    if match is None:
        return 0
    rate, overall = int(match[1]), int(match[2])
    return (rate > overall) - (rate < overall)


@dataclass
class ReasonAudit:
    deals: int = 0
    reasons: int = 0
    #: Shown reasons whose tooltip says the other way.
    contradicting: int = 0
    #: Deals showing a reason on the owner's track record (view ``owner_history``).
    deals_with_owner_record: int = 0
    #: Deals showing any ``track record`` reason (the owner's or the account's).
    deals_with_track_record: int = 0
    #: Deals showing the same text twice (either way).
    deals_with_duplicate: int = 0
    #: Deals showing one text or one feature both as + and -.
    deals_both_ways: int = 0
    #: Shown reasons pushing by less than :data:`WEAK`.
    weak: int = 0
    #: Groups of the first :data:`TOP` reasons, by side ("+", "-").
    top_groups: dict[str, Counter[str]] = field(
        default_factory=lambda: {"+": Counter(), "-": Counter()}
    )

    def shares(self) -> dict[str, Any]:
        """The counts as shares (of reasons, of deals, of the top reasons each way)."""

        def share(n: int, of: int) -> float:
            return round(n / of, 4) if of else 0.0

        return {
            "deals": self.deals,
            "reasons": self.reasons,
            "contradicting_reasons": share(self.contradicting, self.reasons),
            "deals_with_owner_record": share(self.deals_with_owner_record, self.deals),
            "deals_with_track_record": share(self.deals_with_track_record, self.deals),
            "deals_with_duplicate": share(self.deals_with_duplicate, self.deals),
            "deals_both_ways": share(self.deals_both_ways, self.deals),
            "weak_reasons": share(self.weak, self.reasons),
            "top_groups": {
                side: {g: share(n, sum(c.values())) for g, n in c.most_common()}
                for side, c in self.top_groups.items()
            },
        }


def audit_reasons(
    explained: Iterable[tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]],
    features: Mapping[str, Feature],
) -> ReasonAudit:
    """Audit (positive, negative) reason lists, one pair per deal; ``features`` names
    every feature a reason may speak of (the model's catalog)."""
    audit = ReasonAudit()
    for positive, negative in explained:
        audit.deals += 1
        shown = [*positive, *negative]
        audit.reasons += len(shown)
        audit.contradicting += sum(
            (r["contribution"] > 0 and tooltip_direction(r["tooltip"]) < 0)
            or (r["contribution"] < 0 and tooltip_direction(r["tooltip"]) > 0)
            for r in shown
        )
        audit.weak += sum(abs(r["contribution"]) < WEAK for r in shown)
        catalog = [features[r["feature"]] for r in shown]
        audit.deals_with_owner_record += any(f.view == "owner_history" for f in catalog)
        audit.deals_with_track_record += any(f.reason_group == "track record" for f in catalog)
        texts = [r["text"] for r in shown]
        audit.deals_with_duplicate += len(set(texts)) < len(texts)
        up = {r["text"] for r in positive} | {r["feature"] for r in positive}
        down = {r["text"] for r in negative} | {r["feature"] for r in negative}
        audit.deals_both_ways += bool(up & down)
        for side, reasons in (("+", positive), ("-", negative)):
            audit.top_groups[side].update(
                features[r["feature"]].reason_group for r in reasons[:TOP]
            )
    return audit
