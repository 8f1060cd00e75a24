"""``GET /metrics``: the service's metrics in Prometheus text (see :mod:`jobs.metrics`).

Not public: with ``TRIGGERPOST_METRICS_TOKEN`` set, a scrape must send
``Authorization: Bearer <token>``; without one, only a request from this
machine's loopback that no proxy forwarded is answered (a reverse proxy on
the same machine connects from loopback too, so a request carrying
``Forwarded``, ``X-Forwarded-For`` or ``X-Real-IP`` is refused). Anything
else is 401 (a token expected) or 403.
"""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from connector.runtime import runtime_of
from jobs import metrics

blueprint = Blueprint("metrics", __name__)

#: what a proxy adds to a request it forwards
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)


@blueprint.get("/metrics")
def scrape() -> Response | tuple[Response, int]:
    settings = runtime_of(current_app).settings
    if settings.metrics_token is not None:
        if not _bearer_matches(settings.metrics_token):
            answer = jsonify(status="refused", message="metrics need the bearer token")
            answer.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return answer, 401
    elif not _from_loopback_unproxied():
        return jsonify(
            status="refused",
            message="metrics are answered on loopback only; set TRIGGERPOST_METRICS_TOKEN "
            "to scrape them from elsewhere",
        ), 403
    body = metrics.exposition(runtime_of(current_app))
    return Response(body, content_type=metrics.CONTENT_TYPE)


def _bearer_matches(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _from_loopback_unproxied() -> bool:
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:  # a unix socket: no address
        return False
