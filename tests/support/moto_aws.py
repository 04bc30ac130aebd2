"""moto's server, for the AWS services that DynamoDB Local does not have (Lambda, IAM, SQS, SNS,
STS), and for tables whose streams Lambda can map (moto's own DynamoDB).

The server runs in a thread of the test process (ThreadedMotoServer) on a free port of
127.0.0.1, and is reached through boto3's standard endpoint variables (AWS_ENDPOINT_URL_LAMBDA
and the like) or a source's endpoint_url, as a deployment would point at AWS. moto keeps its
state and its settings in module globals of this process: `moto_server` puts the settings it
changes back, and `moto_api(endpoint, "reset", {})` empties every backend.
"""

import io
import json
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import boto3

from tests.support.dynamodb_local import free_port

# moto's fixed account, in every ARN it makes.
ACCOUNT = "123456789012"


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server, running while the block runs; yields its endpoint, http://127.0.0.1:PORT.

    There is no Docker here, so its Lambda backend is the Docker-less one
    ({"lambda": {"use_docker": False}}), whose Invoke answers without running any code: with
    the results queued through /moto-api/static/lambda-simple/response, then with the event it
    was sent."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    moto_api(endpoint, "config", {"lambda": {"use_docker": False}})
    try:
        yield endpoint
    finally:
        # moto keeps its config in a module global of this process: put the defaults back.
        moto_api(endpoint, "config", {"lambda": {"use_docker": True}})
        _reset_auth(endpoint, "inf")
        server.stop()


def moto_api(endpoint: str, path: str, document: dict) -> None:
    """POST a JSON document to moto's own API, /moto-api/<path> (config, reset, static/...)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/{path}", data=json.dumps(document).encode(), method="POST")
    urllib.request.urlopen(request, timeout=10).close()


def _reset_auth(endpoint: str, after: str) -> None:
    # INITIAL_NO_AUTH_ACTION_COUNT: moto checks signatures and IAM policies once this many
    # requests have been answered ("inf": never). The body is the number as text; a form content
    # type would leave it unread.
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=after.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request, timeout=10).close()


@contextmanager
def iam_enforced(endpoint: str) -> Iterator[None]:
    """While the block runs, moto authenticates every request and allows only what the
    caller's IAM policies allow, as AWS does; an action no policy allows is answered with 403
    AccessDenied ("User: arn:aws:iam::123456789012:user/NAME is not authorized to perform:
    lambda:ListEventSourceMappings").

    moto 5.2.5 computes the signature of a request without a body (every GET of the Lambda API)
    over its parsed query parameters instead of the empty body that was signed, and so refuses
    each such request with SignatureDoesNotMatch before it looks at any policy
    (moto/iam/access_control.py, IAMRequestBase._create_aws_request: `data=self._body or
    self._data`; getmoto/moto#9580 fixed the same for JSON bodies). For as long as the block
    runs, the signature is computed over the body as sent, so that the policies decide.
    """
    from botocore.awsrequest import AWSRequest
    from moto.iam.access_control import IAMRequestBase

    def create_aws_request(self) -> AWSRequest:
        signed = self._get_string_between("SignedHeaders=", ",", self._headers["Authorization"]).split(";")
        headers = self._create_headers_for_aws_request(signed, self._headers)
        request = AWSRequest(method=self._method, url=self._path, data=self._body, headers=headers)
        request.context["timestamp"] = headers["X-Amz-Date"]
        return request

    original = IAMRequestBase._create_aws_request
    IAMRequestBase._create_aws_request = create_aws_request
    _reset_auth(endpoint, "0")
    try:
        yield
    finally:
        _reset_auth(endpoint, "inf")
        IAMRequestBase._create_aws_request = original


def iam_user_create(endpoint: str, *, name: str, actions: list[str]) -> dict[str, str]:
    """An IAM user allowed `actions` on every resource; returns its credentials as the
    environment names them ({"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...})."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
    iam.create_user(UserName=name)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def lambda_function_create(endpoint: str, name: str, *, region: str | None = None) -> str:
    """A function whose code would echo its event (moto's Docker-less backend never runs it),
    with an IAM role of its own, in `region` (boto3's default region when None); returns its ARN."""
    iam = boto3.client("iam", endpoint_url=endpoint, region_name=region)
    role = iam.create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handle(event, context):\n    return event\n")
    created = boto3.client("lambda", endpoint_url=endpoint, region_name=region).create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="handler.handle", Code={"ZipFile": code.getvalue()}
    )
    return created["FunctionArn"]
