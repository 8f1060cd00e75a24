"""Named queries: the statements the hot paths run, built once at import.

Each is run with its values as parameters, so SQLAlchemy reuses its compiled
form; building a statement per call cost more CPU than running it. Where a
statement's shape depends on its arguments (the columns a move sets, a
dialect), a builder makes each shape once and caches it.

Grouped by the subsystem that runs them; each says what it is for and who
runs it. Nothing else of jobs is imported here: the store is its lowest layer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from emails.content import MessageKind
from jobs.store.models import (
    PRODUCT_FOR_SALE,
    Attribution,
    Checkout,
    Contact,
    CountedOrder,
    Delivery,
    Engagement,
    Enrollment,
    EnrollmentState,
    Message,
    MessageState,
    NonEnrolment,
    Order,
    OrderStatus,
    Product,
    ProductGroup,
    ProductGroupKind,
    ProductPair,
    ProductSale,
    Shop,
    StoredEvent,
    Suppression,
)


def dialect_insert(dialect: str) -> Any:
    """The INSERT construct with ``on_conflict_do_nothing`` for the dialect (by name)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


# --- the store -------------------------------------------------------------------

#: a checkout by its token, for jobs.store.rows (remembered for the transaction)
CHECKOUT_BY_TOKEN = select(Checkout).where(
    Checkout.shop_id == bindparam("shop_id"), Checkout.token == bindparam("value")
)
#: an order by the platform's order id, for jobs.store.rows (remembered likewise)
ORDER_BY_ORDER_ID = select(Order).where(
    Order.shop_id == bindparam("shop_id"), Order.order_id == bindparam("value")
)
#: many checkouts by token, for jobs.store.rows.prefetch (a history page's)
CHECKOUTS_BY_TOKENS = select(Checkout).where(
    Checkout.shop_id == bindparam("shop_id"),
    Checkout.token.in_(bindparam("values", expanding=True)),
)
#: many orders by order id, for jobs.store.rows.prefetch (a history page's)
ORDERS_BY_ORDER_IDS = select(Order).where(
    Order.shop_id == bindparam("shop_id"),
    Order.order_id.in_(bindparam("values", expanding=True)),
)

_INSERT_NEW: dict[tuple[str, type, tuple[str, ...]], Any] = {}


def insert_new(dialect: str, model: type, unique: tuple[str, ...]) -> Any:
    """``INSERT .. ON CONFLICT (unique) DO NOTHING RETURNING`` every column of the
    model's table, built once per dialect, model and constraint (jobs.store.db.insert_new
    runs it and makes the rows the session's own)."""
    key = (dialect, model, unique)
    statement = _INSERT_NEW.get(key)
    if statement is None:
        table: Table = model.__table__  # type: ignore[attr-defined]
        statement = _INSERT_NEW[key] = (
            dialect_insert(dialect)(table)
            .on_conflict_do_nothing(index_elements=list(unique))
            .returning(*table.c)
        )
    return statement


# --- intake ----------------------------------------------------------------------


