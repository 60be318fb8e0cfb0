"""Who may call the device server: a bearer token on every RPC (but the health check), and the loopback rule.

A server without a token binds only loopback addresses (:func:`is_loopback`); the server assembly and the serve
command both enforce that.
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

__all__ = ["TokenInterceptor", "is_loopback"]

_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenInterceptor(grpc.ServerInterceptor):
    """Require ``authorization: Bearer <token>`` metadata on every RPC except the health check."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation: Callable, handler_call_details: grpc.HandlerCallDetails) -> Any:
        if handler_call_details.method.startswith(_OPEN_PREFIXES):
            return continuation(handler_call_details)
        got = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == wire.AUTH_KEY:
                got = value if isinstance(value, str) else value.decode("latin-1")
        if hmac.compare_digest(got.encode(), self._expected):
            return continuation(handler_call_details)
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        missing = not got
        message = (
            "missing bearer token: send metadata 'authorization: Bearer <token>'" if missing else "invalid bearer token"
        )
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
