"""The app's web pixel as Shopify's Admin GraphQL API keeps it, for ``responses`` fakes.

Answers take the documented shapes (shopify.dev/docs/api/admin-graphql/latest:
mutations/webPixelCreate and webPixelUpdate, queries/webPixel, objects/
ErrorsWebPixelUserError with its ErrorsWebPixelUserErrorCode): ``settings``
comes back as JSON text, as in the docs' examples; one pixel per app and shop,
a second create is the user error ``TAKEN``. A missing scope is the API's
top-level ``ACCESS_DENIED`` error (shopify.dev/docs/api/usage/access-scopes).
"""

from __future__ import annotations

import json
from typing import Any

#: what the deployed extension declares (extensions/triggerpost-pixel/shopify.extension.toml)
DECLARED = frozenset({"endpoint", "key"})


class WebPixels:
    """One shop's web pixel for our app, and every pixel call made."""

    def __init__(self) -> None:
        self.pixel: dict[str, Any] | None = None
        self.calls: list[str] = []
        #: a user error code to answer the next create with (NO_EXTENSION, ...)
        self.refuse: str | None = None
        #: answer as if the app lacked write_pixels
        self.denied = False

    def handles(self, query: str) -> bool:
        return any(name in query for name in ("WebPixelCreate", "WebPixelUpdate", "query WebPixel"))

    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The whole response body for one pixel query."""
        if "mutation WebPixelCreate" in query:
            self.calls.append("create")
            if self.denied:
                return _access_denied("webPixelCreate")
            return {"data": {"webPixelCreate": self._create(variables["webPixel"]["settings"])}}
        if "mutation WebPixelUpdate" in query:
            self.calls.append("update")
            return {"data": {"webPixelUpdate": self._update(variables)}}
        self.calls.append("read")
        if self.pixel is None:
            return {
                "errors": [
                    {
                        "message": "No web pixel was found for this app.",
                        "extensions": {"code": "NOT_FOUND"},
                        "path": ["webPixel"],
                    }
                ],
                "data": {"webPixel": None},
            }
        return {"data": {"webPixel": self._node()}}

    def _node(self) -> dict[str, Any]:
        assert self.pixel is not None
        return {"id": self.pixel["id"], "settings": json.dumps(self.pixel["settings"])}

    def _create(self, settings: Any) -> dict[str, Any]:
        if self.refuse:
            return _user_error(self.refuse)
        if self.pixel is not None:
            return _user_error("TAKEN")
        if not isinstance(settings, dict) or set(settings) != DECLARED:
            return _user_error("INVALID_SETTINGS")
        self.pixel = {"id": "gid://shopify/WebPixel/5505077", "settings": settings}
        return {"userErrors": [], "webPixel": self._node()}

    def _update(self, variables: dict[str, Any]) -> dict[str, Any]:
        if self.pixel is None or variables["id"] != self.pixel["id"]:
            return _user_error("NOT_FOUND")
        settings = variables["webPixel"]["settings"]
        if not isinstance(settings, dict) or set(settings) != DECLARED:
            return _user_error("INVALID_SETTINGS")
        self.pixel["settings"] = settings
        return {"userErrors": [], "webPixel": self._node()}


MESSAGES = {
    "TAKEN": "Web pixel is taken.",
    "INVALID_SETTINGS": (
        "The provided settings does not match the expected settings definition on the app."
    ),
    "NO_EXTENSION": "No extension found.",
    "NOT_FOUND": "The record with the ID used as the input value couldn't be found.",
}


def _user_error(code: str) -> dict[str, Any]:
    return {
        "userErrors": [{"field": ["webPixel"], "code": code, "message": MESSAGES[code]}],
        "webPixel": None,
    }


def _access_denied(field: str) -> dict[str, Any]:
    return {
        "errors": [
            {
                "message": f"Access denied for {field} field. Required access: `write_pixels` "
                "access scope. Also: The app requires read_customer_events access scope.",
                "locations": [{"line": 3, "column": 3}],
                "extensions": {
                    "code": "ACCESS_DENIED",
                    "documentation": "https://shopify.dev/api/usage/access-scopes",
                    "requiredAccess": "`write_pixels` access scope.",
                },
                "path": [field],
            }
        ],
        "data": {field: None},
    }
