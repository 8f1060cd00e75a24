"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from connector.runtime import runtime_of
from jobs.queues import ALL_QUEUES
from jobs.store.models import Delivery, DeliveryStatus

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
def healthz() -> Any:
    """The process is up and answering; says nothing about its dependencies."""
    return jsonify(status="ok")


@blueprint.get("/readyz")
def readyz() -> Any:
    """Ready when the database and Redis answer; shows the work waiting."""
    runtime = runtime_of(current_app)
    report: dict[str, Any] = {}
    ready = True
    try:
        with runtime.sessions() as session:
            report["deliveries_waiting"] = session.scalar(
                select(func.count()).where(Delivery.status == DeliveryStatus.RECEIVED)
            )
            report["deliveries_failed"] = session.scalar(
                select(func.count()).where(Delivery.status == DeliveryStatus.FAILED)
            )
        report["database"] = "ok"
    except SQLAlchemyError as exc:
        ready = False
        report["database"] = f"error: {type(exc).__name__}"
    try:
        runtime.redis.ping()
        report["queues"] = {name: runtime.queue(name).count for name in ALL_QUEUES}
        report["redis"] = "ok"
    except RedisError as exc:
        ready = False
        report["redis"] = f"error: {type(exc).__name__}"
    report["status"] = "ready" if ready else "unavailable"
    return jsonify(report), 200 if ready else 503
