"""Shared fixtures of the test_cluster_* modules (queue groups, NATS clusters,
graceful stop, metrics, the service API). Holds no tests.

    import test_cluster_common as cc
    d = cc.instance_dir("s1", big=64 * cc.MIB)   # who.txt says "s1"; big.bin is sparse zeros
    name = cc.who(gw.port)                       # which instance answered (GET /who.txt)
    nodes = cc.routed_cluster(3)                 # 3 nats-servers, cluster ports fixed per test
    m = cc.scrape(port)                          # Prometheus text -> {"name{labels}": value}
"""

from __future__ import annotations

import http.client
import re
import time

import harness
import test_flow_common as fc

MIB = 1024 * 1024
SUBJECT = "grp"


def instance_dir(name: str, big: int = 0) -> "harness.pathlib.Path":
    """A directory of its own for one serve instance: who.txt holds its name,
    big.bin (when big > 0) a sparse file of `big` zero bytes. Give each
    instance a different size, and a download's Content-Length says which
    instance is sending it."""
    d = harness.tmpdir(f"dir-{name}")
    (d / "who.txt").write_text(name + "\n")
    if big:
        fc.zero_file(d / "big.bin", big)
    return d


def get(port: int, path: str, method: str = "GET", timeout: float = 10,
        conn: http.client.HTTPConnection | None = None) -> tuple[int, dict, bytes]:
    """One request: (status, headers with lower-case names, body)."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        if own:
            c.close()


def who(port: int) -> str:
    status, _, body = get(port, "/who.txt")
    if status != 200:
        raise AssertionError(f"GET /who.txt: {status} {body[:200]!r}")
    return body.decode().strip()


def header_value(path, name: str) -> str | None:
    """A header from a `curl -D FILE` dump (the last response in it)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return None
    got = None
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == name.lower():
            got = v.strip()
    return got


def routed_cluster(n: int = 3, name: str = "c") -> list[harness.Nats]:
    """n nats-servers in one cluster, every node routed to every other.

    The cluster listeners get ports picked here (free when picked) and
    written into each node's configuration, so that a node restarted later
    listens where its peers' routes point and the cluster re-forms. Client
    ports are ephemeral at the first start and kept by Nats.restart()."""
    ports = [harness.unused_port() for _ in range(n)]
    nodes = []
    for i in range(n):
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for j, p in enumerate(ports) if j != i)
        conf = (f"server_name: {name}{i}\n"
                f"cluster {{\n  name: {name}\n  listen: \"127.0.0.1:{ports[i]}\"\n"
                f"  routes: [{routes}]\n}}\n")
        nodes.append(harness.Nats(conf, name=f"{name}{i}"))
    wait_meshed(nodes)
    return nodes


def wait_meshed(nodes: list[harness.Nats], timeout: float = 30) -> None:
    for node in nodes:
        harness.wait_until(lambda node=node: node.monitor("routez").get("num_routes", 0)
                           >= len(nodes) - 1, timeout, 0.05,
                           f"{node.name} routed to {len(nodes) - 1} peers")


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {"name{labels}": value}; every line that is
    not a comment must be a sample."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise AssertionError(f"not a Prometheus sample line: {line!r}")
        out[m.group(1)] = float(m.group(2))
    return out


def scrape(port: int) -> dict[str, float]:
    status, headers, body = get(port, "/metrics")
    if status != 200:
        raise AssertionError(f"GET /metrics: {status}")
    if not headers.get("content-type", "").startswith("text/plain; version=0.0.4"):
        raise AssertionError(f"Content-Type {headers.get('content-type')!r}")
    return parse_metrics(body.decode())


def metrics_port(proc: harness.Proc) -> int:
    m = proc.wait_for(r"metrics on http://127\.0\.0\.1:(\d+)/metrics")
    return int(m.group(1))
