"""Analytics (``/app/analytics``): what each flow sent and earned, per shop-local day;
and on the Overview, each flow's last 30 days and the onboarding checklist.

API: ``GET /api/v1/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD&flow=<name>`` (the last
30 local days of every flow by default; at most 366 days), ``GET /api/v1/checklist``
and ``PATCH /api/v1/checklist/<code>`` (``{"done": true}``, for the steps the
merchant ticks off). The figures are :mod:`jobs.reports.analytics`'s, the
checklist :mod:`jobs.onboarding`'s.

The chart is inline SVG made here from the day figures: bars of emails sent per
day with the clicked ones over them, and the revenue per day below, scaled to
each series' largest day. The table beside it holds the same numbers (what a
screen reader reads, and the page without the chart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from flask import current_app, flash, redirect, request, url_for
from marshmallow import Schema, ValidationError, fields, validates
from werkzeug.routing import BuildError

from connector.merchant import ui
from connector.merchant.api import ApiError, api_route, invalid
from connector.merchant.auth import merchant_required
from connector.merchant.pages import blueprint as pages
from connector.merchant.ui import _
from connector.runtime import runtime_of
from jobs import onboarding
from jobs.flows import registry
from jobs.reports import analytics
from jobs.reports.attribution import Lift, Verdict
from jobs.store.models import Shop

#: the days shown when the merchant names none (the Overview's period too)
DEFAULT_DAYS = analytics.SUMMARY_DAYS


# --- reading, for the API and the pages alike ------------------------------------------


class AnalyticsQuery(Schema):
    first = fields.Date(
        data_key="from",
        load_default=None,
        metadata={"description": "the first shop-local day (YYYY-MM-DD); default 29 days ago"},
    )
    last = fields.Date(
        data_key="to",
        load_default=None,
        metadata={"description": "the last shop-local day (YYYY-MM-DD), included; default today"},
    )
    flow = fields.String(
        load_default=None, metadata={"description": "one flow's name; default every flow"}
    )

    @validates("flow")
    def _known_flow(self, value: str | None, **_kwargs: Any) -> None:
        if value and registry.get(value) is None:
            raise ValidationError(_("There is no flow called {name}.", name=value))


def _range(shop: Shop, first: date | None, last: date | None) -> tuple[date, date]:
    """The days asked for, the defaults filled in; a 400 naming the field when it cannot be."""
    if last is None:
        if first is not None:
            last = first + timedelta(days=DEFAULT_DAYS - 1)
        else:
            last = datetime.now(UTC).astimezone(analytics.shop_zone(shop)).date()
    first = first or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise invalid([("to", _("The last day must not be before the first."))])
    if (last - first).days + 1 > analytics.MAX_DAYS:
        raise invalid(
            [("from", _("Choose at most {days} days.", days=analytics.MAX_DAYS))],
        )
    return first, last


def figures_of(figures: analytics.Figures) -> dict[str, Any]:
    return figures.as_dict()


def lift_of(measured: Lift | None) -> dict[str, Any] | None:
    if measured is None:
        return None
    interval = measured.interval()
    return {
        "treated": measured.treated,
        "treated_converted": measured.treated_converted,
        "holdout": measured.holdout,
        "holdout_converted": measured.holdout_converted,
        "difference": measured.difference,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
        "percent": measured.percent,
        "verdict": str(measured.verdict),
        "words": verdict_words(measured),
    }


def verdict_words(measured: Lift) -> str:
    """The lift's verdict in the merchant's language."""
    verdict = measured.verdict
    if verdict == Verdict.NOT_ENOUGH_DATA:
        return _("Not enough data yet")
    percent = measured.percent
    if verdict == Verdict.MORE_ORDERS:
        if percent is None:
            return _("More orders than without the emails")
        return _("About {percent} % more orders than without the emails", percent=abs(percent))
    if percent is None:
        return _("Fewer orders than without the emails")
    return _("About {percent} % fewer orders than without the emails", percent=abs(percent))


def read(shop_id: int, first: date | None, last: date | None, flow: str | None) -> dict[str, Any]:
    """The shop's report as plain data (what the API answers and the page shows)."""
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        first, last = _range(shop, first, last)
        report = analytics.report(db, shop, first, last, flow)
    by_flow = report.by_flow()
    names = [name for name in registry.flows() if flow in (None, name)]
    names += [name for name in by_flow if name not in names]
    return {
        "from": report.first,
        "to": report.last,
        "timezone": report.zone,
        "currency": report.currency,
        "flow": flow,
        "totals": figures_of(report.total()),
        "days": [{"date": day, **figures_of(found)} for day, found in report.by_day()],
        "flows": [
            {
                "flow": name,
                "title": _(flow_found.title) if (flow_found := registry.get(name)) else name,
                **figures_of(by_flow.get(name, analytics.NONE)),
                "lift": lift_of(report.lifts.get(name)),
            }
            for name in names
        ],
    }


