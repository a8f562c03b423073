"""Parse the values of a CRM export column by column, in Arrow, never row by row.

Every parser takes a column of text exactly as the source wrote it and returns the
parsed column plus a mask of the values it could not parse, so the caller can reject
those rows naming the value and the rule. Nothing here guesses silently: a word that no
value map knows, a date that is neither day-first nor month-first, a number with two
decimal marks, each is a failure the report shows.

Conventions shared by all parsers:

* text is trimmed; an empty cell, or one of the mapping's null words (Salesforce's
  ``000000000000000AAA`` empty lookup), is missing, never a failure;
* words are compared case- and whitespace-insensitively (``" Closed  WON "`` is
  ``closed won``), in any script (``赢单``);
* dates without a zone are UTC (:mod:`leadscore.timeutil`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DateOrder = Literal["day_first", "month_first"]

#: Default value maps, used unless a mapping turns them off (``defaults: false``). Keys
#: are the contract's values; words are matched after :func:`normalise_words`.
DEFAULT_VALUE_MAPS: dict[str, dict[str, tuple[str, ...]]] = {
    "status": {
        "won": (
            "won",
            "closed won",
            "closed-won",
            "closedwon",
            "win",
            "赢单",
            "成交",
            "已成交",
            "赢",
        ),
        "lost": (
            "lost",
            "closed lost",
            "closed-lost",
            "closedlost",
            "loss",
            "输单",
            "丢单",
            "已丢单",
            "输",
        ),
        "open": (
            "open",
            "new",
            "in progress",
            "working",
            "pending",
            "prospecting",
            "qualification",
            "needs analysis",
            "value proposition",
            "id. decision makers",
            "perception analysis",
            "proposal/price quote",
            "negotiation/review",
            "discovery",
            "proposal/quote",
            "negotiation",
            "proposal",
            "appointment scheduled",
            "appointmentscheduled",
            "qualified to buy",
            "qualifiedtobuy",
            "presentation scheduled",
            "presentationscheduled",
            "decision maker bought-in",
            "decisionmakerboughtin",
            "contract sent",
            "contractsent",
            "进行中",
            "跟进中",
            "线索",
            "初步接洽",
            "需求确认",
            "方案",
            "报价",
            "谈判",
            "商务谈判",
            "合同审批",
        ),
    },  # fmt: skip
    "stage": {
        "lead": (
            "lead",
            "new",
            "prospecting",
            "prospect",
            "appointment scheduled",
            "appointmentscheduled",
            "线索",
            "初步接洽",
        ),
        "qualified": (
            "qualified",
            "qualification",
            "discovery",
            "needs analysis",
            "qualified to buy",
            "qualifiedtobuy",
            "需求确认",
            "需求分析",
        ),
        "solution": (
            "solution",
            "value proposition",
            "id. decision makers",
            "perception analysis",
            "presentation scheduled",
            "presentationscheduled",
            "decision maker bought-in",
            "decisionmakerboughtin",
            "demo",
            "方案",
            "方案制定",
        ),
        "committed": (
            "committed",
            "proposal/price quote",
            "proposal/quote",
            "proposal",
            "negotiation/review",
            "negotiation",
            "contract sent",
            "contractsent",
            "报价",
            "谈判",
            "商务谈判",
            "合同审批",
        ),
        "closed": (
            "closed",
            "closed won",
            "closed lost",
            "closedwon",
            "closedlost",
            "won",
            "lost",
            "赢单",
            "输单",
            "成交",
            "丢单",
        ),
    },  # fmt: skip
    "role": {
        "economic_buyer": ("economic buyer", "economic decision maker", "decision maker", "决策人"),
        "champion": ("champion", "executive sponsor", "内部支持者"),
        "influencer": ("influencer", "technical buyer", "evaluator", "影响者"),
        "user": ("user", "business user", "end user", "使用者"),
        "other": ("other", "其他"),
    },
    "type": {
        "call": ("call", "phone", "phone call", "电话"),
        "email": ("email", "e-mail", "mail", "邮件"),
        "meeting": ("meeting", "会议"),
        "visit": ("visit", "拜访"),
        "demo": ("demo", "演示"),
        "quote": ("quote", "报价"),
    },
    "direction": {
        "inbound": ("inbound", "incoming", "呼入"),
        "outbound": ("outbound", "outgoing", "呼出"),
    },
}

#: Words of a boolean column (after :func:`normalise_words`).
TRUE_WORDS: tuple[str, ...] = ("true", "1", "yes", "y", "t", "是", "对", "1.0")
FALSE_WORDS: tuple[str, ...] = ("false", "0", "no", "n", "f", "否", "不是", "0.0")

#: Currency symbols and codes stripped from numbers (reported with counts).
CURRENCY_SYMBOLS: tuple[str, ...] = (
    "US$", "CN¥", "RMB", "USD", "EUR", "GBP", "CNY", "JPY", "CHF", "元",
    "$", "€", "£", "¥", "￥", "₹", "₩",
)  # fmt: skip
_CURRENCY = re.compile("|".join(re.escape(s) for s in CURRENCY_SYMBOLS))


def normalise_words(text: pa.Array) -> pa.Array:
    """Trimmed, lower-cased text with runs of white space made one space."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    return pc.replace_substring_regex(text, r"\s+", " ")


