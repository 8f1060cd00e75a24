"""How an error answers: a page for a person's browser, JSON for everything else.

A merchant (or a customer following an email's link) who meets a 404, an
expired session or a failure reads a page in the merchant app's look, with
what to do next; the API, the webhooks, the health checks, the open pixel
and the platforms' server-to-server callbacks keep answering JSON, whatever
they accept. Which one a client gets is its ``Accept`` header's choice
between ``text/html`` and ``application/json`` (a browser's navigation
prefers HTML; ``*/*`` and no header mean JSON).
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from connector.merchant.ui import _, language

#: paths only machines call: JSON always
MACHINE_PATHS = ("/api/", "/webhooks/", "/events/", "/plugin/", "/healthz", "/readyz", "/t/o/")

#: status -> (title, what the merchant reads when the error says nothing of its own)
PAGES = {
    400: ("This request could not be used", "Go back and try again."),
    401: (
        "Please sign in",
        "Open triggerpost from your shop's admin, or ask for a new sign-in link.",
    ),
    403: ("Not allowed", "Reload the page and try again."),
    404: ("Page not found", "This page does not exist, or it belongs to another shop."),
    405: ("Not possible this way", "This page cannot be used like that."),
    410: ("No longer here", "This link has expired or was used already."),
    413: ("Too large", "What was sent is larger than triggerpost accepts."),
    429: ("Too many tries", "Wait a minute, then try again."),
    500: ("Something went wrong", "triggerpost could not finish this. Please try again soon."),
    502: ("Your shop did not answer", "Please try again in a moment."),
    503: ("Not available right now", "Please try again in a moment."),
}


def wants_page(machine_paths: Iterable[str] = ()) -> bool:
    """This request is a person's browser (not a machine route, and it prefers HTML)."""
    if request.path.startswith((*MACHINE_PATHS, *machine_paths)):
        return False
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def answer(exc: HTTPException, machine_paths: Iterable[str] = ()) -> tuple[Response | str, int]:
    """The error as a page or as ``{"error", "message"}``."""
    code = exc.code or 500
    if not wants_page(machine_paths):
        return jsonify(error=exc.name, message=exc.description), code
    title, default = PAGES.get(code, (exc.name, "Please try again."))
    # our own refusals are written for merchants; Werkzeug's defaults (and a
    # failure's details) are not
    own = exc.description if exc.description != type(exc).description and code < 500 else None
    g.merchant_page = True  # the merchant app's stylesheet
    page = render_template(
        "merchant/error.html",
        ui_language=language(),
        title=_(title),
        message=_(own or default),
    )
    return page, code
