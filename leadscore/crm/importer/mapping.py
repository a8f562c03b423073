"""The declarative mapping from a CRM's own export to the contract, read from YAML.

A mapping says which source files hold which contract table, which source column
feeds which contract column, how words, dates, booleans and numbers are written, how
source tables join, which extra columns are custom attributes and which outcome rules
apply. It is data, not code, so a user adapts it to their CRM without touching the
product, and the presets (``leadscore/crm/presets/<name>.yaml``) are mappings like any
other. The layout, with every key::

    name: my-crm                       # for reports
    export_date: 2024-03-31            # "as of" for outcome rules; default: newest time in the data
    null_values: ["000000000000000AAA"] # words that mean empty, besides an empty cell
    date_order: day_first              # or month_first; default: detected per column
    decimal: "."                       # or ","
    missing_columns: error             # or empty: a mapped column absent from the file is left empty
    ignore: {Campaign: "why it is not imported"}
    sources:                           # optional: named source tables, with joins
      lines:
        files: [OpportunityLineItem]   # file names (any case, no extension) or globs
        optional: true
        join:
          - source: entries
            on: {PricebookEntryId: Id} # this column = that column
            take: {UnitPrice: list_price}
    tables:
      deals:                           # a contract table
        source: Opportunity            # a named source, or file names as above
        columns:
          deal_id: Id                  # a column, or [alternatives, ...] (first found wins)
          status:
            from: StageName
            values: {won: [Signed]}    # added to the English/Chinese defaults
            otherwise: open            # a word in no list is open (reported), else rejected
            check: {won: IsWon, closed: IsClosed}   # report rows where these flags disagree
          closed_at: {from: CloseDate, open_deals: expected_close}
          created_at: {from: CreatedDate, date_order: day_first}
          amount: {from: Amount, decimal: ","}
        reject_when: {IsDeleted: true} # rows where a boolean column has this value
        attributes:
          team: {from: Team, kind: categorical, known: creation, keep: "why it stays"}
        outcome:
          lost_when_not_won_within_days: 90
      activities:                      # a table from several sources, stacked:
        sources:                       # each entry is a source with its own columns
          - source: task               # (and attributes, reject_when) as above
            columns: {activity_id: Id, type: TaskSubtype, occurred_at: ActivityDate}
          - source: event
            columns: {activity_id: Id, type: {from: EventSubtype, otherwise: meeting}}

Every error names the mapping file, the line in it and the key (``tables.deals.columns.status``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
import yaml

from leadscore.crm.attributes import AttributeKind, Known
from leadscore.crm.contract import DEALS, TABLES
from leadscore.crm.importer.values import DEFAULT_VALUE_MAPS, DateOrder

#: Folder of the presets shipped with the product.
PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
Aggregate = Literal["first", "sum", "min", "max", "count"]
_ATTRIBUTE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MappingError(ValueError):
    """The mapping cannot be used; the message names the file, line, key and rule."""


def presets() -> list[str]:
    """Names of the presets shipped with the product."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def mapping_path(name_or_path: str | Path) -> Path:
    """A mapping file: a path, or the name of a preset (``salesforce``, ``hubspot``)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    raise MappingError(
        f"{name_or_path!r} is neither a mapping file nor a preset (presets: {', '.join(presets())})"
    )


@dataclass(frozen=True)
class Join:
    """Columns taken from another source table, matched on key columns."""

    source: str
    #: (column of this table, column of the joined table) pairs that must be equal.
    on: tuple[tuple[str, str], ...]
    #: (column of the joined table, name it takes here) pairs.
    take: tuple[tuple[str, str], ...]
    #: How several matching rows become one; None: the joined side must be unique.
    aggregate: Aggregate | None = None


@dataclass(frozen=True)
class SourceSpec:
    name: str
    #: File names (matched without extension, case, spaces and underscores) or globs.
    files: tuple[str, ...]
    optional: bool = False
    sheet: str | None = None
    joins: tuple[Join, ...] = ()


@dataclass(frozen=True)
class ColumnSpec:
    """How one contract column (or attribute) is read from the source."""

    target: str
    #: Source column names, alternatives in order (header case does not matter).
    sources: tuple[str, ...]
    #: Value map ``{target: [words]}``, merged over the defaults when ``defaults``.
    values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    defaults: bool = True
    #: Value for a word in no list ("" = leave empty); None: such a row is rejected.
    otherwise: str | None = None
    date_order: DateOrder | None = None
    format: str | None = None
    #: Decimal mark; None: the mapping's.
    decimal: str | None = None
    scale: float = 1.0
    #: Take the first item of a list written in one cell, separated by this.
    split: str | None = None
    #: Booleans: an empty cell means false (Salesforce API dumps).
    empty_is_false: bool = False
    #: status only: {"won"|"closed": boolean source column} checked against the status.
    check: tuple[tuple[str, str], ...] = ()
    #: closed_at only: on open deals the column holds the expected close date: ignore it.
    open_deals_expected_close: bool = False


@dataclass(frozen=True)
class AttributeSpec:
    column: ColumnSpec
    kind: AttributeKind
    known: Known
    label: str = ""
    keep: str | None = None


@dataclass(frozen=True)
class PartSpec:
    """One source of a contract table, with its own column mapping."""

    source: str
    columns: tuple[ColumnSpec, ...]
    attributes: tuple[AttributeSpec, ...] = ()
    #: (boolean source column, value that rejects the row).
    reject_when: tuple[tuple[str, bool], ...] = ()

    def column(self, target: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.target == target), None)


@dataclass(frozen=True)
class TableSpec:
    """A contract table: one source, or several (Salesforce Task and Event are both
    activities) whose rows are stacked, each row keeping its own file and line."""

    table: str
    parts: tuple[PartSpec, ...]
    lost_when_not_won_within_days: int | None = None

    def mapped(self) -> set[str]:
        """Contract columns mapped by any part."""
        return {c.target for p in self.parts for c in p.columns}

    def attributes(self) -> tuple[AttributeSpec, ...]:
        """The table's attributes, each once (the first part that declares it)."""
        seen: dict[str, AttributeSpec] = {}
        for p in self.parts:
            for a in p.attributes:
                seen.setdefault(a.column.target, a)
        return tuple(seen.values())


