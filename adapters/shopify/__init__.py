"""Shopify: webhook identity and signatures, topic translation, Admin API."""

from adapters.shopify.webhooks import PLATFORM

__all__ = ["PLATFORM"]
