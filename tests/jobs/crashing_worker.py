"""A worker process for tests: runs the queues in burst mode; with CRASH_AT set it dies
(exit 17, no clean-up, like a killed process) at that point of a send."""

from __future__ import annotations

import os

from jobs.sending import courier
from jobs.settings import Settings
from jobs.workers import worker

CRASH_AT = os.environ.get("CRASH_AT", "")


def _die(*_args: object, **_kwargs: object) -> None:
    os._exit(17)


if CRASH_AT == "compose":
    courier.EmailCourier.compose = _die  # type: ignore[method-assign,assignment]
elif CRASH_AT == "after_delivery":
    original = courier.EmailCourier.deliver

    def deliver_then_die(self: courier.EmailCourier, composed: object) -> None:
        original(self, composed)  # type: ignore[arg-type]
        os._exit(17)

    courier.EmailCourier.deliver = deliver_then_die  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    worker.work(Settings.from_env(), burst=True, with_sweeper=False)
