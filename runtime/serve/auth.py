"""Who may call the device server: a bearer token on every RPC (but the health check), and the loopback rule.

The token travels as ``authorization: Bearer <token>`` metadata; the scheme name is case-insensitive (RFC 7235
section 2.1), so ``bearer`` and ``BEARER`` work too (:func:`parse_bearer`). A server without a token binds only
loopback addresses (:func:`is_loopback`); the server assembly and the serve command both enforce that.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

import grpc

from firstspike.runtime import wire
from firstspike.runtime.serve.errors import UnauthenticatedError
from firstspike.runtime.serve.jsonlog import event
from firstspike.runtime.serve.status import abort

__all__ = ["TokenInterceptor", "is_loopback", "parse_bearer"]

_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
_OWS = " \t"  # optional white space around a field value (RFC 9110 section 5.6.3)


def parse_bearer(value: str) -> str | None:
    """The token of an ``authorization`` value ``<scheme> 1*SP <token>`` whose scheme is ``Bearer`` in any case
    (RFC 7235: auth-scheme names are case-insensitive); None for any other value (another scheme, no token).
    White space around the value is ignored; the token is returned as sent."""
    scheme, sep, rest = value.strip(_OWS).partition(" ")
    token = rest.lstrip(" ")
    if not sep or not token or scheme.lower() != "bearer":
        return None
    return token


class TokenInterceptor(grpc.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` metadata on every RPC except the health check."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method.startswith(_OPEN_PREFIXES):
            return continuation(handler_call_details)
        got = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == wire.AUTH_KEY:
                got = value if isinstance(value, str) else value.decode("latin-1")
        token = parse_bearer(got)
        # compare_digest runs in time independent of where the tokens differ; a value that is not a bearer
        # credential is compared as an empty token, so it takes the same path
        if hmac.compare_digest((token or "").encode("utf-8", "surrogateescape"), self._expected) and token:
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        missing = not got
        if missing:
            message = "missing bearer token: send metadata 'authorization: Bearer <token>'"
        elif token is None:
            message = "authorization metadata is not a bearer token: send 'authorization: Bearer <token>'"
        else:
            message = "invalid bearer token"
        event(
            logging.WARNING,
            "unauthenticated",
            {"event": "unauthenticated", "rpc": handler_call_details.method, "missing": missing},
        )

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            abort(context, UnauthenticatedError(message))

        # Answer with a handler of the same streaming shape as the real one.
        make = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(bool(handler.request_streaming), bool(handler.response_streaming))]
        return make(deny, handler.request_deserializer, handler.response_serializer)


def is_loopback(host: str) -> bool:
    """True for loopback addresses and 'localhost' (the only hosts served without a token)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
