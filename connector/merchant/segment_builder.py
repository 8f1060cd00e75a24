"""The segment builder's form: a segment's conditions as rows and groups a merchant
edits on ``/app/segments/edit``, and the form read back into a condition.

A condition (:mod:`jobs.audience.segments`) is shown as a :class:`Group` of
:class:`Row` s and groups: a group matches ``all``, ``any``, ``none`` (not
any) or ``notall`` (not all) of its parts; a row is one condition, its field and
operator chosen together (``what``: ``"country:in"``) with its value as text
(several values separated by commas, CSV-quoted when one holds a comma). Every
condition the language can hold has a form (``not`` of a single part is a
``none`` group of one), so a segment saved through the API opens here whole.

Form names are paths: ``c`` is the top group (``c.match``), ``c.0`` its first
part, ``c.0.what``, ``c.0.value``, ``c.0.within``, ``c.1.match`` for a group
inside, and so on. The tree read from a post is numbered again in order, so a
forged post with gaps or odd numbers reads as the rows it holds, and a part
that is neither a row nor a group (no ``what`` nor ``match``) is no part.

Nothing here touches Flask or the database: the pages (:mod:`connector.merchant.segments`)
give it the shop's product names when a row names products.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.audience import segments

#: a group's ways to match its parts
MATCHES = ("all", "any", "none", "notall")
#: groups inside groups, at most (the top group is 1): two levels keep every
#: condition the builder makes within the language's depth
#: (``not`` + ``any`` around each level of ``none``)
MAX_LEVELS = 2
#: parts of one group, at most, and all groups' parts together (a forged post's size)
MAX_PARTS = segments.MAX_RULES
#: the most characters of one row's value the builder reads (the parser then counts)
MAX_VALUE_TEXT = 20_000

_INDEX = re.compile(r"\d{1,4}")
LIST_FIELDS = (
    segments.Field.COUNTRY,
    segments.Field.LANGUAGE,
    segments.Field.TAGS,
    segments.Field.CONSENT,
    segments.Field.BOUGHT_PRODUCT,
    segments.Field.BOUGHT_COLLECTION,
    segments.Field.BOUGHT_CATEGORY,
    segments.Field.BOUGHT_TAG,
)
_WHOLE_NUMBERS = (segments.Field.ORDERS_COUNT, segments.Field.DAYS_SINCE_LAST_ORDER)
BOUGHT = (
    segments.Field.BOUGHT_PRODUCT,
    segments.Field.BOUGHT_COLLECTION,
    segments.Field.BOUGHT_CATEGORY,
    segments.Field.BOUGHT_TAG,
)


@dataclass
class Row:
    """One condition as the form holds it: ``what`` is ``"<field>:<op>"`` ("" not chosen)."""

    what: str = ""
    value: str = ""
    within: str = ""

    @property
    def blank(self) -> bool:
        return not self.what and not self.value.strip() and not self.within.strip()


@dataclass
class Group:
    match: str = "all"
    items: list[Row | Group] = field(default_factory=list)


def choices() -> list[tuple[segments.Field, list[segments.Op]]]:
    """Every field with its operators, in the order the form offers them."""
    return [(f, list(segments.OPS[f])) for f in segments.Field]


def _what(text: str) -> tuple[segments.Field | None, segments.Op | None]:
    name, _sep, op = text.partition(":")
    try:
        found = segments.Field(name)
        chosen = segments.Op(op)
    except ValueError:
        return None, None
    if chosen not in segments.OPS[found]:
        return None, None
    return found, chosen


def empty() -> Group:
    """A new segment's form: one row to fill in."""
    return Group("all", [Row()])


# --- a condition shown as the form ----------------------------------------------------------


def values_text(values: Sequence[str]) -> str:
    """Values as one line, separated by commas; a value holding a comma or a quote is
    written in quotes (``Tea, "Cups, mugs"``), as :func:`split_values` reads it."""
    return ", ".join(
        '"' + value.replace('"', '""') + '"' if any(c in value for c in ',"') else value
        for value in values
    )


def split_values(text: str) -> list[str]:
    """The values of a line as :func:`values_text` writes it (blank ones dropped; a line
    break is a space, as a box of one line would have it)."""
    line = _BREAKS.sub(" ", text)
    try:
        rows = list(csv.reader([line], skipinitialspace=True))
    except csv.Error:  # nothing a comma line can hold (a stray character): read it plainly
        rows = [line.split(",")]
    return [value.strip() for value in (rows[0] if rows else []) if value.strip()]


_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x1c-\x1e\x85]+")