def blank(text: pa.Array, null_words: Iterable[str] = ()) -> pa.Array:
    """``text`` trimmed, with empty cells and ``null_words`` made null (missing)."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if text.type != pa.string():
        text = pc.cast(text, pa.string())
    # Trim only when some value needs it: a copy of a million values costs time and memory.
    if pc.any(pc.match_substring_regex(text, r"^\s|\s$")).as_py():
        text = pc.utf8_trim_whitespace(text)
    empty = pc.equal(text, "")
    words = [w for w in null_words if w]
    if words:
        empty = pc.or_(empty, pc.is_in(text, pa.array(words, pa.string())))
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def _mask(array: pa.Array) -> np.ndarray:
    """A boolean Arrow array as a numpy mask, null meaning False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


@dataclass(frozen=True)
class Mapped:
    """A column put through a value map."""

    values: pa.Array
    #: Rows whose (present) word matched no entry and no ``otherwise``.
    failed: np.ndarray
    #: ``word -> (target, count)`` for every distinct word that was mapped.
    applied: dict[str, tuple[str, int]]
    #: ``word -> count`` of present words that matched nothing (the ``otherwise`` words
    #: when one is set: they are mapped, but the report still shows them).
    unmatched: dict[str, int]


def value_counts(text: pa.Array) -> dict[str, int]:
    """Counts of the present values of a column, most frequent first."""
    counts = pc.value_counts(text.drop_null() if hasattr(text, "drop_null") else text)
    pairs = zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    return dict(sorted(((v, int(n)) for v, n in pairs if v is not None), key=lambda p: -p[1]))


def map_values(
    text: pa.Array, words: Mapping[str, Iterable[str]], otherwise: str | None = None
) -> Mapped:
    """Map the words of ``text`` to targets: ``words`` is ``{target: [word, ...]}``.

    Matching is on :func:`normalise_words`, so the map's words may be written in any
    case. A present word in no list takes ``otherwise`` when given (an empty string
    means "leave it missing"), else its row fails. Missing cells stay missing.
    """
    keys: list[str] = []
    targets: list[str] = []
    for target, listed in words.items():
        for word in listed:
            key = " ".join(str(word).lower().split())
            if key in keys:
                continue  # the first target listed for a word wins (a mapping's own first)
            keys.append(key)
            targets.append(target)
    # Work on the distinct words only: a status column has a handful of them.
    encoded = pc.dictionary_encode(
        text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text
    )
    distinct, indices = encoded.dictionary, encoded.indices
    at = pc.index_in(normalise_words(distinct), value_set=pa.array(keys, pa.string()))
    hit_word = _mask(pc.is_valid(at))
    counts = np.bincount(
        np.asarray(pc.fill_null(indices, -1).to_numpy(zero_copy_only=False))[
            _mask(pc.is_valid(indices))
        ],
        minlength=len(distinct),
    )
    words_list = distinct.to_pylist()
    at_list = at.to_pylist()
    applied = {
        w: (targets[a], int(n))
        for w, a, n in zip(words_list, at_list, counts, strict=True)
        if a is not None and n
    }
    unmatched = {
        w: int(n) for w, a, n in zip(words_list, at_list, counts, strict=True) if a is None and n
    }
    mapped_distinct = pc.take(pa.array(targets, pa.string()), at)
    if otherwise is not None:
        mapped_distinct = pc.if_else(
            pa.array(hit_word), mapped_distinct, pa.scalar(otherwise or None, pa.string())
        )
    mapped = pc.take(mapped_distinct, indices)
    miss_word = pa.array(~hit_word if otherwise is None else np.zeros(len(distinct), dtype=bool))
    failed = _mask(pc.take(miss_word, indices))
    applied = dict(sorted(applied.items(), key=lambda kv: -kv[1][1]))
    unmatched = dict(sorted(unmatched.items(), key=lambda kv: -kv[1]))
    return Mapped(mapped, failed, applied, unmatched)