def checklist(shop_id: int) -> list[dict[str, Any]]:
    with runtime_of(current_app).sessions() as db:
        shop = db.get_one(Shop, shop_id)
        items = onboarding.checklist(db, shop)
    return [
        {
            **item.as_dict(),
            "words": _(item.words, **item.values),
            "fix_url": _url(item.fix),
        }
        for item in items
    ]


def tick(shop_id: int, code: str, done: bool) -> list[dict[str, Any]]:
    with runtime_of(current_app).sessions.begin() as db:
        shop = db.get_one(Shop, shop_id)
        try:
            onboarding.tick(db, shop, code, done, datetime.now(UTC))
        except onboarding.ChecklistError as exc:
            raise ApiError(
                404, "not_found", _("There is no step to tick off called {code}.", code=code)
            ) from exc
    return checklist(shop_id)


def _url(endpoint: str | None) -> str | None:
    """The page's address, None while the app has no such page."""
    if endpoint is None:
        return None
    try:
        return url_for(endpoint)
    except BuildError:
        return None


# --- the API -----------------------------------------------------------------------------


class Figures(Schema):
    sent = fields.Integer(required=True)
    delivered = fields.Integer(required=True, metadata={"description": "sent, not bounced"})
    bounced = fields.Integer(required=True)
    clicked = fields.Integer(required=True, metadata={"description": "emails clicked"})
    unsubscribed = fields.Integer(required=True)
    orders = fields.Integer(required=True, metadata={"description": "orders attributed"})
    revenue = fields.Decimal(
        as_string=True, required=True, metadata={"description": "in the shop's currency"}
    )
    other_revenue = fields.Dict(
        keys=fields.String(),
        values=fields.Decimal(as_string=True),
        metadata={"description": "orders credited in another currency: currency → amount"},
    )


class Day(Figures):
    date = fields.Date(required=True)


class LiftAnswer(Schema):
    treated = fields.Integer(metadata={"description": "contacts emailed"})
    treated_converted = fields.Integer()
    holdout = fields.Integer(metadata={"description": "contacts held out"})
    holdout_converted = fields.Integer()
    difference = fields.Float(metadata={"description": "emailed minus held-out order rate"})
    low = fields.Float(allow_none=True, metadata={"description": "its 95 % interval"})
    high = fields.Float(allow_none=True)
    percent = fields.Integer(allow_none=True, metadata={"description": "relative lift in %"})
    verdict = fields.String(metadata={"description": "not_enough_data, more_orders, fewer_orders"})
    words = fields.String()


class FlowFigures(Figures):
    flow = fields.String(required=True)
    title = fields.String()
    lift = fields.Nested(LiftAnswer, allow_none=True)


