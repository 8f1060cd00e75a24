"""Every job RQ runs, and the index of them.

Jobs are enqueued by their path here (``"jobs.tasks.send_due"``), never by a
function handed over, so no module imports another only to hand a function to
RQ, and nothing imports this module but RQ (and the worker's preload, by path).
Each job is thin: it takes the process's runtime (settings and connections
never travel through Redis) and calls the real work in its subsystem.

Queue ``intake``

``drain_shop(shop_id)``
    Applies the shop's stored deliveries, oldest first, a batch per transaction.
    Enqueued by the intake writer's notifier after a commit (flag
    ``triggerpost:drain:<shop>``), by a drain out of time, by WooCommerce
    reconciliation, by Shopify's catch-up and by the sweeper.
``process_delivery(delivery_id)``
    One delivery whose processing raised, with RQ's retries (id
    ``process_delivery-<delivery>``). Enqueued by a drain for each delivery that
    failed, and by the sweeper when that job is gone.

Queue ``messages``

``send_due(shop_id)``
    A send drain: the shop's due messages, a few at a time. Enqueued by the
    hand-off of due work (flag ``triggerpost:sends:<shop>`` when due now, a tick
    ``sends-<shop>-<epoch>`` at its time), by a drain asking for help or out of
    time, and by the sweeper.
``wake_enrollment(enrollment_id)``
    A Branch or a WaitForEvent timeout that has come due (id
    ``wake-<enrollment>-<epoch>``). Enqueued by the hand-off of due work at its
    time, and by the sweeper when that job is gone.

Queue ``default``

``register_webhooks(shop_id)``
    Shopify: the retry of an install's webhook registration (RQ retries).
    Enqueued by an install whose own attempt failed.
``verify_connect(nonce_id)``
    WooCommerce: tries a key POST's keys against the store and connects it only
    if they work. Enqueued by the key POST of a connect.
``setup_webhooks(shop_id)``
    WooCommerce: creates a connected store's webhooks (RQ retries). Enqueued by
    ``verify_connect`` once the store is connected.
``scan_shop(shop_id)``
    The shop's daily scan: birthdays, anniversaries, lapsed customers and quiet
    subscribers become facts applied like webhooks' events (id
    ``scan-<shop>-<shop-local date>``: one a day). Enqueued by the sweeper for
    each shop whose day changed since its last scan.
``import_history(shop_id, days)``
    Imports the shop's customers and orders of the last ``days`` from its
    platform's history source, resuming where a cut-short run stopped (id
    ``history-<shop>``, RQ retries). Enqueued when a WooCommerce store connects
    and when a shop installs on a platform that declares a history source.
``reconcile_shop(shop_id)``
    WooCommerce: recovers what webhooks missed and revives disabled webhooks (id
    ``reconcile-<shop>``). Enqueued by the sweeper for each store due.
``catch_up_shop(shop_id)``
    Shopify: stores the orders and customers whose webhooks never came, as
    deliveries, and repairs missing subscriptions (id ``shopify-catch-up-<shop>``).
    Enqueued by the sweeper for each shop due.

Job ids, retries and timeouts are set where each job is enqueued (named above).
"""

from __future__ import annotations

from jobs.engine import schedule
from jobs.intake import deliveries, history, scans
from jobs.platforms import registry, shopify, shopify_catchup, woocommerce
from jobs.runtime import current
from jobs.sending import courier, pipeline

# --- intake ----------------------------------------------------------------------


def drain_shop(shop_id: int) -> int:
    return deliveries.drain_shop(current(), shop_id)


def process_delivery(delivery_id: int) -> bool:
    return deliveries.process_delivery(current(), delivery_id)


# --- messages --------------------------------------------------------------------


def send_due(shop_id: int) -> int:
    return pipeline.send_due(courier.build_sender(current()), shop_id)


def wake_enrollment(enrollment_id: int) -> bool:
    return schedule.wake_enrollment(current(), enrollment_id)


# --- daily scans -----------------------------------------------------------------


def scan_shop(shop_id: int) -> dict[str, int]:
    return scans.scan_shop(current(), shop_id)


# --- platforms -------------------------------------------------------------------


def register_webhooks(shop_id: int) -> int:
    return shopify.register_webhooks(current(), shop_id)


def verify_connect(nonce_id: int) -> str:
    return woocommerce.verify_connect(current(), nonce_id)


def setup_webhooks(shop_id: int) -> int:
    return woocommerce.setup_webhooks(current(), shop_id)


def import_history(shop_id: int, days: int = history.DAYS) -> dict[str, object]:
    # while another run holds the import it raises: RQ retries it later
    return history.run(current(), shop_id, registry.history_source, days=days).as_dict()


def reconcile_shop(shop_id: int) -> dict[str, int]:
    return woocommerce.reconcile(current(), shop_id)


def catch_up_shop(shop_id: int) -> dict[str, int]:
    return shopify_catchup.catch_up(current(), shop_id)