def parse_booleans(text: pa.Array, empty_is_false: bool = False) -> tuple[pa.Array, np.ndarray]:
    """TRUE/1/true/yes/是 and FALSE/0/false/no/否 as booleans; other words fail.

    ``empty_is_false``: the source writes false as an empty cell (Salesforce API dumps
    write ``1`` or nothing), so an empty cell is False, not unknown.
    """
    norm = normalise_words(text)
    norm = pc.if_else(pc.equal(norm, ""), pa.scalar(None, pa.string()), norm)
    yes = _mask(pc.is_in(norm, pa.array(TRUE_WORDS)))
    no = _mask(pc.is_in(norm, pa.array(FALSE_WORDS)))
    present = _mask(pc.is_valid(norm))
    values = pa.array(np.where(yes, True, False), pa.bool_(), mask=~(yes | no))
    if empty_is_false:
        values = pc.if_else(pa.array(present), values, False)
    return values, present & ~(yes | no)


@dataclass(frozen=True)
class Numbers:
    values: pa.Array  # float64
    failed: np.ndarray
    #: Currency symbols or codes stripped, with counts.
    symbols: dict[str, int]


def parse_numbers(text: pa.Array, decimal: str = ".", scale: float = 1.0) -> Numbers:
    """Numbers such as ``1,234.50``, ``¥1,234``, ``€ 99``, ``-1.39E8``, ``(1,234)``.

    ``decimal`` is the decimal mark: with ``","`` (``1.234,50``) dots and spaces group
    thousands, with ``"."`` commas, spaces and apostrophes do. Currency symbols and codes
    are stripped and counted; a value in parentheses is negative (accounting style).
    ``scale`` multiplies every value (e.g. 60 for minutes into seconds).
    """
    norm = pc.utf8_trim_whitespace(text)
    present = _mask(pc.is_valid(norm))
    symbols: dict[str, int] = {}
    has_symbol = _mask(pc.match_substring_regex(norm, _CURRENCY.pattern))
    if has_symbol.any():
        found = pc.extract_regex(
            pc.filter(norm, pa.array(has_symbol)), f"(?P<symbol>{_CURRENCY.pattern})"
        )
        symbols = value_counts(found.field("symbol"))
        norm = pc.replace_substring_regex(norm, _CURRENCY.pattern, "")
    negative = pc.match_substring_regex(norm, r"^\s*\(.*\)\s*$")
    norm = pc.replace_substring_regex(norm, r"^\s*\((.*)\)\s*$", r"\1")
    group, point = (r"[.\s\x{00a0}']", ",") if decimal == "," else (r"[,\s\x{00a0}']", r"\.")
    # Thousands separators only where they group by three: "1,2,3" is not a number.
    shaped = _mask(
        pc.match_substring_regex(
            norm,
            rf"^\s*[+-]?(\d{{1,3}}({group}\d{{3}})+|\d+)({point}\d*)?([eE][+-]?\d+)?\s*$"
            rf"|^\s*[+-]?{point}\d+\s*$",
        )
    )
    norm = pc.replace_substring_regex(norm, group, "")
    if decimal == ",":
        norm = pc.replace_substring(norm, ",", ".")
    good = present & shaped
    safe = pc.if_else(pa.array(good), norm, pa.scalar(None, pa.string()))
    values = pc.cast(safe, pa.float64())
    values = pc.if_else(negative, pc.negate(values), values)
    if scale != 1.0:
        values = pc.multiply(values, scale)
    return Numbers(values, present & ~shaped, symbols)


# --------------------------------------------------------------------------- dates

_SLASHED = (
    r"^(?P<a>\d{1,2})[/.\-](?P<b>\d{1,2})[/.\-](?P<y>\d{4})"
    r"(?:[ T](?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.\d+)?)?)?$"
)


