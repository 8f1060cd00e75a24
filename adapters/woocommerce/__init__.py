"""WooCommerce: webhook identity and signatures, topic translation, REST API."""

from adapters.woocommerce.webhooks import PLATFORM

__all__ = ["PLATFORM"]
