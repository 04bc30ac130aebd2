"""The DynamoDB, DynamoDB Streams and Lambda clients, and what their errors mean to us.

Endpoints come from boto3's standard variables (AWS_ENDPOINT_URL_DYNAMODB,
AWS_ENDPOINT_URL_DYNAMODB_STREAMS, AWS_ENDPOINT_URL_LAMBDA, or AWS_ENDPOINT_URL for all)
unless a source names its own DynamoDB endpoint, so pointing at real AWS needs no code change.
"""

import enum
import os
import threading

import boto3
import botocore.config
import botocore.exceptions
import orjson

# Fail fast: a hung endpoint must cost one short poll, not a worker for a minute. Throttling
# is retried by our own scheduler with backoff, so botocore only retries once.
_CONFIG = botocore.config.Config(
    connect_timeout=3,
    read_timeout=10,
    retries={"mode": "standard", "total_max_attempts": 2},
    # A reader has up to SHARDWATCH_READER_THREADS (at most 64) calls in flight on one client;
    # below that, urllib3 would drop and reopen connections.
    max_pool_connections=64,
)

_clients: dict = {}
_lock = threading.Lock()


def _client(service: str, *, region: str, endpoint_url: str = ""):
    key = (service, region, endpoint_url)
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = boto3.session.Session().client(
                    service, region_name=region, endpoint_url=endpoint_url or None, config=_CONFIG
                )
                if service == "dynamodbstreams":
                    client.meta.events.register("before-parse.dynamodb-streams.GetRecords", _records_as_sent)
                _clients[key] = client
    return client


def dynamodb_client(*, region: str, endpoint_url: str = ""):
    return _client("dynamodb", region=region, endpoint_url=endpoint_url)


def streams_client(*, region: str, endpoint_url: str = ""):
    return _client("dynamodbstreams", region=region, endpoint_url=endpoint_url)


# The Lambda client only looks up event source mappings (streams.consumers), in the background
# and every few minutes: a slow or unreachable Lambda endpoint must cost discovery seconds, not a
# minute. One attempt: a look-up that fails is tried again at the next one.
_LAMBDA_CONFIG = botocore.config.Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "total_max_attempts": 1},
)


def lambda_client(*, region: str):
    """A Lambda client for `region`, at the endpoint of AWS_ENDPOINT_URL_LAMBDA or
    AWS_ENDPOINT_URL when set (boto3 reads them itself), else at AWS.

    A source's endpoint_url is its DynamoDB's and says nothing of Lambda's. The variables are
    part of the cache key, so that a changed variable takes effect, as in
    workers/targets/lambda_.py."""
    key = ("lambda", region, os.environ.get("AWS_ENDPOINT_URL_LAMBDA"), os.environ.get("AWS_ENDPOINT_URL"))
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = boto3.session.Session().client("lambda", region_name=region, config=_LAMBDA_CONFIG)
                _clients[key] = client
    return client


def _records_as_sent(response_dict, customized_response_dict, **kwargs):
    """GetRecords records exactly as the service sent them, instead of botocore's model-driven
    parse of every attribute value.

    Shardwatch keeps the stream's typed JSON as sent (binary as base64), so botocore's parse
    is work undone straight after: decoding base64 to bytes, epoch seconds to datetimes. It
    also costs more than everything else on the ingest path together. Error responses are
    left to botocore, so exceptions stay the ones boto3 documents.
    """
    if response_dict.get("status_code") != 200:
        return
    body = orjson.loads(response_dict["body"])
    customized_response_dict["Records"] = body.get("Records", [])
    if body.get("NextShardIterator"):
        customized_response_dict["NextShardIterator"] = body["NextShardIterator"]
    response_dict["body"] = b"{}"


def forget_clients() -> None:
    """Drop cached clients, so that changed credentials or endpoints take effect."""
    with _lock:
        _clients.clear()


class Failure(enum.Enum):
    EXPIRED_ITERATOR = "expired_iterator"
    TRIMMED = "trimmed"
    THROTTLED = "throttled"
    NOT_FOUND = "not_found"
    UNREACHABLE = "unreachable"
    DENIED = "denied"
    OTHER = "other"


_CODES = {
    "ExpiredIteratorException": Failure.EXPIRED_ITERATOR,
    "TrimmedDataAccessException": Failure.TRIMMED,
    "LimitExceededException": Failure.THROTTLED,
    "ThrottlingException": Failure.THROTTLED,
    "ProvisionedThroughputExceededException": Failure.THROTTLED,
    "RequestLimitExceeded": Failure.THROTTLED,
    "InternalServerError": Failure.THROTTLED,
    "ServiceUnavailable": Failure.THROTTLED,
    "ResourceNotFoundException": Failure.NOT_FOUND,
    "UnrecognizedClientException": Failure.DENIED,
    "InvalidSignatureException": Failure.DENIED,
    "AccessDeniedException": Failure.DENIED,
    "ExpiredTokenException": Failure.DENIED,
    "MissingAuthenticationTokenException": Failure.DENIED,
}


def classify(exc: Exception) -> Failure:
    if isinstance(exc, botocore.exceptions.ClientError):
        failure = _CODES.get(exc.response.get("Error", {}).get("Code", ""), Failure.OTHER)
        # AWS answers an identity that may not do something with 403 (Lambda's
        # AccessDeniedException, IAM's AccessDenied, InvalidClientTokenId, SignatureDoesNotMatch).
        # An error body botocore cannot parse leaves no code but that status.
        if failure is Failure.OTHER and exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403:
            return Failure.DENIED
        return failure
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError)):
        return Failure.UNREACHABLE
    if isinstance(exc, (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError,
                        botocore.exceptions.NoRegionError, botocore.exceptions.ProfileNotFound)):
        return Failure.DENIED
    return Failure.OTHER


AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def error_code(exc: Exception) -> str:
    """A short, stable name for a failed call, for the poll-errors metric's `error` label: AWS's
    error code for a ClientError (ThrottlingException, TrimmedDataAccessException, ...), else
    the exception's class name (EndpointConnectionError, ReadTimeoutError, ...). Both come from
    small fixed sets, so the label stays bounded."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code:
            return code[:64]
    return type(exc).__name__[:64]


def describe(exc: Exception) -> str:
    """The AWS error as a user should read it: code and message, no traceback."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', str(exc))}"
    return f"{type(exc).__name__}: {exc}"


def client_install(*, service: str, region: str, endpoint_url: str = "", client) -> None:
    """Use this client for (service, region, endpoint). For tests that stand in a fake or a
    botocore Stubber where DynamoDB Local cannot play the part (several shards)."""
    with _lock:
        _clients[(service, region, endpoint_url)] = client
