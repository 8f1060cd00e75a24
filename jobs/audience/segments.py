"""Segments: who a flow is for, as conditions stored as data and answered by the database.

A segment is a condition a merchant can read and edit, kept as JSON (a flow's
``audience`` option, or a saved segment in the shop's settings):

.. code-block:: json

    {"all": [
        {"field": "country", "op": "in", "value": ["SE", "NO"]},
        {"field": "total_spent", "op": "gte", "value": "1000"},
        {"not": {"field": "tags", "op": "any_of", "value": ["wholesale"]}},
        {"field": "bought_collection", "op": "any_of", "value": ["Coffee"], "within_days": 90}
    ]}

``all`` / ``any`` hold a list of conditions, ``not`` one; a leaf names a
``field``, an ``op`` and a ``value`` (and, for what was bought, an optional
``within_days``):

=========================  ===================================  ==========================
field                      ops                                  value
=========================  ===================================  ==========================
``country``                in, not_in                           ISO codes (``SE``)
``language``               in, not_in                           language codes (``sv``)
``tags``                   any_of, all_of, none_of              the customer's tags
``consent``                in, not_in                           consent states
``created``                before, after (a date),              ``2026-01-31``, or days
                           within_days, more_than_days_ago
``orders_count``           eq, ne, gt, gte, lt, lte             a whole number
``total_spent``            eq, ne, gt, gte, lt, lte             an amount, shop currency
``average_order_value``    eq, ne, gt, gte, lt, lte             an amount, shop currency
``days_since_last_order``  eq, ne, gt, gte, lt, lte             a whole number of days
``bought_product``         any_of, none_of                      product ids
``bought_collection``      any_of, none_of                      collection names
``bought_category``        any_of, none_of                      category names
``bought_tag``             any_of, none_of                      product tags
=========================  ===================================  ==========================

A customer without orders has no average order value and no days since a
last order: a condition on them does not hold for her (``not`` turns that
round). What was bought counts orders that were placed and neither
cancelled, refunded nor test orders (the orders ``orders_count`` counts); a
collection or category is the product's as the store holds it now (a
WooCommerce category is the collection of its platform), and so is a tag.

:func:`parse` refuses a bad condition with every problem named by its path
(``all[2].value``), in words a merchant reads (:class:`SegmentError`):
unknown keys, fields and operators, values of the wrong type, too deep (more
than :data:`MAX_DEPTH` levels) or too large (more than :data:`MAX_RULES`
conditions, :data:`MAX_VALUES` values in one).

Evaluation is SQL (SQLAlchemy Core, the same statement on SQLite and
PostgreSQL), never contacts loaded into Python: :func:`count`, :func:`sample`
and :func:`contains`, the check at enrolment and at send time, which is one
query by the contact's primary key. The whole-shop questions (count, sample,
a fan-out's batch) ask what was bought or tagged as uncorrelated ``IN``
subqueries, which both databases run once; the one-contact check asks them as
correlated ``EXISTS`` over that contact's own orders (one indexed probe each).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    Select,
    and_,
    bindparam,
    cast,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from adapters.events import ConsentState
from jobs.store.db import plain
from jobs.store.models import (
    Contact,
    Order,
    OrderProduct,
    OrderStatus,
    ProductGroup,
    ProductGroupKind,
    tag_key,
)

#: the deepest nesting of all/any/not a condition may have
MAX_DEPTH = 5
#: the most leaf conditions in one segment
MAX_RULES = 40
#: the most values one condition may list
MAX_VALUES = 200
#: the longest value (a tag, a collection's name)
MAX_TEXT = 255
#: the longest saved segment name
MAX_NAME = 64
#: the most contacts :func:`sample` shows
MAX_SAMPLE = 1000


class SegmentError(ValueError):
    """A condition refused: every problem by its path (``all[2].value``), in ``problems``."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(
            "the segment is not valid:\n"
            + "\n".join(f"  {where}: {what}" for where, what in self.problems.items())
        )


class Field(StrEnum):
    COUNTRY = "country"
    LANGUAGE = "language"
    TAGS = "tags"
    CONSENT = "consent"
    CREATED = "created"
    ORDERS_COUNT = "orders_count"
    TOTAL_SPENT = "total_spent"
    AVERAGE_ORDER_VALUE = "average_order_value"
    DAYS_SINCE_LAST_ORDER = "days_since_last_order"
    BOUGHT_PRODUCT = "bought_product"
    BOUGHT_COLLECTION = "bought_collection"
    BOUGHT_CATEGORY = "bought_category"
    BOUGHT_TAG = "bought_tag"