def _insert_deliveries(dialect: str) -> Any:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING, built once per dialect.

    Building it per request (``.values(**row)``) cost more CPU than the database
    round trip itself. RETURNING names the key as well as the id, so a
    multi-row insert tells which rows were new.
    """
    table = Delivery.__table__
    assert isinstance(table, Table)
    return (
        dialect_insert(dialect)(table)
        .on_conflict_do_nothing(index_elements=["shop_id", "delivery_key"])
        .returning(table.c.id, table.c.shop_id, table.c.delivery_key)
    )


#: stores the deliveries not stored before, by dialect name (jobs.intake.deliveries)
INSERT_NEW_DELIVERIES = {name: _insert_deliveries(name) for name in ("postgresql", "sqlite")}

#: appends to the event log, run on the connection with no unit of work
#: (jobs.intake.apply)
INSERT_STORED_EVENT = insert(StoredEvent).returning(StoredEvent.id)
#: a history page's log rows, all in one statement (jobs.intake.apply.apply_history)
INSERT_STORED_EVENTS = insert(StoredEvent)
#: a contact by the platform's customer id (jobs.intake.apply finds whom an event is about)
CONTACT_BY_CUSTOMER_ID = select(Contact).where(
    Contact.shop_id == bindparam("shop_id"), Contact.customer_id == bindparam("key")
)
#: the contacts of these customer ids (a history page's: jobs.intake.apply)
CONTACTS_BY_CUSTOMER_IDS = select(Contact).where(
    Contact.shop_id == bindparam("shop_id"),
    Contact.customer_id.in_(bindparam("ids", expanding=True)),
)
#: a contact by address, when the customer id found nobody (jobs.intake.apply)
CONTACT_BY_EMAIL = select(Contact).where(
    Contact.shop_id == bindparam("shop_id"), Contact.email == bindparam("key")
)
#: what a contact's order statistics are made of (jobs.intake.apply recomputes them)
COUNTED_ORDERS_OF_CONTACT = select(Order.shop_total, Order.total, Order.placed_at).where(
    Order.contact_id == bindparam("contact_id"),
    Order.test.is_(False),
    Order.status.not_in([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
)
#: the counted orders of many contacts (a history page's: jobs.intake.apply)
COUNTED_ORDERS_OF_CONTACTS = select(
    Order.contact_id, Order.shop_total, Order.total, Order.placed_at
).where(
    Order.contact_id.in_(bindparam("ids", expanding=True)),
    Order.test.is_(False),
    Order.status.not_in([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
)
#: an order that completed a checkout, if it came before the checkout's event
#: (jobs.intake.apply)
ORDER_FOR_CHECKOUT = select(Order.placed_at, Order.order_id).where(
    Order.shop_id == bindparam("shop_id"), Order.checkout_token == bindparam("token")
)


# --- flows -----------------------------------------------------------------------

#: did the contact place a real order since then (jobs.flows.context, for conditions)
CONTACT_ORDERED_SINCE = select(
    exists().where(
        Order.shop_id == bindparam("shop_id"),
        Order.contact_id == bindparam("contact_id"),
        Order.test.is_(False),
        Order.placed_at >= bindparam("since"),
        Order.status != OrderStatus.CANCELLED,
    )
)

#: did the contact ever place a real order, whatever became of it (jobs.flows.context)
CONTACT_EVER_ORDERED = select(
    exists().where(
        Order.shop_id == bindparam("shop_id"),
        Order.contact_id == bindparam("contact_id"),
        Order.test.is_(False),
    )
)

#: how many orders the contact paid for (not tests, not cancelled or refunded since)
#: (jobs.flows.context, for loyalty milestones)
CONTACT_PAID_ORDERS = select(func.count(Order.id)).where(
    Order.shop_id == bindparam("shop_id"),
    Order.contact_id == bindparam("contact_id"),
    Order.test.is_(False),
    Order.paid_at.is_not(None),
    Order.status.not_in([OrderStatus.CANCELLED, OrderStatus.REFUNDED]),
)
#: an email planned, on its way or sent: not skipped, exited, expired, failed or cancelled
LIVE_MESSAGE_STATES = (
    MessageState.PLANNED,
    MessageState.SENDING,
    MessageState.HANDED,
    MessageState.SENT,
)
#: did a flow's step plan the contact an email due at or after a moment, or send one
#: since, that is still live (jobs.flows.context: a welcome's thanks for this order)
CONTACT_STEP_PLANNED_SINCE = select(
    exists().where(
        Message.shop_id == bindparam("shop_id"),
        Message.contact_id == bindparam("contact_id"),
        Message.flow == bindparam("flow"),
        Message.step == bindparam("step"),
        Message.state.in_(LIVE_MESSAGE_STATES),
        or_(Message.planned_at >= bindparam("since"), Message.sent_at >= bindparam("since")),
    )
)
#: does a flow's enrollment about this subject have an email planned, on its way or
#: sent (one not skipped, exited, expired, failed or cancelled)? (jobs.flows.context)
SUBJECT_FLOW_EMAIL_LIVE = select(
    exists().where(
        Enrollment.shop_id == bindparam("shop_id"),
        Enrollment.flow == bindparam("flow"),
        Enrollment.subject == bindparam("subject"),
        Message.enrollment_id == Enrollment.id,
        Message.state.in_(LIVE_MESSAGE_STATES),
    )
)
#: of these products, the ones no longer for sale (jobs.store.models.PRODUCT_FOR_SALE;
#: jobs.flows.context: exits, and the products an email leaves out)
PRODUCTS_OFF_SALE = select(Product.product_id).where(
    Product.shop_id == bindparam("shop_id"),
    Product.product_id.in_(bindparam("ids", expanding=True)),
    ~PRODUCT_FOR_SALE,
)
#: how many times a flow enrolled the contact, whatever became of it (jobs.flows.context)
CONTACT_ENROLLMENTS_IN_FLOW = select(func.count(Enrollment.id)).where(
    Enrollment.shop_id == bindparam("shop_id"),
    Enrollment.contact_id == bindparam("contact_id"),
    Enrollment.flow == bindparam("flow"),
)
#: did the contact enter a flow, about another subject (enrollment key), at or after a
#: moment (jobs.engine.enrolment: the re-entry rule of a flow such as the win-back)
CONTACT_ENTERED_FLOW_SINCE = select(
    exists().where(
        Enrollment.shop_id == bindparam("shop_id"),
        Enrollment.contact_id == bindparam("contact_id"),
        Enrollment.flow == bindparam("flow"),
        Enrollment.key != bindparam("key"),
        Enrollment.entered_at >= bindparam("since"),
    )
)
#: is the contact in a flow now (an active enrollment): a welcome series under way
#: (jobs.flows.context, for the re-engagement)
CONTACT_ACTIVE_IN_FLOW = select(
    exists().where(
        Enrollment.shop_id == bindparam("shop_id"),
        Enrollment.contact_id == bindparam("contact_id"),
        Enrollment.flow == bindparam("flow"),
        Enrollment.state == EnrollmentState.ACTIVE,
    )
)


# --- the audience: recommendations -----------------------------------------------


def _counted_order_insert(dialect: str) -> Any:
    return (
        dialect_insert(dialect)(CountedOrder)
        .on_conflict_do_nothing(index_elements=["order_row_id"])
        .returning(CountedOrder.id)
    )


def _pair_upsert(dialect: str) -> Any:
    statement = dialect_insert(dialect)(ProductPair)
    return statement.on_conflict_do_update(
        index_elements=["shop_id", "product_id", "other_id"],
        set_={"count": ProductPair.count + statement.excluded.count},
    )


def _sale_upsert(dialect: str) -> Any:
    statement = dialect_insert(dialect)(ProductSale)
    return statement.on_conflict_do_update(
        index_elements=["shop_id", "product_id"],
        set_={"orders": ProductSale.orders + statement.excluded.orders},
    )


def _counted_orders_insert(dialect: str) -> Any:
    return (
        dialect_insert(dialect)(CountedOrder)
        .on_conflict_do_nothing(index_elements=["order_row_id"])
        .returning(CountedOrder.order_row_id)
    )


_DIALECTS = ("postgresql", "sqlite")
#: notes an order as counted, once: a row back means it was not counted before
#: (jobs.audience.recommendations), by dialect name
INSERT_COUNTED_ORDER = {name: _counted_order_insert(name) for name in _DIALECTS}
#: notes many orders as counted (a history page): the row ids of those not counted before
COUNT_ORDERS = {name: _counted_orders_insert(name) for name in _DIALECTS}
#: adds to pairs' counts, creating the pairs first seen (jobs.audience.recommendations)
UPSERT_PRODUCT_PAIRS = {name: _pair_upsert(name) for name in _DIALECTS}
#: adds to products' paid orders, creating those first sold (jobs.audience.recommendations)
UPSERT_PRODUCT_SALES = {name: _sale_upsert(name) for name in _DIALECTS}
#: forgets that an order was counted, and says which products it had counted
#: (jobs.audience.recommendations takes them back)
DELETE_COUNTED_ORDER = (
    delete(CountedOrder)
    .where(CountedOrder.order_row_id == bindparam("order_row_id"))
    .returning(CountedOrder.product_ids)
)
#: takes a cancelled order's pairs back (jobs.audience.recommendations)
TAKE_BACK_PRODUCT_PAIRS = (
    update(ProductPair)
    .where(
        ProductPair.shop_id == bindparam("shop"),
        ProductPair.product_id.in_(bindparam("ids", expanding=True)),
        ProductPair.other_id.in_(bindparam("ids", expanding=True)),
        ProductPair.product_id != ProductPair.other_id,
    )
    .values(count=ProductPair.count - 1)
    .execution_options(synchronize_session=False)
)
#: takes a cancelled order's sales back (jobs.audience.recommendations)
TAKE_BACK_PRODUCT_SALES = (
    update(ProductSale)
    .where(
        ProductSale.shop_id == bindparam("shop"),
        ProductSale.product_id.in_(bindparam("ids", expanding=True)),
    )
    .values(orders=ProductSale.orders - 1)
    .execution_options(synchronize_session=False)
)
#: a product's collections and tags, replaced whenever it changes (jobs.audience)
DELETE_PRODUCT_GROUPS = delete(ProductGroup).where(
    ProductGroup.shop_id == bindparam("shop_id"),
    ProductGroup.product_id == bindparam("product_id"),
)
INSERT_PRODUCT_GROUPS = insert(ProductGroup)
#: what a contact's orders held, to leave out of what they are offered (jobs.audience)
ORDER_DATA_OF_CONTACT = select(Order.data).where(
    Order.shop_id == bindparam("shop_id"), Order.contact_id == bindparam("contact_id")
)

#: paid orders not counted yet, by id in batches (jobs.audience backfills the counts)
UNCOUNTED_PAID_ORDERS = (
    select(Order)
    .where(
        Order.shop_id == bindparam("shop_id"),
        Order.id > bindparam("after"),
        Order.status == OrderStatus.PAID,
        Order.test.is_(False),
        ~exists().where(CountedOrder.order_row_id == Order.id),
    )
    .order_by(Order.id)
    .limit(bindparam("limit"))
)
#: every product of a shop (jobs.audience backfills their collections and tags)
PRODUCTS_OF_SHOP = select(Product).where(Product.shop_id == bindparam("shop_id"))

#: a product an email may offer: for sale (jobs.store.models.for_sale), and not one
#: of those left out
_SHOWN = (
    Product.shop_id == bindparam("shop_id"),
    PRODUCT_FOR_SALE,
    Product.product_id.not_in(bindparam("excluded", expanding=True)),
)

_together = (
    select(ProductPair.other_id.label("product_id"), func.sum(ProductPair.count).label("orders"))
    .where(
        ProductPair.shop_id == bindparam("shop_id"),
        ProductPair.product_id.in_(bindparam("seeds", expanding=True)),
        ProductPair.count > 0,
    )
    .group_by(ProductPair.other_id)
    .subquery()
)
#: products bought together with the seeds, most orders first (jobs.audience)
BOUGHT_TOGETHER = (
    select(Product)
    .join(_together, Product.product_id == _together.c.product_id)
    .where(*_SHOWN)
    .order_by(_together.c.orders.desc(), Product.product_id)
    .limit(bindparam("limit"))
)

_seed_group = aliased(ProductGroup)
_near = aliased(ProductGroup)
_neighbours = (
    select(
        _near.product_id.label("product_id"),
        func.sum(case((_near.kind == ProductGroupKind.COLLECTION, 1), else_=0)).label(
            "collections"
        ),
        func.sum(case((_near.kind == ProductGroupKind.TAG, 1), else_=0)).label("tags"),
    )
    .join(
        _seed_group,
        and_(
            _seed_group.shop_id == _near.shop_id,
            _seed_group.kind == _near.kind,
            _seed_group.name == _near.name,
        ),
    )
    .where(
        _seed_group.shop_id == bindparam("shop_id"),
        _seed_group.product_id.in_(bindparam("seeds", expanding=True)),
    )
    .group_by(_near.product_id)
    .subquery()
)
#: products sharing collections, then tags, with the seeds, most shared first (jobs.audience)
SAME_GROUPS = (
    select(Product)
    .join(_neighbours, Product.product_id == _neighbours.c.product_id)
    .where(*_SHOWN)
    .order_by(_neighbours.c.collections.desc(), _neighbours.c.tags.desc(), Product.product_id)
    .limit(bindparam("limit"))
)
#: the shop's bestsellers, most paid orders first (jobs.audience)
BESTSELLERS = (
    select(Product)
    .join(
        ProductSale,
        and_(ProductSale.shop_id == Product.shop_id, ProductSale.product_id == Product.product_id),
    )
    .where(*_SHOWN, ProductSale.orders > 0)
    .order_by(ProductSale.orders.desc(), Product.product_id)
    .limit(bindparam("limit"))
)


# --- the engine: enrolment -------------------------------------------------------


def _enrollments_about(contact: bool, subjects: bool) -> Any:
    about = []
    if contact:
        about.append(Enrollment.contact_id == bindparam("contact_id"))
    if subjects:
        about.append(Enrollment.subject.in_(bindparam("subjects", expanding=True)))
    return (
        select(Enrollment)
        .where(
            Enrollment.shop_id == bindparam("shop_id"),
            Enrollment.state == EnrollmentState.ACTIVE,
            or_(*about),
        )
        .order_by(Enrollment.id)
    )


#: active enrollments about a contact, some subjects, or either, keyed by
#: (contact?, subjects?) (jobs.engine.enrolment checks their exits on each event)
ACTIVE_ENROLLMENTS_ABOUT = {
    (contact, subjects): _enrollments_about(contact, subjects)
    for contact, subjects in ((True, False), (False, True), (True, True))
}
#: locks an enrollment while it is active, before jobs.engine.enrolment completes it.
#: FOR NO KEY UPDATE, as an UPDATE takes: rows that only refer to the enrollment
#: (decisions written by other transactions) need not wait for it
ACTIVE_ENROLLMENT_FOR_UPDATE = (
    select(Enrollment.id)
    .where(Enrollment.id == bindparam("enrollment_id"), Enrollment.state == EnrollmentState.ACTIVE)
    .with_for_update(key_share=True)
)
#: completes an active enrollment past its last step with no message pending
#: (jobs.engine.enrolment)
COMPLETE_ENROLLMENT = (
    update(Enrollment)
    .where(
        Enrollment.id == bindparam("enrollment_id"),
        Enrollment.state == EnrollmentState.ACTIVE,
        Enrollment.step_index >= bindparam("steps"),
        ~select(Message.id)
        .where(
            Message.enrollment_id == bindparam("enrollment_id"),
            Message.state.in_([MessageState.PLANNED, MessageState.SENDING, MessageState.HANDED]),
        )
        .exists(),
    )
    .values(state=EnrollmentState.COMPLETED, ended_at=bindparam("at"))
    .execution_options(synchronize_session=False)
)


def _note_non_enrolment(dialect: str) -> Any:
    """INSERT .. ON CONFLICT (shop, contact, flow) DO UPDATE: the latest reason, counted."""
    statement = dialect_insert(dialect)(NonEnrolment)
    return statement.on_conflict_do_update(
        index_elements=["shop_id", "contact_id", "flow"],
        set_={
            "reason": statement.excluded.reason,
            "detail": statement.excluded.detail,
            "event": statement.excluded.event,
            "at": statement.excluded.at,
            "count": NonEnrolment.count + 1,
        },
    )


#: why a contact did not start a flow, kept as one row per shop, contact and flow,
#: by dialect name (jobs.engine.enrolment)
NOTE_NON_ENROLMENT = {name: _note_non_enrolment(name) for name in ("postgresql", "sqlite")}


# --- the engine: the message ledger ----------------------------------------------

_MOVES: dict[tuple[tuple[str, ...], bool, tuple[str, ...]], Any] = {}


def move_message(frm: tuple[str, ...], token: bool, names: tuple[str, ...]) -> Any:
    """The conditional UPDATE for one kind of move of a message's state (from the
    states ``frm``, under its claim token if ``token``, setting the columns
    ``names``), built once per kind and given its values as parameters
    (jobs.engine.ledger moves every message with one)."""
    key = (frm, token, names)
    statement = _MOVES.get(key)
    if statement is None:
        condition = [Message.id == bindparam("moving_id"), Message.state.in_(frm)]
        if token:
            condition.append(Message.claim_token == bindparam("moving_token"))
        statement = _MOVES[key] = (
            update(Message)
            .where(*condition)
            .values({name: bindparam(f"new_{name}") for name in names})
            .execution_options(synchronize_session=False)
        )
    return statement


#: planned -> sending if due, and the row read back (jobs.engine.ledger.claim)
CLAIM_MESSAGE = (
    update(Message)
    .where(
        Message.id == bindparam("message_id"),
        Message.state == MessageState.PLANNED,
        Message.due_at <= bindparam("at"),
    )
    .values(
        state=MessageState.SENDING,
        claim_token=bindparam("token"),
        claimed_at=bindparam("at"),
        attempts=Message.attempts + 1,
    )
    .returning(Message)
    .execution_options(populate_existing=True)
)
#: a message's state and due time: why a claim failed (jobs.engine.ledger.claim)
MESSAGE_STATE_AND_DUE = select(Message.state, Message.due_at).where(
    Message.id == bindparam("message_id")
)
#: a message's enrollment and contact, read before its claim (jobs.engine.ledger.refs_of)
MESSAGE_REFS = select(Message.enrollment_id, Message.contact_id).where(
    Message.id == bindparam("message_id")
)


# --- the engine: guards and suppressions -----------------------------------------

#: states that hold a slot against the frequency caps
OCCUPYING = (MessageState.SENT, MessageState.HANDED, MessageState.SENDING)


def _other_marketing(*condition: Any) -> Any:
    """The contact's other marketing messages (the one being judged left out)."""
    return (
        Message.contact_id == bindparam("contact_id"),
        Message.kind == MessageKind.MARKETING,
        Message.id != bindparam("message_id"),
        *condition,
    )


