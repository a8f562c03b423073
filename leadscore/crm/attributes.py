"""Custom attributes: extra deal or account columns that a mapping declares as features.

An export may carry columns beyond the contract (team, manager, discount, the reps'
assessments). Ingest keeps such columns as text and the features ignore them, unless
the export declares them in ``attributes.json`` beside its tables: then each declared
column is an :class:`Attribute` with a kind (categorical or numeric) and the moment it
is known, and the columns known before a deal closes become model features with their
own catalog entries and reasons.

When an attribute is known matters because an export holds no history of its values:

* ``creation``: fixed when the deal is created (team, lead source, segment). Its value
  is stamped at the deal's ``created_at``, which is exact.
* ``anytime``: may change while the deal is open (discount, forecast category). The
  export holds only its last value, which for a closed deal may have been set after
  the outcome was known; it is still stamped at ``created_at`` (there is no better
  time), so it is a feature with a caveat and the leakage audit checks it first.
* ``after_close``: set once the deal is won or lost (loss reason, final discount). It
  is stored for reports and never a feature: a model would learn the outcome from it.

``attributes.json`` is a JSON object ``{"attributes": [{name, table, kind, known,
label?, keep?, source?}, ...]}``. It lives beside the tables in a contract export
folder, and ingest copies it into the stored crm folder with the tables, so the
feature sources, the Feast repository and training read the attributes of the data
they were built from.

Numeric attributes are parsed at ingest like contract numbers (:func:`with_attributes`
adds them to the table as optional float columns), so a value that is not a number is
a reject naming the file, line, column and value, and the stored column is a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal, get_args

from leadscore.crm.contract import TABLES, Column, Table
from leadscore.pipeline_state import replace_file

ATTRIBUTES_FILE = "attributes.json"

Known = Literal["creation", "anytime", "after_close"]
AttributeTable = Literal["deals", "accounts"]
AttributeKind = Literal["categorical", "numeric"]

#: When an attribute is known, for each value of ``known``: the words of the docs and reports.
KNOWN_MEANING: dict[str, str] = {
    "creation": "fixed when the deal is created",
    "anytime": "may change while the deal is open; the export holds its last value",
    "after_close": "set after the deal is won or lost; never a feature",
}
#: Values of ``known`` whose attributes become model features.
FEATURE_KNOWN: tuple[str, ...] = ("creation", "anytime")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Prefix of every attribute feature name (``attr_team``).
ATTRIBUTE_FEATURE_PREFIX = "attr_"


class AttributesError(ValueError):
    """``attributes.json`` cannot be used; the message names the file, entry and rule."""


@dataclass(frozen=True)
class Attribute:
    """One declared extra column of the deals or accounts table."""

    #: The column name in the contract table (snake_case, e.g. ``"team"``).
    name: str
    table: AttributeTable
    kind: AttributeKind
    #: ``creation``: fixed when the deal is created; ``anytime``: may change while open,
    #: the export holds its last value; ``after_close``: never a feature.
    known: Known
    #: Words for reasons ("Team"); default derived from ``name``.
    label: str = ""
    #: The mapping's written reason to keep it even if the leakage audit flags it.
    keep: str | None = None
    #: The source column it came from (for reports).
    source: str | None = None

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", default_label(self.name))

    @property
    def is_feature(self) -> bool:
        """Whether the attribute may feed a model: known before the deal closes."""
        return self.known in FEATURE_KNOWN

    @property
    def feature(self) -> str:
        """The model feature name: ``attr_<name>``, so it never clashes with a built-in one."""
        return f"{ATTRIBUTE_FEATURE_PREFIX}{self.name}"


def default_label(name: str) -> str:
    """'discount_pct' -> 'Discount pct': a readable label when the mapping gives none."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def feature_attributes(attributes: Iterable[Attribute]) -> tuple[Attribute, ...]:
    """The attributes that may be model features (``after_close`` ones never are)."""
    return tuple(a for a in attributes if a.is_feature)


def _problem(source: str, where: str, rule: str) -> AttributesError:
    return AttributesError(f"{source}: {where}: {rule}")