class AnalyticsAnswer(Schema):
    first = fields.Date(data_key="from")
    last = fields.Date(data_key="to")
    timezone = fields.String()
    currency = fields.String(allow_none=True)
    flow = fields.String(allow_none=True)
    totals = fields.Nested(Figures)
    days = fields.List(fields.Nested(Day))
    flows = fields.List(fields.Nested(FlowFigures))


class ChecklistItem(Schema):
    code = fields.String(required=True)
    done = fields.Boolean(required=True)
    words = fields.String(required=True)
    fix = fields.String(allow_none=True, metadata={"description": "the page's endpoint"})
    fix_url = fields.String(allow_none=True)
    tickable = fields.Boolean()


class ChecklistAnswer(Schema):
    items = fields.List(fields.Nested(ChecklistItem))


class Flag(fields.Boolean):
    """true or false, nothing that merely looks like one ("yes", 1)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class TickBody(Schema):
    done = Flag(required=True, error_messages={"invalid": "must be true or false"})


@api_route(
    "/analytics",
    summary="Sent, delivered, bounced, clicked, unsubscribed, orders and revenue per day "
    "and per flow, with each holdout's lift",
    query=AnalyticsQuery,
    answer=AnalyticsAnswer,
)
def get_analytics(shop_id: int, query: dict[str, Any]) -> dict[str, Any]:
    answer = read(shop_id, query["first"], query["last"], query["flow"] or None)
    answer["first"], answer["last"] = answer.pop("from"), answer.pop("to")
    return answer


@api_route("/checklist", summary="The onboarding checklist", answer=ChecklistAnswer)
def get_checklist(shop_id: int) -> dict[str, Any]:
    return {"items": checklist(shop_id)}


@api_route(
    "/checklist/<code>",
    methods=("PATCH",),
    summary="Tick a step off (or back on) that the merchant does outside triggerpost",
    body=TickBody,
    answer=ChecklistAnswer,
)
def patch_checklist(shop_id: int, code: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"items": tick(shop_id, code, body["done"])}


# --- the chart ---------------------------------------------------------------------------

#: the chart's drawing box (SVG user units; it scales to the page's width)
WIDTH, HEIGHT, LEFT, BOTTOM = 560, 160, 92, 20


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str


@dataclass(frozen=True)
class Chart:
    """One series or two (the second drawn over the first) as bars per day."""

    bars: Sequence[Bar]
    over: Sequence[Bar]
    top: str  # the largest value, as the axis says it
    ticks: Sequence[tuple[float, str]]  # x, the day's label
    description: str


def _bars(values: Sequence[float], labels: Sequence[str], largest: float) -> list[Bar]:
    span = WIDTH - LEFT
    step = span / max(1, len(values))
    gap = step * 0.2 if step > 4 else 0
    bars = []
    for n, (value, label) in enumerate(zip(values, labels, strict=True)):
        height = (HEIGHT - BOTTOM) * (value / largest) if largest else 0
        bars.append(
            Bar(LEFT + n * step + gap / 2, HEIGHT - BOTTOM - height, step - gap, height, label)
        )
    return bars


def _ticks(days: Sequence[date], shop: Shop) -> list[tuple[float, str]]:
    if not days:
        return []
    step = (WIDTH - LEFT) / len(days)
    wanted = sorted({0, len(days) // 2, len(days) - 1})
    return [(LEFT + n * step + step / 2, ui.local_date(_noon(days[n], shop), shop)) for n in wanted]


def _noon(day: date, shop: Shop) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=analytics.shop_zone(shop))


def charts(report: Mapping[str, Any], shop: Shop) -> dict[str, Chart]:
    days = report["days"]
    dates = [day["date"] for day in days]
    names = [ui.local_date(_noon(d, shop), shop) for d in dates]
    sent = [float(day["sent"]) for day in days]
    clicked = [float(day["clicked"]) for day in days]
    revenue = [float(day["revenue"]) for day in days]
    currency = report["currency"]
    largest_sent = max(sent, default=0)
    largest_revenue = max(revenue, default=0)
    emails = Chart(
        bars=_bars(
            sent,
            [
                _(
                    "{day}: {sent} sent, {clicked} clicked",
                    day=name,
                    sent=ui.number(int(s)),
                    clicked=ui.number(int(c)),
                )
                for name, s, c in zip(names, sent, clicked, strict=True)
            ],
            largest_sent,
        ),
        over=_bars(clicked, ["" for _day in days], largest_sent),
        top=ui.number(int(largest_sent)),
        ticks=_ticks(dates, shop),
        description=_(
            "Emails sent and clicked per day: {sent} sent and {clicked} clicked in all.",
            sent=ui.number(report["totals"]["sent"]),
            clicked=ui.number(report["totals"]["clicked"]),
        ),
    )
    earned = Chart(
        bars=_bars(
            revenue,
            [
                _(
                    "{day}: {revenue}",
                    day=name,
                    revenue=ui.money(Decimal(str(day["revenue"])), currency),
                )
                for name, day in zip(names, days, strict=True)
            ],
            largest_revenue,
        ),
        over=[],
        top=ui.money(Decimal(str(largest_revenue)), currency),
        ticks=_ticks(dates, shop),
        description=_(
            "Revenue attributed per day: {revenue} in all.",
            revenue=ui.money(report["totals"]["revenue"], currency),
        ),
    )
    return {"emails": emails, "revenue": earned}


# --- the pages ---------------------------------------------------------------------------


@pages.get("/app/analytics")
@merchant_required
def analytics_page() -> Any:
    shop = ui.page_shop()
    asked = {key: request.args.get(key, "") for key in ("from", "to", "flow")}
    errors: dict[str, str] = {}
    report: dict[str, Any] | None = None
    try:
        query = AnalyticsQuery().load({k: v for k, v in asked.items() if v})
        report = read(shop.id, query["first"], query["last"], query["flow"])
    except ValidationError as exc:
        messages = exc.messages if isinstance(exc.messages, dict) else {}
        errors = {name: " ".join(map(str, found)) for name, found in messages.items()}
    except ApiError as exc:
        errors = dict(exc.fields)
    if report is not None:
        asked = {
            "from": report["from"].isoformat(),
            "to": report["to"].isoformat(),
            "flow": report["flow"] or "",
        }
    page = ui.render_page(
        "merchant/analytics.html",
        title=_("Analytics"),
        report=report,
        charts=charts(report, shop) if report is not None else None,
        asked=asked,
        errors=errors,
        flows=[(flow.name, _(flow.title)) for flow in registry.flows().values()],
        chart_box=(WIDTH, HEIGHT, LEFT, BOTTOM),
        has_figures=bool(report and (report["totals"]["sent"] or report["totals"]["orders"])),
    )
    return page, (400 if errors else 200)


@pages.post("/app/checklist/<code>")
@merchant_required
def tick_page(code: str) -> Any:
    """The tick without JavaScript: a form post, then back to the Overview."""
    done = request.form.get("done") == "true"
    try:
        tick(ui.page_shop().id, code, done)
    except ApiError as exc:
        flash(exc.message, "error")
    else:
        flash(_("Saved"), "done")
    return redirect(url_for("merchant.overview"))


def overview_context(shop: Shop) -> dict[str, Any]:
    """What the Overview shows of this area: each flow's last 30 days, and the checklist."""
    with runtime_of(current_app).sessions() as db:
        fresh = db.get_one(Shop, shop.id)
        summaries = analytics.flow_summaries(db, fresh, DEFAULT_DAYS)
    return {
        "flow_figures": {
            name: {
                **figures_of(summary.figures),
                "lift": lift_of(summary.lift),
            }
            for name, summary in summaries.items()
        },
        "figures_currency": shop.currency,
        "checklist": checklist(shop.id),
    }


ui.nav_item("merchant.analytics_page", "Analytics", 60)