# when the contact's other marketing emails went (or are going) out
_TAKEN = (
    select(func.coalesce(Message.sent_at, Message.claimed_at).label("at"))
    .where(*_other_marketing(Message.state.in_(OCCUPYING)))
    .subquery()
)
#: when the contact's other marketing emails went (or are going) out, since a time
#: (jobs.engine.guards, for the gap and weekly caps)
OTHER_MARKETING_SENT_SINCE = select(_TAKEN.c.at).where(_TAKEN.c.at >= bindparam("since"))
#: the latest higher-priority marketing email due near a slot (jobs.engine.guards,
#: for the priority cap)
HIGHER_PRIORITY_DUE_NEAR = select(func.max(Message.due_at)).where(
    *_other_marketing(
        Message.state == MessageState.PLANNED,
        Message.priority > bindparam("priority"),
        Message.due_at > bindparam("after"),
        Message.due_at <= bindparam("until"),
    )
)
#: the scopes an address is suppressed for, by its plain or erased form
#: (jobs.engine.suppressions, asked by the guards)
SUPPRESSION_SCOPES_OF_ADDRESS = select(Suppression.scope).where(
    Suppression.shop_id == bindparam("shop_id"),
    Suppression.email.in_([bindparam("email"), bindparam("erased")]),
)