def _parse_entry(source: str, index: int, entry: object) -> Attribute:
    """One entry of the file, checked field by field with a message naming it."""
    where = f"attributes[{index}]"
    if not isinstance(entry, dict):
        raise _problem(source, where, f"must be an object, got {entry!r}")
    name = entry.get("name")
    if isinstance(name, str):
        where += f" ({name!r})"
    unknown = sorted(set(entry) - {f.name for f in fields(Attribute)})
    if unknown:
        raise _problem(source, where, f"unknown field(s) {', '.join(unknown)}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _problem(
            source, where, f"name {name!r} must be snake_case (a-z, 0-9, _, starting with a letter)"
        )
    choices = {
        "table": get_args(AttributeTable),
        "kind": get_args(AttributeKind),
        "known": get_args(Known),
    }
    for key, allowed in choices.items():
        if entry.get(key) not in allowed:
            raise _problem(
                source, where, f"{key} {entry.get(key)!r} must be one of: {', '.join(allowed)}"
            )
    for key in ("label", "keep", "source"):
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            raise _problem(source, where, f"{key} {value!r} must be text")
    table = TABLES[entry["table"]]
    if name in table.column_names:
        raise _problem(
            source, where, f"name {name!r} is a contract column of {table.name}, not an extra one"
        )
    return Attribute(
        name=name,
        table=entry["table"],
        kind=entry["kind"],
        known=entry["known"],
        label=entry.get("label") or "",
        keep=entry.get("keep"),
        source=entry.get("source"),
    )


def parse_attributes(source: str, document: object) -> tuple[Attribute, ...]:
    """The attributes of a parsed ``attributes.json`` document; errors name ``source``
    (the file, or a model's metadata)."""
    if not isinstance(document, dict) or not isinstance(document.get("attributes"), list):
        raise _problem(source, "top level", 'must be an object {"attributes": [...]}')
    attributes = tuple(_parse_entry(source, i, e) for i, e in enumerate(document["attributes"]))
    seen: set[str] = set()
    for i, a in enumerate(attributes):
        if a.name in seen:
            raise _problem(source, f"attributes[{i}] ({a.name!r})", "name is declared twice")
        seen.add(a.name)
    return attributes


def read_attributes(folder: Path) -> tuple[Attribute, ...]:
    """The attributes declared in ``folder/attributes.json``; ``()`` when the file is absent.

    Raises :class:`AttributesError` naming the file, the entry and the rule on a bad file.
    """
    path = Path(folder) / ATTRIBUTES_FILE
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return ()
    except (OSError, UnicodeDecodeError) as exc:
        raise AttributesError(f"{path}: cannot be read: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AttributesError(
            f"{path} line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"
        ) from exc
    return parse_attributes(str(path), document)


def attributes_document(attributes: Sequence[Attribute]) -> dict[str, list[dict[str, str]]]:
    """The JSON-able form :func:`parse_attributes` reads back (unset fields left out)."""
    entries = [{k: v for k, v in asdict(a).items() if v is not None} for a in attributes]
    return {"attributes": entries}


def attributes_json(attributes: Sequence[Attribute]) -> str:
    """The file's text; the same attributes always give the same bytes."""
    return json.dumps(attributes_document(attributes), indent=2, ensure_ascii=False) + "\n"


def write_attributes(folder: Path, attributes: Sequence[Attribute]) -> None:
    """Write ``folder/attributes.json`` atomically (a temporary sibling renamed over it)."""
    text = attributes_json(attributes)
    replace_file(Path(folder) / ATTRIBUTES_FILE, lambda p: p.write_text(text, encoding="utf-8"))


def with_attributes(table: Table, attributes: Iterable[Attribute]) -> Table:
    """``table`` with its declared attributes as optional contract columns.

    Numeric attributes become float columns, so ingest parses them and rejects a value
    that is not a number like any contract number; categorical ones stay text.
    """
    extra = tuple(
        Column(
            a.name,
            "float" if a.kind == "numeric" else "string",
            False,
            f"Custom attribute {a.label!r} ({a.kind}, {KNOWN_MEANING[a.known]}).",
        )
        for a in attributes
        if a.table == table.name
    )
    return replace(table, columns=table.columns + extra) if extra else table
