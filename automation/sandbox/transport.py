"""The two ways a request reaches the sandbox: a botocore hook in this process, or loopback HTTP.

Either way the sandbox's own handlers see it first; what they leave (None) goes on to moto.
"""
from __future__ import annotations

import io
import json
import threading
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.handlers import BUILTIN_HANDLERS
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import botocore_stubber

from .wire import AwsRequest, AwsResponse

if TYPE_CHECKING:
    from .core import Sandbox


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    if hasattr(body, "read"):
        position = body.tell() if hasattr(body, "tell") else None
        data = body.read()
        if position is not None:
            body.seek(position)
        return data if isinstance(data, bytes) else data.encode()
    return bytes(body)


class InProcessHook:
    """Registered ahead of moto's own botocore stubber, for every session created from now on."""

    def __init__(self) -> None:
        self.sandbox: Sandbox | None = None

    def __call__(self, event_name: str, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
        if self.sandbox is None:
            return None
        aws_request = AwsRequest(
            method=request.method,
            url=request.url,
            headers={k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()},
            body=_body_bytes(request.body),
        )
        response = self.sandbox.handle(aws_request)
        request.answered_by_sandbox = response is not None  # reset on every attempt: retries reuse the request
        if response is None:
            return None
        return AWSResponse(request.url, response.status, response.headers, MockRawResponse(response.body))


def _moto_unless_answered(event_name: str, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse | None:
    """botocore calls every before-send handler even once one has answered: moto must not also run
    (and act on) a request the sandbox answered."""
    if getattr(request, "answered_by_sandbox", False):
        return None
    return botocore_stubber(event_name, request, **kwargs)


in_process_hook = InProcessHook()
BUILTIN_HANDLERS.insert(0, ("before-send", in_process_hook))
BUILTIN_HANDLERS[BUILTIN_HANDLERS.index(("before-send", botocore_stubber))] = ("before-send", _moto_unless_answered)


SERVICE_CALLS_PATH = "/_sandbox/service-calls"


class WsgiMiddleware:
    """The sandbox in front of moto's server application, one request at a time."""

    def __init__(self, sandbox: Sandbox, moto_app: Any) -> None:
        self.sandbox = sandbox
        self.moto_app = moto_app

    def __call__(self, environ: dict, start_response: Any) -> Any:
        if environ.get("PATH_INFO") == SERVICE_CALLS_PATH:  # the sandbox's own counters, for a remote demo
            body = json.dumps(self.sandbox.service_calls).encode()
            return self._send(AwsResponse(200, body, {"Content-Type": "application/json"}), start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = environ["CONTENT_TYPE"]
        url = f"http://{environ.get('HTTP_HOST', 'localhost')}{environ.get('PATH_INFO', '')}"
        if environ.get("QUERY_STRING"):
            url += "?" + environ["QUERY_STRING"]
        request = AwsRequest(method=environ["REQUEST_METHOD"], url=url, headers=headers, body=body)
        with self.sandbox.lock:
            response = self.sandbox.handle(request)
            if response is None:
                return [b"".join(self.moto_app(environ, start_response))]
        return self._send(response, start_response)

    @staticmethod
    def _send(response: AwsResponse, start_response: Any) -> list[bytes]:
        from http import HTTPStatus

        status = f"{response.status} {HTTPStatus(response.status).phrase}"
        headers = list(response.headers.items()) + [("Content-Length", str(len(response.body)))]
        start_response(status, headers)
        return [response.body]


class HttpServer:
    """moto's server application behind the sandbox, on 127.0.0.1 only."""

    def __init__(self, sandbox: Sandbox, port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per AWS call drowns the demo's own output

        app = WsgiMiddleware(sandbox, DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        # a short poll interval: shutdown() waits up to one interval, once per test
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="sandbox-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