def from_condition(
    condition: segments.Condition, product_names: Mapping[str, str] | None = None
) -> Group:
    """The form of a condition; ``product_names``: a product id's name, where it has one."""
    node = _node(condition, product_names or {})
    return node if isinstance(node, Group) else Group("all", [node])


def _node(condition: segments.Condition, names: Mapping[str, str]) -> Row | Group:
    if isinstance(condition, segments.All):
        return Group("all", [_node(c, names) for c in condition.items])
    if isinstance(condition, segments.AnyOf):
        return Group("any", [_node(c, names) for c in condition.items])
    if isinstance(condition, segments.Not):
        inner = condition.item
        if isinstance(inner, segments.AnyOf):
            return Group("none", [_node(c, names) for c in inner.items])
        if isinstance(inner, segments.All):
            return Group("notall", [_node(c, names) for c in inner.items])
        return Group("none", [_node(inner, names)])
    plain = segments.to_json(condition)
    value = plain["value"]
    if condition.field == segments.Field.BOUGHT_PRODUCT:
        value = [names.get(v, v) for v in value]
    text = values_text(value) if isinstance(value, list) else str(value)
    within = condition.within_days
    return Row(
        f"{condition.field.value}:{condition.op.value}",
        text,
        "" if within is None else str(within),
    )


# --- the form read back -------------------------------------------------------------------


def from_form(form: Mapping[str, Any]) -> Group:
    """The builder's tree from a post (a MultiDict, or a dict of texts)."""
    # each group's parts, by their numbers, from one pass over the keys (a forged post
    # of many keys costs its length, not its length times its groups)
    parts: dict[str, set[int]] = {}
    for key in form:
        if not isinstance(key, str) or not key.startswith("c."):
            continue
        names = key.split(".", MAX_LEVELS + 4)
        for depth in range(1, len(names) - 1):
            if not _INDEX.fullmatch(names[depth]):
                break
            parts.setdefault(".".join(names[:depth]), set()).add(int(names[depth]))
    return _group_of(form, parts, "c", 1, [MAX_PARTS * 2])


def _text(form: Mapping[str, Any], key: str, longest: int = 200) -> str:
    value = form.get(key)
    return value[:longest] if isinstance(value, str) else ""


def _group_of(
    form: Mapping[str, Any], parts: dict[str, set[int]], path: str, level: int, budget: list[int]
) -> Group:
    match = _text(form, f"{path}.match")
    group = Group(match if match in MATCHES else "all")
    for index in sorted(parts.get(path, ())):
        if budget[0] <= 0:
            break
        at = f"{path}.{index}"
        if f"{at}.match" in form and level < MAX_LEVELS + 2:
            budget[0] -= 1
            group.items.append(_group_of(form, parts, at, level + 1, budget))
        elif f"{at}.what" in form or f"{at}.value" in form:
            budget[0] -= 1
            group.items.append(
                Row(
                    _text(form, f"{at}.what"),
                    _text(form, f"{at}.value", MAX_VALUE_TEXT),
                    _text(form, f"{at}.within", 20),
                )
            )
    return group


# --- the builder's buttons --------------------------------------------------------------------


def find(group: Group, path: str) -> Row | Group | None:
    """The part at a form path (``c.1.0``), or None."""
    parts = path.split(".")
    if not parts or parts[0] != "c":
        return None
    node: Row | Group = group
    for part in parts[1:]:
        if not isinstance(node, Group) or not _INDEX.fullmatch(part):
            return None
        index = int(part)
        if index >= len(node.items):
            return None
        node = node.items[index]
    return node


def level_of(path: str) -> int:
    return path.count(".") + 1


def apply(group: Group, action: str) -> str | None:
    """Do a builder button's action (``add:c``, ``group:c``, ``remove:c.1``) on the tree;
    returns the path of the part to put the focus on, or None when there is nothing
    to do (an unknown action, a path that names nothing, too many parts)."""
    verb, _sep, path = action.partition(":")
    target = find(group, path)
    if verb in ("add", "group"):
        if not isinstance(target, Group) or count_parts(group) >= MAX_PARTS:
            return None
        if verb == "group":
            if level_of(path) >= MAX_LEVELS:
                return None
            target.items.append(Group("any", [Row()]))
            return f"{path}.{len(target.items) - 1}.0"
        target.items.append(Row())
        return f"{path}.{len(target.items) - 1}"
    if verb == "remove" and target is not None and path != "c":
        parent_path, index = path.rsplit(".", 1)
        parent = find(group, parent_path)
        assert isinstance(parent, Group)
        del parent.items[int(index)]
        return parent_path
    return None


def count_parts(group: Group) -> int:
    return sum(1 + (count_parts(item) if isinstance(item, Group) else 0) for item in group.items)


# --- the form as a condition --------------------------------------------------------------------