@dataclass(frozen=True)
class DateOrderFound:
    """What the values of a column say about the order of day and month.

    Findings of several batches of one column add up (``+``), so a file read in batches
    is judged on all its values, as when read whole.
    """

    #: Values written as dd/mm/yyyy or mm/dd/yyyy at all.
    slashed: int = 0
    #: Values that read only day-first (first number above 12), only month-first.
    day_first: int = 0
    month_first: int = 0
    day_example: str = ""
    month_example: str = ""

    def __add__(self, other: DateOrderFound) -> DateOrderFound:
        return DateOrderFound(
            self.slashed + other.slashed,
            self.day_first + other.day_first,
            self.month_first + other.month_first,
            self.day_example or other.day_example,
            self.month_example or other.month_example,
        )

    @property
    def conflicting(self) -> bool:
        """Both kinds of proof found: the column mixes the two orders."""
        return bool(self.day_first and self.month_first)

    @property
    def order(self) -> DateOrder | None:
        """day_first, month_first, or None when every value reads both ways (or none is
        written with slashes, or the column mixes both)."""
        if self.conflicting:
            return None
        if self.day_first:
            return "day_first"
        return "month_first" if self.month_first else None

    @property
    def evidence(self) -> str:
        """How many values read only one way, with one of them, for the report."""
        day = f"{self.day_first} value(s) such as {self.day_example!r}" if self.day_first else ""
        month = (
            f"{self.month_first} value(s) such as {self.month_example!r}"
            if self.month_first
            else ""
        )
        return " and ".join(x for x in (day, month) if x)


