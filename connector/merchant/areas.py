"""Every area of the merchant app: importing one puts its pages and API routes on the
blueprints (``connector.merchant.pages``, ``connector.merchant.api``), so the app
imports this before it registers them. An import and a line each."""

from __future__ import annotations

from connector.merchant import (
    activity,
    analytics,
    editor,
    overview,
    previews,
    segments,
    storefront_events,
)

AREAS = (overview, editor, previews, activity, analytics, segments, storefront_events)
