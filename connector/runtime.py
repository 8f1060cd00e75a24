"""What a view needs of the app it runs in: the runtime, and this response's style nonce.

Apart from :mod:`connector.app`, so that the app can import its blueprints and
the blueprints these, with no cycle between them.
"""

from __future__ import annotations

import secrets

from flask import Flask, g

from jobs.runtime import Runtime

#: where the app keeps its runtime (``app.extensions``)
EXTENSION = "triggerpost"

#: a page from our templates: its inline styles carry the response's nonce
PAGE_POLICY = (
    "default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


#: a page of the merchant app: our own stylesheet and script, images from anywhere
#: https (a shop's logo, product photos), the API on our origin, and the email
#: previews framed from our origin
MERCHANT_POLICY = (
    "default-src 'none'; style-src 'self' 'nonce-{nonce}'; script-src 'self'; "
    "img-src 'self' https: data:; connect-src 'self'; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def runtime_of(app: Flask) -> Runtime:
    runtime: Runtime = app.extensions[EXTENSION]
    return runtime


def csp_nonce() -> str:
    """This response's style nonce (templates call it; the header then allows it)."""
    nonce: str | None = g.get("csp_nonce")
    if nonce is None:
        nonce = g.csp_nonce = secrets.token_urlsafe(16)
    return nonce


def allow_framing(ancestors: tuple[str, ...], scripts: tuple[str, ...]) -> None:
    """This response may be framed by these origins only (a platform's admin embeds
    it), and may load these scripts; every other response stays unframable."""
    g.frame_ancestors = ancestors
    g.frame_scripts = scripts


def framed_policy(policy: str) -> tuple[str, bool]:
    """``policy`` with this response's framing and scripts; and whether it may be framed."""
    ancestors: tuple[str, ...] = g.get("frame_ancestors") or ()
    scripts: tuple[str, ...] = g.get("frame_scripts") or ()
    if scripts:
        if "script-src " in policy:
            policy = policy.replace("script-src ", f"script-src {' '.join(scripts)} ", 1)
        else:
            policy = f"{policy}; script-src {' '.join(scripts)}"
    if ancestors:
        policy = policy.replace("frame-ancestors 'none'", f"frame-ancestors {' '.join(ancestors)}")
    return policy, bool(ancestors)