def _slashed_parts(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """The named groups of :data:`_SLASHED` and the mask of values that match it."""
    text = pc.utf8_trim_whitespace(text)
    # A cheap anchored test first: most columns hold no slashed date at all.
    if not pc.any(pc.match_substring_regex(text, r"^\d{1,2}[/.\-]\d")).as_py():
        return pa.nulls(len(text), pa.struct([])), np.zeros(len(text), dtype=bool)
    parts = pc.extract_regex(text, _SLASHED)
    return parts, _mask(pc.is_valid(parts))


def detect_date_order(text: pa.Array) -> DateOrderFound:
    """Whether ``12/03/2022``-style values are day-first or month-first.

    Decided only by values that read one way: a first number above 12 is a day
    (day-first), a second number above 12 is a day (month-first). When no value decides,
    the order stays unknown and the caller must ask the mapping to declare it.
    """
    parts, valid = _slashed_parts(text)
    if not valid.any():
        return DateOrderFound()
    kept = pa.array(valid)
    firsts = pc.cast(pc.filter(parts.field("a"), kept), pa.int32())
    seconds = pc.cast(pc.filter(parts.field("b"), kept), pa.int32())
    a, b = (
        np.asarray(firsts.to_numpy(zero_copy_only=False)),
        np.asarray(seconds.to_numpy(zero_copy_only=False)),
    )
    # Only a value that is a date one way counts: 31/31/2023 is none, and proves nothing.
    plausible = (a >= 1) & (b >= 1) & (a <= 31) & (b <= 31) & ((a <= 12) | (b <= 12))
    day_first = plausible & (a > 12)
    month_first = plausible & (b > 12)
    values = pc.filter(text, kept)

    def example(proof: np.ndarray) -> str:
        return str(pc.filter(values, pa.array(proof))[0].as_py()) if proof.any() else ""

    return DateOrderFound(
        int(plausible.sum()),
        int(day_first.sum()),
        int(month_first.sum()),
        example(day_first),
        example(month_first),
    )


def _iso_from_slashed(text: pa.Array, order: DateOrder) -> pa.Array:
    """``dd/mm/yyyy[ hh:mm[:ss]]`` (or month-first) rewritten as ISO 8601 text."""
    parts, valid = _slashed_parts(text)
    if not valid.any():
        return pa.nulls(len(text), pa.string())
    day, month = ("a", "b") if order == "day_first" else ("b", "a")

    def two(name: str, default: str = "00") -> pa.Array:
        field = pc.fill_null(parts.field(name), default)
        field = pc.if_else(pc.equal(field, ""), default, field)
        return pc.utf8_lpad(field, width=2, padding="0")

    iso = pc.binary_join_element_wise(
        parts.field("y"), "-", two(month), "-", two(day), " ", two("H"), ":", two("M"), ":",
        two("S"), "",
    )  # fmt: skip
    return pc.if_else(pa.array(valid), iso, pa.scalar(None, pa.string()))


def parse_dates(
    text: pa.Array, order: DateOrder | None = None, fmt: str | None = None
) -> tuple[pa.Array, np.ndarray]:
    """Times as ``timestamp[us, UTC]``; the mask marks present values that are not dates.

    ISO 8601 in any of its spellings (``2023-10-28 20:45:25``, ``2023-10-28T20:45:25.000Z``,
    ``2024-01-22T16:14:25.000+0000``, ``2023-09-06``) is always understood; a naive time
    is UTC. ``dd/mm/yyyy`` and ``mm/dd/yyyy`` (with an optional time) need ``order``;
    ``fmt`` is a strptime format that, when given, is the only one accepted.
    """
    norm = pc.utf8_trim_whitespace(text)
    present = _mask(pc.is_valid(norm))
    if fmt is not None:
        parsed = pc.strptime(norm, format=fmt, unit="us", error_is_null=True)
        zoned = _utc(parsed)
        return zoned, present & ~_mask(pc.is_valid(zoned))
    for target in (pa.timestamp("us"), pa.timestamp("us", tz="UTC")):
        try:  # the common case: one ISO spelling throughout, which Arrow casts at once
            fast = pc.cast(norm, target)
            return _utc(fast) if target.tz is None else pc.cast(
                fast, pa.timestamp("us", tz="UTC")
            ), (np.zeros(len(norm), dtype=bool))
        except pa.ArrowInvalid:
            pass
    if order is not None:
        norm = pc.coalesce(_iso_from_slashed(norm, order), norm)
    # Normalise the ISO spellings Arrow's cast does not take in one go: "T" or " ",
    # fractions, and "Z" / "+0000" / "+00:00" zones.
    zone = pc.extract_regex(norm, r"(?P<zone>(?:Z|[+-]\d{2}:?\d{2}))$")
    has_zone = _mask(pc.is_valid(zone))
    naive_text = pc.replace_substring_regex(norm, r"(?:Z|[+-]\d{2}:?\d{2})$", "")
    naive_text = pc.replace_substring(naive_text, "T", " ")
    shaped = pc.match_substring_regex(
        naive_text, r"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?$"
    )
    naive_text = pc.if_else(shaped, naive_text, pa.scalar(None, pa.string()))
    naive = _safe_cast(naive_text, pa.timestamp("us"))
    if has_zone.any():
        # A null struct's field is not null in Arrow: choose by the mask, not fill_null.
        z = pc.if_else(pa.array(has_zone), zone.field("zone"), "Z")
        z = pc.replace_substring(z, ":", "")
        sign = pc.if_else(pc.starts_with(z, "-"), -1, 1)
        hours = pc.cast(
            pc.if_else(pc.equal(z, "Z"), "0", pc.utf8_slice_codeunits(z, 1, 3)), pa.int64()
        )
        minutes = pc.cast(
            pc.if_else(pc.equal(z, "Z"), "0", pc.utf8_slice_codeunits(z, 3, 5)), pa.int64()
        )
        offset_us = pc.multiply(
            pc.multiply(sign, pc.add(pc.multiply(hours, 60), minutes)), 60_000_000
        )
        as_int = pc.cast(naive, pa.int64())
        shifted = pc.subtract(as_int, pc.if_else(pa.array(has_zone), offset_us, 0))
        naive = pc.cast(shifted, pa.timestamp("us"))
    zoned = _utc(naive)
    return zoned, present & ~_mask(pc.is_valid(zoned))


def _safe_cast(text: pa.Array, target: pa.DataType) -> pa.Array:
    """Cast ISO text, with values that are not real times (``2023-02-30``) made null.

    Arrow's cast fails as a whole on one bad value; pandas then finds which ones, strictly
    (strptime would roll 30 February over into March).
    """
    try:
        return pc.cast(text, target)
    except pa.ArrowInvalid:
        import pandas as pd

        parsed = pd.to_datetime(text.to_pandas(), format="ISO8601", errors="coerce").astype(
            "datetime64[us]"
        )
        return pa.array(parsed, type=target)


def _utc(naive: pa.Array) -> pa.Array:
    """A naive timestamp column read as UTC."""
    return pc.cast(pc.cast(naive, pa.int64()), pa.timestamp("us", tz="UTC"))
