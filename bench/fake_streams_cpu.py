"""What the fake Streams endpoint (tests/support/fake_streams_server.py) costs in CPU per
GetRecords, so that a scale benchmark knows how much of the machine the fake takes from the
reader it measures.

`python -m bench.fake_streams_cpu [--rate 1000] [--seconds 10] [--shards 1000] [--records 0]
[--latency-ms 0] [--connections 4]`
starts the server as its own process, sends it GetRecords at `rate` a second over a few
keep-alive connections (raw sockets, so that the load costs little itself), and prints the
server's CPU time (time.process_time in the server process, from its /_fake/stats) per
GetRecords. Each call returns `records` records: 0 is an idle shard, the common case.
Needs no database and no Django.
"""

import argparse
import http.client
import json
import socket
import subprocess
import sys
import threading
import time

from bench.common import ROOT

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/fake/stream/2026-01-01T00:00:00.000"


def _call(conn: socket.socket, host: str, target: str, body: dict) -> dict:
    payload = json.dumps(body).encode()
    conn.sendall(
        (f"POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: {target}\r\n"
         f"Content-Type: application/x-amz-json-1.0\r\nContent-Length: {len(payload)}\r\n\r\n").encode() + payload
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    length = int(lengths[0])
    while len(rest) < length:
        rest += conn.recv(65536)
    return json.loads(rest)


def _stats(url: str) -> dict:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("GET", "/_fake/stats")
    stats = json.loads(conn.getresponse().read())
    conn.close()
    return stats


def measure(*, rate: int, seconds: float, shards: int, records: int, latency_ms: float = 0, connections: int = 4) -> dict:
    calls_per_shard = int(rate * seconds * 1.2) // shards + 2
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_streams_server", "--shards", str(shards),
         "--records-per-shard", str(records * calls_per_shard), "--throttle-per-shard-s", "0",
         "--latency-ms", str(latency_ms)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        url = server.stdout.readline().strip()
        host, port = url.removeprefix("http://").split(":")
        setup = socket.create_connection((host, int(port)))
        description = {"StreamArn": ARN}
        shard_ids = []
        while True:
            page = _call(setup, url, "DynamoDBStreams_20120810.DescribeStream", description)["StreamDescription"]
            shard_ids += [shard["ShardId"] for shard in page["Shards"]]
            if "LastEvaluatedShardId" not in page:
                break
            description["ExclusiveStartShardId"] = page["LastEvaluatedShardId"]
        iterators = {}
        for shard_id in shard_ids:
            asked = {"StreamArn": ARN, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"}
            iterators[shard_id] = _call(setup, url, "DynamoDBStreams_20120810.GetShardIterator", asked)["ShardIterator"]
        setup.close()
        before = _stats(url)
        sent = [0] * connections

        def load(index: int) -> None:
            conn = socket.create_connection((host, int(port)))
            mine = shard_ids[index::connections]
            interval = connections / rate
            start = time.monotonic()
            n = 0
            while time.monotonic() - start < seconds:
                shard_id = mine[n % len(mine)]
                response = _call(conn, url, "DynamoDBStreams_20120810.GetRecords",
                                 {"ShardIterator": iterators[shard_id], "Limit": records or 1})
                if records:
                    iterators[shard_id] = response["NextShardIterator"]
                n += 1
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent[index] = n
            conn.close()

        started = time.monotonic()
        threads = [threading.Thread(target=load, args=(i,)) for i in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        after = _stats(url)
    finally:
        server.terminate()
        server.wait(10)
    calls = after["requests"]["GetRecords"] - before["requests"].get("GetRecords", 0)
    cpu = after["process_time_s"] - before["process_time_s"]
    return {
        "get_records": calls,
        "rate_per_s": round(calls / elapsed),
        "records_per_call": records,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_us_per_get_records": round(cpu / calls * 1e6, 1),
        "server_cpu_share_of_one_core": round(cpu / elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--records", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--connections", type=int, default=4, help="keep-alive connections the load is spread over")
    args = parser.parse_args()
    figures = measure(rate=args.rate, seconds=args.seconds, shards=args.shards, records=args.records,
                      latency_ms=args.latency_ms, connections=args.connections)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
