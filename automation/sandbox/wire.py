"""One AWS request as the sandbox sees it, whichever transport brought it, and AWS-shaped errors.

Both transports (the in-process botocore hook and the loopback HTTP server) turn what they
receive into an `AwsRequest`, so every emulated behaviour is written once.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qs, urlsplit

_CREDENTIAL_SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass
class AwsResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AwsRequest:
    method: str
    url: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @cached_property
    def _scope(self) -> tuple[str, str, str]:
        match = _CREDENTIAL_SCOPE.search(self.headers.get("authorization", ""))
        return match.groups() if match else ("", "", "")

    @property
    def access_key(self) -> str:
        return self._scope[0]

    @property
    def region(self) -> str:
        return self._scope[1]

    @property
    def service(self) -> str:
        """The SigV4 signing name: 'ec2', 'sqs', 'mgn', ..."""
        return self._scope[2]

    @cached_property
    def path(self) -> str:
        return urlsplit(self.url).path

    @cached_property
    def account_id(self) -> str:
        # moto maps access keys to accounts (assumed-role keys act as the role's account).
        from moto.iam.models import get_account_id_from

        return get_account_id_from(self.access_key)

    @cached_property
    def form(self) -> dict[str, str]:
        """Query-protocol parameters (EC2): from the body, or the URL for GETs."""
        raw = self.body.decode() if self.body else urlsplit(self.url).query
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    @cached_property
    def json(self) -> dict:
        if not self.body:
            return {}
        return json.loads(self.body)

    @cached_property
    def action(self) -> str:
        """The operation name, whatever the protocol."""
        target = self.headers.get("x-amz-target")
        if target:  # json protocol: "AmazonSQS.SendMessage"
            return target.rsplit(".", 1)[-1]
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded") or (
            self.method == "GET" and "Action=" in self.url
        ):
            return self.form.get("Action", "")
        return self.path.strip("/").split("/")[0]  # rest-json: POST /DescribeJobs


def request_id() -> str:
    return str(uuid.uuid4())


def ec2_error(code: str, message: str, status: int = 400) -> AwsResponse:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"</Error></Errors><RequestID>{request_id()}</RequestID></Response>"
    )
    return AwsResponse(status, body.encode(), {"Content-Type": "text/xml"})


def json_error(code: str, message: str, status: int = 400, query_code: str | None = None) -> AwsResponse:
    """awsJson1_0 error (SQS). `query_code` is the legacy code SQS also sends in a header."""
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": request_id()}
    if query_code:
        headers["x-amzn-query-error"] = f"{query_code};Sender"
    body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
    return AwsResponse(status, body, headers)


def rest_json_error(code: str, message: str, status: int = 400, **fields: object) -> AwsResponse:
    """restJson1 error (MGN). `fields` are the error shape's other members (reason, errors, ...)."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": request_id()}
    return AwsResponse(status, json.dumps({"message": message, **fields}).encode(), headers)


def json_response(payload: dict, content_type: str = "application/json") -> AwsResponse:
    return AwsResponse(200, json.dumps(payload, default=str).encode(),
                       {"Content-Type": content_type, "x-amzn-RequestId": request_id()})


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