class Op(StrEnum):
    IN = "in"
    NOT_IN = "not_in"
    ANY_OF = "any_of"
    ALL_OF = "all_of"
    NONE_OF = "none_of"
    BEFORE = "before"
    AFTER = "after"
    WITHIN_DAYS = "within_days"
    MORE_THAN_DAYS_AGO = "more_than_days_ago"
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


_COMPARE = (Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE)
_BOUGHT = (
    Field.BOUGHT_PRODUCT,
    Field.BOUGHT_COLLECTION,
    Field.BOUGHT_CATEGORY,
    Field.BOUGHT_TAG,
)
#: each field's operators
OPS: dict[Field, tuple[Op, ...]] = {
    Field.COUNTRY: (Op.IN, Op.NOT_IN),
    Field.LANGUAGE: (Op.IN, Op.NOT_IN),
    Field.TAGS: (Op.ANY_OF, Op.ALL_OF, Op.NONE_OF),
    Field.CONSENT: (Op.IN, Op.NOT_IN),
    Field.CREATED: (Op.BEFORE, Op.AFTER, Op.WITHIN_DAYS, Op.MORE_THAN_DAYS_AGO),
    Field.ORDERS_COUNT: _COMPARE,
    Field.TOTAL_SPENT: _COMPARE,
    Field.AVERAGE_ORDER_VALUE: _COMPARE,
    Field.DAYS_SINCE_LAST_ORDER: _COMPARE,
    **dict.fromkeys(_BOUGHT, (Op.ANY_OF, Op.NONE_OF)),
}
#: what a merchant reads about each field (the form's labels)
LABELS: dict[Field, str] = {
    Field.COUNTRY: "Country",
    Field.LANGUAGE: "Language",
    Field.TAGS: "Customer tags",
    Field.CONSENT: "Email consent",
    Field.CREATED: "Became a customer",
    Field.ORDERS_COUNT: "Number of orders",
    Field.TOTAL_SPENT: "Total spent",
    Field.AVERAGE_ORDER_VALUE: "Average order value",
    Field.DAYS_SINCE_LAST_ORDER: "Days since last order",
    Field.BOUGHT_PRODUCT: "Bought the product",
    Field.BOUGHT_COLLECTION: "Bought from the collection",
    Field.BOUGHT_CATEGORY: "Bought from the category",
    Field.BOUGHT_TAG: "Bought a product tagged",
}
_GROUP_OF = {
    Field.BOUGHT_COLLECTION: ProductGroupKind.COLLECTION,
    # a WooCommerce category is stored as its product's collection
    Field.BOUGHT_CATEGORY: ProductGroupKind.COLLECTION,
    Field.BOUGHT_TAG: ProductGroupKind.TAG,
}


# --- the condition as data ---------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    field: Field
    op: Op
    value: Any
    within_days: int | None = None


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Rule | All | AnyOf | Not


def to_json(condition: Condition) -> dict[str, Any]:
    """The condition as the JSON :func:`parse` reads (values in their plain form)."""
    if isinstance(condition, All):
        return {"all": [to_json(c) for c in condition.items]}
    if isinstance(condition, AnyOf):
        return {"any": [to_json(c) for c in condition.items]}
    if isinstance(condition, Not):
        return {"not": to_json(condition.item)}
    value = condition.value
    if isinstance(value, tuple):
        value = list(value)
    elif isinstance(value, Decimal):
        value = str(value)
    elif isinstance(value, date):
        value = value.isoformat()
    rule: dict[str, Any] = {
        "field": condition.field.value,
        "op": condition.op.value,
        "value": value,
    }
    if condition.within_days is not None:
        rule["within_days"] = condition.within_days
    return rule


# --- parsing: JSON in, a condition or every problem out ------------------------------------