#: looks a row's products up: (values as typed) -> (product ids, values that name none)
ProductLookup = Callable[[list[str]], tuple[list[str], list[str]]]


@dataclass
class Draft:
    """A form read as a condition: ``condition`` (JSON, for :func:`segments.parse`), or the
    problems by form path (``c.0.value``) in the builder's own words."""

    condition: dict[str, Any] | None
    problems: dict[str, str]
    #: each part's path in the condition (``all[1]``) -> its form path (``c.1``)
    paths: dict[str, str]
    #: the form paths of rows (a problem inside one lands on its field)
    rows: set[str]

    def form_problems(self, problems: Mapping[str, str]) -> dict[str, str]:
        """The parser's problems (by the condition's paths) placed on the form's fields."""
        found: dict[str, str] = {}
        for where, message in problems.items():
            found.setdefault(self.place(where), message)
        return found

    def place(self, where: str) -> str:
        """The form field a problem at ``where`` (``all[1].value[0]``) belongs to."""
        best = ""
        for known in self.paths:
            if len(known) > len(best) and where.startswith((known + ".", known + "[")):
                best = known
        if where in self.paths:
            best = where
        form_path = self.paths.get(best, "c")
        rest = where[len(best) :].lstrip(".")
        if form_path not in self.rows or not rest:
            return form_path
        if rest.startswith("value"):
            return f"{form_path}.value"
        if rest.startswith("within_days"):
            return f"{form_path}.within"
        return f"{form_path}.what"


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _english(text: str, /, **values: Any) -> str:
    return text.format_map(values)


def to_condition(
    group: Group,
    products: ProductLookup | None = None,
    words: Callable[..., str] = _english,
) -> Draft:
    """The condition the form describes, with the form path of each of its parts.

    Blank rows are left out; an empty group, a row without its condition chosen,
    a product that names none of the shop's are problems here, on their field, in
    ``words`` (the merchant's language: ``words(text, **values)``).
    A group of one part is that part (or ``not`` of it): the same segment, plainer data.
    """
    draft = Draft(None, {}, {}, set())

    def node(part: Row | Group, form_path: str, json_path: str) -> dict[str, Any] | None:
        draft.paths[json_path] = form_path
        if isinstance(part, Row):
            draft.rows.add(form_path)
            return _row(part, form_path, products, draft.problems, words)
        kept = [(n, item) for n, item in enumerate(part.items) if not _blank(item)]
        if not kept:
            draft.problems[form_path] = words("Add at least one condition.")
            return None
        negate = part.match in ("none", "notall")
        inner_path = _at(json_path, "not") if negate else json_path
        if len(kept) == 1:
            n, item = kept[0]
            found = node(item, f"{form_path}.{n}", inner_path)
            draft.paths.setdefault(json_path, form_path)
            return None if found is None else ({"not": found} if negate else found)
        key = "any" if part.match in ("any", "none") else "all"
        built = [
            node(item, f"{form_path}.{n}", f"{_at(inner_path, key)}[{i}]")
            for i, (n, item) in enumerate(kept)
        ]
        if any(item is None for item in built):
            return None
        body = {key: built}
        return {"not": body} if negate else body

    condition = node(group, "c", "")
    draft.paths["segment"] = "c"
    if not draft.problems:
        draft.condition = condition
    return draft


def _row(
    part: Row,
    form_path: str,
    products: ProductLookup | None,
    problems: dict[str, str],
    words: Callable[..., str],
) -> dict[str, Any] | None:
    found, op = _what(part.what)
    if found is None or op is None:
        problems[f"{form_path}.what"] = words("Choose a condition.")
        return None
    text = part.value.strip()
    value: Any
    if found in LIST_FIELDS:
        value = split_values(text)
        if found == segments.Field.BOUGHT_PRODUCT and products is not None and value:
            value, unknown = products(value)
            if unknown:
                problems[f"{form_path}.value"] = words(
                    "No product of yours has this name or id: {names}", names=values_text(unknown)
                )
                return None
    elif found in _WHOLE_NUMBERS or (
        found == segments.Field.CREATED
        and op in (segments.Op.WITHIN_DAYS, segments.Op.MORE_THAN_DAYS_AGO)
    ):
        value = int(text) if _DIGITS.fullmatch(text) else text
    else:
        value = text
    rule: dict[str, Any] = {"field": found.value, "op": op.value, "value": value}
    within = part.within.strip()
    if within:
        rule["within_days"] = int(within) if _DIGITS.fullmatch(within) else within
    return rule


_DIGITS = re.compile(r"\d{1,9}")


def _blank(part: Row | Group) -> bool:
    return isinstance(part, Row) and part.blank