# --- sending ---------------------------------------------------------------------

#: a message's enrollment and shop, when it has no contact (jobs.sending.pipeline)
ENROLLMENT_AND_SHOP = (
    select(Enrollment, Shop)
    .join(Shop, Shop.id == Enrollment.shop_id)
    .where(Enrollment.id == bindparam("enrollment_id"))
)
#: a message's enrollment and shop, and its contact locked so that two of their
#: messages cannot both take one slot of the caps (jobs.sending.pipeline). FOR NO
#: KEY UPDATE, as an UPDATE takes: it excludes the contact's other sends and the
#: intake of their events, but not rows that only refer to the contact (the
#: decisions another transaction commits), which would otherwise deadlock with a send
ENROLLMENT_SHOP_AND_CONTACT_FOR_UPDATE = (
    select(Enrollment, Shop, Contact)
    .join(Shop, Shop.id == Enrollment.shop_id)
    .join(Contact, Contact.id == bindparam("contact_id"))
    .where(Enrollment.id == bindparam("enrollment_id"))
    .with_for_update(of=Contact, key_share=True)
    .execution_options(populate_existing=True)
)


# --- reports ---------------------------------------------------------------------

#: the attribution of an order, if it was credited (jobs.reports.attribution)
ATTRIBUTION_OF_ORDER = select(Attribution.id).where(
    Attribution.order_row_id == bindparam("order_row_id")
)
#: the contact's last engagement of the given kinds in the attribution window,
#: with its message's flow (jobs.reports.attribution credits the order to it)
LAST_ENGAGEMENT_IN_WINDOW = (
    select(Engagement.message_id, Engagement.at, Message.flow)
    .join(Message, Message.id == Engagement.message_id)
    .where(
        Engagement.shop_id == bindparam("shop_id"),
        Engagement.contact_id == bindparam("contact_id"),
        Engagement.kind.in_(bindparam("kinds", expanding=True)),
        Engagement.at <= bindparam("until"),
        Engagement.at >= bindparam("since"),
    )
    .order_by(Engagement.at.desc(), Engagement.id.desc())
    .limit(1)
)