@dataclass(frozen=True)
class Mapping:
    path: Path
    name: str
    sources: dict[str, SourceSpec]
    tables: dict[str, TableSpec]
    export_date: pd.Timestamp | None = None
    null_values: tuple[str, ...] = ()
    date_order: DateOrder | None = None
    decimal: str = "."
    missing_columns: Literal["error", "empty"] = "error"
    ignore: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- YAML with lines


def _plain(node: yaml.Node, where: str, lines: dict[str, int]) -> Any:
    """A composed YAML node as plain Python, recording the line of every key path."""
    lines[where] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys as written: YAML 1.1 would read ``on:`` (a join's key) as True.
            key = (
                str(key_node.value)
                if isinstance(key_node, yaml.ScalarNode)
                else str(yaml.safe_load(yaml.serialize(key_node)))
            )
            path = f"{where}.{key}" if where else key
            lines[path] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, path, lines)
            lines[path] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{where}[{i}]", lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


class _Reader:
    """Checks a parsed mapping key by key; every error names file, line and key."""

    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self.path = path
        self.lines = lines

    def error(self, where: str, rule: str) -> MappingError:
        line = self.lines.get(where)
        at = f" line {line}" if line else ""
        return MappingError(f"{self.path}{at}: {where or 'top level'}: {rule}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict:
        if not isinstance(value, dict):
            raise self.error(where, f"must be a mapping of keys to values, got {value!r}")
        if allowed is not None:
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise self.error(
                    f"{where}.{unknown[0]}" if where else unknown[0],
                    f"unknown key {unknown[0]!r} (allowed here: {', '.join(allowed)})",
                )
        return value

    def text(self, value: Any, where: str) -> str:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            raise self.error(where, f"must be text, got {value!r}")
        return str(value)

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.error(where, "must name at least one column or file")
        return tuple(self.text(v, f"{where}[{i}]") for i, v in enumerate(items))

    def choice(self, value: Any, where: str, allowed: tuple[Any, ...]) -> Any:
        if value not in allowed:
            raise self.error(where, f"{value!r} must be one of: {', '.join(map(str, allowed))}")
        return value


def _join(r: _Reader, raw: Any, where: str) -> Join:
    j = r.mapping(raw, where, ("source", "on", "take", "aggregate"))
    for key in ("source", "on", "take"):
        if key not in j:
            raise r.error(where, f"a join needs {key!r}")
    on = r.mapping(j["on"], f"{where}.on")
    take = r.mapping(j["take"], f"{where}.take")
    if not on or not take:
        raise r.error(where, "'on' and 'take' must each name at least one column")
    aggregate = j.get("aggregate")
    if aggregate is not None:
        r.choice(aggregate, f"{where}.aggregate", get_args(Aggregate))
    return Join(
        source=r.text(j["source"], f"{where}.source"),
        on=tuple((str(k), r.text(v, f"{where}.on.{k}")) for k, v in on.items()),
        take=tuple((str(k), r.text(v, f"{where}.take.{k}")) for k, v in take.items()),
        aggregate=aggregate,
    )


def _source(r: _Reader, name: str, raw: Any, where: str) -> SourceSpec:
    s = r.mapping(raw, where, ("files", "optional", "sheet", "join"))
    if "files" not in s:
        raise r.error(where, "a source needs 'files' (file names or globs)")
    joins = s.get("join") or []
    if not isinstance(joins, list):
        raise r.error(f"{where}.join", "must be a list of joins")
    return SourceSpec(
        name=name,
        files=r.texts(s["files"], f"{where}.files"),
        optional=bool(s.get("optional", False)),
        sheet=None if s.get("sheet") is None else r.text(s["sheet"], f"{where}.sheet"),
        joins=tuple(_join(r, j, f"{where}.join[{i}]") for i, j in enumerate(joins)),
    )


_COLUMN_KEYS = (
    "from", "values", "defaults", "otherwise", "date_order", "format", "decimal", "scale",
    "split", "empty_is_false", "check", "open_deals",
)  # fmt: skip


def _column(
    r: _Reader,
    target: str,
    raw: Any,
    where: str,
    allowed: tuple[str, ...] | None,
    kind: str,
) -> ColumnSpec:
    """One column entry: a source name, a list of alternatives, or a full mapping."""
    if not isinstance(raw, dict):
        return ColumnSpec(target, r.texts(raw, where))
    c = r.mapping(raw, where, _COLUMN_KEYS + (("kind", "known", "label", "keep") if kind else ()))
    if "from" not in c:
        raise r.error(where, "needs 'from': the source column(s)")
    values: dict[str, tuple[str, ...]] = {}
    if c.get("values") is not None:
        if allowed is None and kind != "categorical":
            raise r.error(f"{where}.values", f"{target} is not a list of words: no value map")
        for value, words in r.mapping(c["values"], f"{where}.values").items():
            if allowed is not None:
                r.choice(value, f"{where}.values.{value}", allowed)
            values[str(value)] = r.texts(words, f"{where}.values.{value}")
    otherwise = c.get("otherwise")
    if otherwise is not None:
        otherwise = "" if otherwise in ("", "empty") else r.text(otherwise, f"{where}.otherwise")
        if otherwise and allowed is not None:
            r.choice(otherwise, f"{where}.otherwise", (*allowed, "empty"))
    check: tuple[tuple[str, str], ...] = ()
    if c.get("check") is not None:
        if target != "status":
            raise r.error(f"{where}.check", "only the status can be checked against flags")
        flags = r.mapping(c["check"], f"{where}.check", ("won", "closed"))
        check = tuple((k, r.text(v, f"{where}.check.{k}")) for k, v in flags.items())
    if c.get("open_deals") is not None:
        if target != "closed_at":
            raise r.error(f"{where}.open_deals", "only closed_at has open_deals")
        r.choice(c["open_deals"], f"{where}.open_deals", ("expected_close",))
    decimal = c.get("decimal")
    if decimal is not None:
        r.choice(decimal, f"{where}.decimal", (".", ","))
    scale = c.get("scale", 1.0)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale == 0:
        raise r.error(f"{where}.scale", f"must be a non-zero number, got {scale!r}")
    date_order = c.get("date_order")
    if date_order is not None:
        r.choice(date_order, f"{where}.date_order", get_args(DateOrder))
    return ColumnSpec(
        target=target,
        sources=r.texts(c["from"], f"{where}.from"),
        values=values,
        defaults=bool(c.get("defaults", True)),
        otherwise=otherwise,
        date_order=date_order,
        format=None if c.get("format") is None else r.text(c["format"], f"{where}.format"),
        decimal=decimal,
        scale=float(scale),
        split=None if c.get("split") is None else r.text(c["split"], f"{where}.split"),
        empty_is_false=bool(c.get("empty_is_false", False)),
        check=check,
        open_deals_expected_close=c.get("open_deals") == "expected_close",
    )


_PART_KEYS = ("source", "columns", "attributes", "reject_when")


def _part(r: _Reader, name: str, t: dict, where: str, sources: dict[str, SourceSpec]) -> PartSpec:
    """One source of a table with its columns, attributes and reject rules."""
    contract = TABLES[name]
    if "source" not in t:
        raise r.error(where, "needs 'source': a named source or file name(s)")
    source = r.text(t["source"], f"{where}.source") if not isinstance(t["source"], list) else None
    if source is None or source not in sources:
        files = r.texts(t["source"], f"{where}.source")
        source = f"{name}:{'|'.join(files)}"
        sources[source] = SourceSpec(source, files)
    columns = []
    for target, spec in r.mapping(t.get("columns") or {}, f"{where}.columns").items():
        cw = f"{where}.columns.{target}"
        if target not in contract.column_names:
            raise r.error(
                cw,
                f"{target!r} is not a column of {name} (columns: {', '.join(contract.column_names)})",
            )
        col = contract.column(target)
        columns.append(_column(r, target, spec, cw, col.allowed, ""))
    mapped = {c.target for c in columns}
    generated = len(contract.key) == 1 and contract.key[0].endswith("_id")
    for col in contract.columns:
        if (
            col.required
            and col.name not in mapped
            and not (generated and col.name == contract.key[0])
        ):
            if name == DEALS.name and col.name in ("account_id", "created_at"):
                continue  # optional since partial exports (issue 10): only id and status
            raise r.error(f"{where}.columns", f"{col.name} is required in {name} and is not mapped")
    attributes = []
    for attr, spec in r.mapping(t.get("attributes") or {}, f"{where}.attributes").items():
        aw = f"{where}.attributes.{attr}"
        if name not in ("deals", "accounts"):
            raise r.error(aw, "custom attributes belong to deals or accounts")
        if not _ATTRIBUTE_NAME.match(str(attr)) or attr in contract.column_names:
            raise r.error(aw, f"{attr!r} must be snake_case and not a contract column of {name}")
        a = r.mapping(spec, aw)
        kind = r.choice(a.get("kind"), f"{aw}.kind", get_args(AttributeKind))
        known = r.choice(a.get("known"), f"{aw}.known", get_args(Known))
        keep = a.get("keep")
        attributes.append(
            AttributeSpec(
                column=_column(r, str(attr), a, aw, None, kind),
                kind=kind,
                known=known,
                label="" if a.get("label") is None else r.text(a["label"], f"{aw}.label"),
                keep=None if keep is None else r.text(keep, f"{aw}.keep"),
            )
        )
    reject_when = tuple(
        (str(k), r.choice(v, f"{where}.reject_when.{k}", (True, False)))
        for k, v in r.mapping(t.get("reject_when") or {}, f"{where}.reject_when").items()
    )
    return PartSpec(source, tuple(columns), tuple(attributes), reject_when)


def _table(
    r: _Reader, name: str, raw: Any, where: str, sources: dict[str, SourceSpec]
) -> TableSpec:
    """A table from one source (``source:`` with ``columns:``...) or several
    (``sources:``, a list of such entries)."""
    if name not in TABLES:
        raise r.error(where, f"{name!r} is not a contract table (tables: {', '.join(TABLES)})")
    contract = TABLES[name]
    t = r.mapping(raw, where, (*_PART_KEYS, "sources", "outcome"))
    if "sources" in t:
        if any(k in t for k in _PART_KEYS):
            raise r.error(
                where, "give either 'sources' (a list) or one 'source' with its columns, not both"
            )
        listed = t["sources"]
        if not isinstance(listed, list) or not listed:
            raise r.error(f"{where}.sources", "must be a list of sources, each with its columns")
        parts = tuple(
            _part(r, name, r.mapping(p, f"{where}.sources[{i}]", _PART_KEYS),
                  f"{where}.sources[{i}]", sources)
            for i, p in enumerate(listed)
        )  # fmt: skip
    else:
        parts = (_part(r, name, t, where, sources),)
    key = contract.key
    keyed = {all(p.column(k) is not None for k in key) for p in parts}
    if len(keyed) > 1:
        raise r.error(
            f"{where}.sources",
            f"map {', '.join(key)} in every source of {name} or in none (then each row's id "
            "is its file and line)",
        )
    kinds: dict[str, tuple[str, str]] = {}
    for i, p in enumerate(parts):
        for a in p.attributes:
            seen = kinds.setdefault(a.column.target, (a.kind, a.known))
            if seen != (a.kind, a.known):
                raise r.error(
                    f"{where}.sources[{i}].attributes.{a.column.target}",
                    f"declared as {seen[0]}, known {seen[1]} by an earlier source: one attribute, "
                    "one kind",
                )
    mapped = {c.target for p in parts for c in p.columns}
    outcome = r.mapping(
        t.get("outcome") or {}, f"{where}.outcome", ("lost_when_not_won_within_days",)
    )
    days = outcome.get("lost_when_not_won_within_days")
    if days is not None:
        ow = f"{where}.outcome.lost_when_not_won_within_days"
        if name != DEALS.name:
            raise r.error(ow, "outcome rules apply to deals")
        if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
            raise r.error(ow, f"must be a whole number of days above 0, got {days!r}")
        if "created_at" not in mapped:
            raise r.error(ow, "needs created_at mapped: the days are counted from creation")
    return TableSpec(table=name, parts=parts, lost_when_not_won_within_days=days)


def load_mapping(name_or_path: str | Path) -> Mapping:
    """Read and check a mapping file, or a preset by name; raises :class:`MappingError`."""
    path = mapping_path(name_or_path)
    try:
        node = yaml.compose(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise MappingError(f"cannot read mapping {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise MappingError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    lines: dict[str, int] = {}
    raw = _plain(node, "", lines) if node is not None else None
    r = _Reader(path, lines)
    top = r.mapping(
        raw,
        "",
        (
            "name", "description", "export_date", "null_values", "date_order", "decimal",
            "missing_columns", "ignore", "sources", "tables",
        ),
    )  # fmt: skip
    sources = {
        str(n): _source(r, str(n), s, f"sources.{n}")
        for n, s in r.mapping(top.get("sources") or {}, "sources").items()
    }
    tables_raw = r.mapping(top.get("tables"), "tables")
    for n in tables_raw:
        if n not in TABLES:
            raise r.error(
                f"tables.{n}", f"{n!r} is not a contract table (tables: {', '.join(TABLES)})"
            )
    if DEALS.name not in tables_raw:
        raise r.error("tables", "must map the deals table (the only mandatory one)")
    tables = {str(n): _table(r, str(n), t, f"tables.{n}", sources) for n, t in tables_raw.items()}
    for s in sources.values():
        for i, j in enumerate(s.joins):
            if j.source not in sources:
                raise r.error(
                    f"sources.{s.name}.join[{i}].source", f"{j.source!r} is not a named source"
                )
    export_date = top.get("export_date")
    when = None
    if export_date is not None:
        try:
            when = pd.Timestamp(str(export_date))
        except ValueError as exc:
            raise r.error("export_date", f"{export_date!r} is not a date") from exc
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    date_order = top.get("date_order")
    if date_order is not None:
        r.choice(date_order, "date_order", get_args(DateOrder))
    ignore = r.mapping(top.get("ignore") or {}, "ignore")
    return Mapping(
        path=path,
        name=str(top.get("name") or path.stem),
        sources=sources,
        tables=tables,
        export_date=when,
        null_values=r.texts(top["null_values"], "null_values") if top.get("null_values") else (),
        date_order=date_order,
        decimal=r.choice(top.get("decimal", "."), "decimal", (".", ",")),
        missing_columns=r.choice(
            top.get("missing_columns", "error"), "missing_columns", ("error", "empty")
        ),
        ignore={str(k): r.text(v, f"ignore.{k}") for k, v in ignore.items()},
    )


def value_map(spec: ColumnSpec) -> dict[str, tuple[str, ...]]:
    """The words of a column's value map: the mapping's own first, then the defaults."""
    words: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in spec.values.items()}
    if spec.defaults:
        for target, listed in DEFAULT_VALUE_MAPS.get(spec.target, {}).items():
            words[target] = words.get(target, ()) + listed
    return words