_COUNTRY = re.compile(r"[A-Za-z]{2}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class _Parser:
    def __init__(self) -> None:
        self.problems: dict[str, str] = {}
        self.rules = 0

    def fail(self, path: str, message: str) -> None:
        self.problems.setdefault(path or "segment", message)

    def condition(self, raw: Any, path: str, depth: int) -> Condition | None:
        if not isinstance(raw, Mapping):
            self.fail(path, "must be a condition (a JSON object)")
            return None
        if depth > MAX_DEPTH:
            self.fail(path, f"nested too deep (at most {MAX_DEPTH} levels of all, any and not)")
            return None
        groups = [key for key in ("all", "any", "not") if key in raw]
        if groups:
            key = groups[0]
            for extra in sorted(set(raw) - {key}):
                self.fail(_at(path, extra), f"unknown key beside {key!r}")
            if key == "not":
                inner = self.condition(raw["not"], _at(path, "not"), depth + 1)
                return None if inner is None else Not(inner)
            items = raw[key]
            where = _at(path, key)
            if not isinstance(items, list) or not items:
                self.fail(where, "must be a list of at least one condition")
                return None
            parsed = [self.condition(c, f"{where}[{i}]", depth + 1) for i, c in enumerate(items)]
            if any(p is None for p in parsed):
                return None
            kept = tuple(p for p in parsed if p is not None)
            return All(kept) if key == "all" else AnyOf(kept)
        return self.rule(raw, path)

    def rule(self, raw: Mapping[str, Any], path: str) -> Rule | None:
        self.rules += 1
        if self.rules == MAX_RULES + 1:
            self.fail(path, f"too many conditions (at most {MAX_RULES} in one segment)")
        for extra in sorted(set(raw) - {"field", "op", "value", "within_days"}):
            self.fail(_at(path, extra), "unknown key (use field, op, value, within_days)")
        name = raw.get("field")
        if name is None:
            self.fail(_at(path, "field"), "missing: which field the condition is about")
            return None
        try:
            field = Field(name)
        except ValueError:
            self.fail(
                _at(path, "field"),
                "unknown field (use one of: " + ", ".join(f.value for f in Field) + ")",
            )
            return None
        allowed = OPS[field]
        op_name = raw.get("op")
        if op_name not in {op.value for op in allowed}:
            self.fail(
                _at(path, "op"),
                f"{LABELS[field].lower()} takes one of: " + ", ".join(op.value for op in allowed),
            )
            return None
        op = Op(op_name)
        where = _at(path, "value")
        if "value" not in raw:
            self.fail(where, "missing")
            return None
        value = _value(self, field, op, raw["value"], where)
        within = raw.get("within_days")
        if within is not None:
            if field not in _BOUGHT:
                self.fail(_at(path, "within_days"), "only for what was bought")
                within = None
            elif not _whole(within) or not 1 <= within <= 3650:
                self.fail(_at(path, "within_days"), "must be a whole number of days, 1 to 3650")
                within = None
        if value is None:
            return None
        return Rule(field, op, value, within)


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value(parser: _Parser, field: Field, op: Op, raw: Any, where: str) -> Any:
    if field in (Field.COUNTRY, Field.LANGUAGE, Field.TAGS, Field.CONSENT) or field in _BOUGHT:
        return _texts(parser, field, raw, where)
    if field == Field.CREATED:
        if op in (Op.BEFORE, Op.AFTER):
            try:
                return date.fromisoformat(raw) if isinstance(raw, str) else _bad()
            except ValueError:
                parser.fail(where, "must be a date, e.g. 2026-01-31")
                return None
        return _days(parser, raw, where)
    if field in (Field.ORDERS_COUNT, Field.DAYS_SINCE_LAST_ORDER):
        if field == Field.DAYS_SINCE_LAST_ORDER:
            return _days(parser, raw, where)
        if not _whole(raw) or not 0 <= raw <= 1_000_000:
            parser.fail(where, "must be a whole number, 0 or more")
            return None
        return raw
    # an amount in the shop's currency: a JSON number or a decimal string, never a float's error
    try:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise InvalidOperation
        amount = Decimal(str(raw).strip())
        if not amount.is_finite() or amount < 0 or amount > Decimal("1e12"):
            raise InvalidOperation
    except InvalidOperation:
        parser.fail(where, "must be an amount in your shop's currency, e.g. 1000 or 99.50")
        return None
    return amount


def _bad() -> Any:
    raise ValueError


def _days(parser: _Parser, raw: Any, where: str) -> int | None:
    if not _whole(raw) or not 0 <= raw <= 36500:
        parser.fail(where, "must be a whole number of days, 0 or more")
        return None
    return int(raw)


def _texts(parser: _Parser, field: Field, raw: Any, where: str) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        parser.fail(where, "must be a list of at least one value")
        return None
    if len(raw) > MAX_VALUES:
        parser.fail(where, f"too many values (at most {MAX_VALUES})")
        return None
    out: list[str] = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if isinstance(item, int) and not isinstance(item, bool) and field == Field.BOUGHT_PRODUCT:
            item = str(item)  # a product id written as a number
        if not isinstance(item, str) or not item.strip():
            parser.fail(at, "must be text")
            continue
        text = item.strip()
        if _CONTROL.search(text):  # a NUL no PostgreSQL text holds, a tab no name has
            parser.fail(at, "must not contain control characters")
            continue
        if len(text) > MAX_TEXT:
            parser.fail(at, f"too long (at most {MAX_TEXT} characters)")
            continue
        if field == Field.COUNTRY:
            if not _COUNTRY.fullmatch(text):
                parser.fail(at, "must be a two-letter country code, e.g. SE")
                continue
            text = text.upper()
        elif field == Field.LANGUAGE:
            if not _LANGUAGE.fullmatch(text):
                parser.fail(at, "must be a language code, e.g. sv or en")
                continue
            text = text.lower()
        elif field == Field.CONSENT:
            if text not in {state.value for state in ConsentState}:
                parser.fail(
                    at, "must be one of: " + ", ".join(state.value for state in ConsentState)
                )
                continue
        elif field == Field.TAGS:
            text = tag_key(text)
        out.append(text)
    if len(out) != len(raw):
        return None
    return tuple(dict.fromkeys(out))


def parse(raw: Any) -> Condition:
    """The condition ``raw`` (parsed JSON) describes, or :class:`SegmentError` naming
    every problem by its path."""
    parser = _Parser()
    condition = parser.condition(raw, "", 1)
    if parser.problems or condition is None:
        raise SegmentError(parser.problems or {"segment": "not a condition"})
    return condition


def check_name(name: Any) -> str | None:
    """What is wrong with a saved segment's name, or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME:
        return (
            f"a name is at most {MAX_NAME} small letters, digits, - and _ "
            "(starting with a letter or digit)"
        )
    return None


# --- built-in segments ------------------------------------------------------------------------

#: segments every shop has, by name (a saved segment of the same name replaces one)
BUILT_IN: dict[str, dict[str, Any]] = {
    "new-subscribers": {
        "all": [
            {"field": "consent", "op": "in", "value": ["subscribed"]},
            {"field": "orders_count", "op": "eq", "value": 0},
            {"field": "created", "op": "within_days", "value": 30},
        ]
    },
    "first-time-buyers": {"field": "orders_count", "op": "eq", "value": 1},
    "repeat-buyers": {"field": "orders_count", "op": "gte", "value": 2},
    "vip": {"field": "total_spent", "op": "gte", "value": "10000"},
    "lapsing-customers": {
        "all": [
            {"field": "orders_count", "op": "gte", "value": 1},
            {"field": "days_since_last_order", "op": "gte", "value": 90},
            {"field": "days_since_last_order", "op": "lt", "value": 365},
        ]
    },
}
#: what a merchant reads about each built-in
BUILT_IN_TITLES = {
    "new-subscribers": "New subscribers (last 30 days, no order yet)",
    "first-time-buyers": "First-time buyers (one order)",
    "repeat-buyers": "Repeat buyers (two orders or more)",
    "vip": "VIP (spent 10,000 or more)",
    "lapsing-customers": "Lapsing customers (last order 90 to 365 days ago)",
}


def resolve(value: Any, saved: Mapping[str, Any]) -> tuple[str, Condition] | None:
    """A flow's ``audience`` option: None (everyone), a segment's name (a saved one, or
    a built-in) or a condition; with the name a merchant reads in a reason's detail.

    A name that no longer names a segment raises :class:`SegmentError`: the
    settings' validation refuses such a name, so this is a segment deleted since.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        raw = saved.get(value, BUILT_IN.get(value))
        if raw is None:
            raise SegmentError({"audience": f"no segment named {value!r}"})
        return value, raw if isinstance(raw, Rule | All | AnyOf | Not) else parse(raw)
    if isinstance(value, Rule | All | AnyOf | Not):
        return "conditions", value
    return "conditions", parse(value)


# --- evaluation in SQL ---------------------------------------------------------------------


class Mode(StrEnum):
    #: every contact of the shop at once: subqueries run once (``IN``)
    SHOP = "shop"
    #: one contact: correlated probes of her own rows (``EXISTS``)
    ONE = "one"


def _amount(column: Any) -> ColumnElement[Any]:
    # SQLite keeps amounts as exact text (jobs.store.models.Amount): compared as numbers
    return cast(column, Numeric(18, 4))


def _compare(column: Any, op: Op, value: Any) -> ColumnElement[bool]:
    if op == Op.EQ:
        return column == value
    if op == Op.NE:
        return column != value
    if op == Op.GT:
        return column > value
    if op == Op.GTE:
        return column >= value
    if op == Op.LT:
        return column < value
    return column <= value


def _counted_orders() -> list[ColumnElement[bool]]:
    return [
        Order.test.is_(False),
        Order.status.not_in([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
    ]


class _Build:
    """Builds a condition's WHERE clause: with the shop and the moment as values (a
    statement for once), or as parameters (a statement built once per condition and
    reused: the check at enrolment, on the hot path of every event)."""

    def __init__(self, mode: Mode, shop_id: int | None, at: datetime | None) -> None:
        self.mode = mode
        self.shop_id = shop_id
        self.at = at
        #: each parameter's distance back from the moment (``ago_<n>``)
        self.offsets: list[timedelta] = []

    def shop(self) -> Any:
        return self.shop_id if self.shop_id is not None else bindparam("shop_id")

    def ago(self, delta: timedelta) -> Any:
        if self.at is not None:
            return self.at - delta
        self.offsets.append(delta)
        return bindparam(f"ago_{len(self.offsets) - 1}")

    def where(self, condition: Condition) -> ColumnElement[bool]:
        if isinstance(condition, All):
            return and_(true(), *(self.where(c) for c in condition.items))
        if isinstance(condition, AnyOf):
            return or_(false(), *(self.where(c) for c in condition.items))
        if isinstance(condition, Not):
            # a NULL inside (no orders, no country) must not make "not" unknown too
            return not_(func.coalesce(self.where(condition.item), False))
        return self.rule(condition)

    def bought(self, rule: Rule) -> ColumnElement[bool]:
        values = list(rule.value)
        if rule.field == Field.BOUGHT_PRODUCT:
            products: Any = OrderProduct.product_id.in_(values)
        else:
            products = OrderProduct.product_id.in_(
                select(ProductGroup.product_id).where(
                    ProductGroup.shop_id == self.shop(),
                    ProductGroup.kind == _GROUP_OF[rule.field],
                    ProductGroup.name.in_(values),
                )
            )
        since = []
        if rule.within_days is not None:
            since.append(Order.placed_at >= self.ago(timedelta(days=rule.within_days)))
        joined = Order.id == OrderProduct.order_row_id
        if self.mode == Mode.ONE:
            found: ColumnElement[bool] = exists().where(
                Order.contact_id == Contact.id, joined, products, *_counted_orders(), *since
            )
        else:
            found = Contact.id.in_(
                select(Order.contact_id).where(
                    Order.shop_id == self.shop(), joined, products, *_counted_orders(), *since
                )
            )
        return found if rule.op == Op.ANY_OF else not_(found)

    def rule(self, rule: Rule) -> ColumnElement[bool]:
        field, op, value = rule.field, rule.op, rule.value
        if field in _BOUGHT:
            return self.bought(rule)
        if field == Field.COUNTRY:
            country = Contact.country_code.in_(value)
            return country if op == Op.IN else or_(Contact.country_code.is_(None), not_(country))
        if field == Field.LANGUAGE:
            locale = func.lower(Contact.locale)
            found = or_(
                locale.in_(value),  # "sv", or "sv-SE" and "sv_SE"
                *(locale.like(f"{code}-%") for code in value),
                *(locale.like(f"{code}!_%", escape="!") for code in value),
            )
            return found if op == Op.IN else or_(Contact.locale.is_(None), not_(found))
        if field == Field.CONSENT:
            # never told is "not subscribed" to a merchant
            state = func.coalesce(Contact.consent_state, ConsentState.NOT_SUBSCRIBED.value)
            return state.in_(value) if op == Op.IN else state.not_in(value)
        if field == Field.TAGS:
            if op == Op.ANY_OF:
                return _tagged(value)
            if op == Op.ALL_OF:
                return and_(*(_tagged([v]) for v in value))
            return or_(Contact.tags.is_(None), not_(_tagged(value)))
        if field == Field.CREATED:
            since = func.coalesce(Contact.platform_created_at, Contact.created_at)
            if op == Op.BEFORE:
                return since < datetime.combine(value, time(), UTC)
            if op == Op.AFTER:
                return since >= datetime.combine(value, time(), UTC) + timedelta(days=1)
            if op == Op.WITHIN_DAYS:
                return since >= self.ago(timedelta(days=value))
            return since < self.ago(timedelta(days=value))
        if field == Field.ORDERS_COUNT:
            return _compare(Contact.orders_count, op, value)
        if field == Field.TOTAL_SPENT:
            return _compare(_amount(Contact.total_spent), op, value)
        if field == Field.AVERAGE_ORDER_VALUE:
            average = _amount(Contact.total_spent) / Contact.orders_count
            return and_(Contact.orders_count > 0, _compare(average, op, value))
        # days since the last order: n whole days (of 24 hours) have passed since it
        last = Contact.last_order_at
        day, n = timedelta(days=1), value
        if op == Op.EQ:
            return and_(last <= self.ago(n * day), last > self.ago((n + 1) * day))
        if op == Op.NE:
            return and_(
                last.is_not(None),
                or_(last > self.ago(n * day), last <= self.ago((n + 1) * day)),
            )
        if op == Op.GT:
            return last <= self.ago((n + 1) * day)
        if op == Op.GTE:
            return last <= self.ago(n * day)
        if op == Op.LT:
            return last > self.ago(n * day)
        return last > self.ago((n + 1) * day)


def _tagged(values: Sequence[str]) -> ColumnElement[bool]:
    # tags kept as "\n" + tag + "\n" + tag ... + "\n" on the contact (jobs.store.models.tag_key)
    return or_(*(Contact.tags.contains(f"\n{value}\n", autoescape=True) for value in values))


def where(condition: Condition, shop_id: int, at: datetime, mode: Mode) -> ColumnElement[bool]:
    """The condition as a WHERE clause over ``contacts`` (``at``: now, for day counts)."""
    return _Build(mode, shop_id, at).where(condition)


def _members(shop_id: int, condition: Condition, at: datetime) -> ColumnElement[bool]:
    return and_(
        Contact.shop_id == shop_id,
        Contact.redacted_at.is_(None),
        where(condition, shop_id, at, Mode.SHOP),
    )


def members(shop_id: int, condition: Condition, at: datetime) -> Select[Any]:
    """The ids of the segment's contacts, as a SELECT (a fan-out filters by it)."""
    return select(Contact.id).where(_members(shop_id, condition, at))


def count(session: Session, shop_id: int, condition: Condition, at: datetime) -> int:
    """How many of the shop's contacts are in the segment: one SELECT COUNT."""
    query = select(func.count()).select_from(Contact).where(_members(shop_id, condition, at))
    return int(session.execute(query).scalar_one())


@dataclass(frozen=True)
class Member:
    contact_id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    orders_count: int
    total_spent: Decimal
    last_order_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON values (money as a decimal string, times in UTC ISO 8601)."""
        return {
            "contact_id": self.contact_id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "country": self.country,
            "orders_count": self.orders_count,
            "total_spent": str(self.total_spent),
            "last_order_at": self.last_order_at.isoformat() if self.last_order_at else None,
        }


def sample(
    session: Session, shop_id: int, condition: Condition, at: datetime, limit: int = 20
) -> list[Member]:
    """Up to ``limit`` of the segment's contacts (the newest first): one SELECT."""
    limit = max(1, min(limit, MAX_SAMPLE))
    query = (
        select(
            Contact.id,
            Contact.email,
            Contact.first_name,
            Contact.last_name,
            Contact.country_code,
            Contact.orders_count,
            Contact.total_spent,
            Contact.last_order_at,
        )
        .where(_members(shop_id, condition, at))
        .order_by(Contact.id.desc())
        .limit(limit)
    )
    return [Member(*row) for row in session.execute(query)]


@lru_cache(maxsize=1024)
def _check_of(condition: Condition) -> tuple[Select[Any], tuple[timedelta, ...]]:
    """:func:`contains`'s statement for a condition, built once: the contact, the shop and
    the moment's distances back (``ago_<n>``) are its parameters."""
    build = _Build(Mode.ONE, None, None)
    clause = build.where(condition)
    statement = select(Contact.id).where(
        Contact.id == bindparam("contact_id"),
        Contact.shop_id == bindparam("shop_id"),
        Contact.redacted_at.is_(None),
        clause,
    )
    return statement, tuple(build.offsets)


def contains(
    session: Session, shop_id: int, contact_id: int, condition: Condition, at: datetime
) -> bool:
    """Is the contact in the segment now? One query by her primary key (enrolment, sends);
    its statement is built once per condition. What the session holds unwritten is
    written first (her new tags, an order just applied)."""
    statement, offsets = _check_of(condition)
    params: dict[str, Any] = {"contact_id": contact_id, "shop_id": shop_id}
    for n, offset in enumerate(offsets):
        params[f"ago_{n}"] = at - offset
    return plain(session).execute(statement, params).first() is not None
