"""Streaming responses stream through serve --upstream (issue 3, item 8), and
many requests share one curl thread (item 4)."""

import json
import re
import socket
import statistics
import threading
import time

import harness
from test_upstream_common import Upstream, UpstreamStack, build_request, curl_full


def timed_events(port: int, target: str, timeout: float = 20):
    """GET target over a raw socket; [(arrival time, event dict)] as each event completes.

    Decodes the chunked coding (or takes the body as it comes) incrementally, so
    an event is timed when its last byte is read, not when the response ends.
    """
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(build_request("GET", target, [("Accept", "text/event-stream"),
                                            ("Connection", "close")]))
    raw = b""
    head = None
    chunked = False
    body = b""
    events = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            data = s.recv(65536)
            now = time.time()
            if not data:
                break
            raw += data
            if head is None:
                end = raw.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = raw[:end].decode("latin-1")
                chunked = re.search(r"(?im)^transfer-encoding:.*chunked", head) is not None
                raw = raw[end + 4:]
            if chunked:
                while True:
                    eol = raw.find(b"\r\n")
                    if eol < 0:
                        break
                    size = int(raw[:eol].split(b";")[0] or b"0", 16)
                    if len(raw) < eol + 2 + size + 2:
                        break
                    body += raw[eol + 2:eol + 2 + size]
                    raw = raw[eol + 2 + size + 2:]
                    if size == 0:
                        break
            else:
                body += raw
                raw = b""
            while b"\n\n" in body:
                ev, body = body.split(b"\n\n", 1)
                m = re.search(rb"^data: (.*)$", ev, re.M)
                if m:
                    events.append((now, json.loads(m.group(1))))
    finally:
        s.close()
    return head, events


class SseTest(harness.E2ETestCase):
    timeout = 60

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.st = UpstreamStack()

    def measure(self, port, n=10, interval=0.2):
        head, events = timed_events(port, f"/up/sse?n={n}&interval={interval}")
        self.assertIsNotNone(head)
        self.assertRegex(head, r"^HTTP/1\.1 200")
        self.assertEqual([e["seq"] for _, e in events], list(range(n)))
        lat = [arrived - e["t"] for arrived, e in events]
        # each event is read before the upstream sends the next one
        for i in range(n - 1):
            self.assertLess(events[i][0], events[i + 1][1]["t"],
                            f"event {i} arrived after event {i + 1} was sent")
        return lat

    def test_sse_each_event_arrives_before_the_next_is_sent(self):
        lat = self.measure(self.st.port)
        direct = self.measure(self.st.upstream.port)
        print(f"\nSSE latency, 10 events 200 ms apart, upstream send -> client read: "
              f"through gateway/NATS/serve median {statistics.median(lat) * 1000:.1f} ms, "
              f"max {max(lat) * 1000:.1f} ms; straight to the upstream median "
              f"{statistics.median(direct) * 1000:.1f} ms, max {max(direct) * 1000:.1f} ms",
              flush=True)
        self.assertLess(max(lat), 0.100, [round(x * 1000, 1) for x in lat])

    def test_sse_v1_peers_stream_too(self):
        st = UpstreamStack(nats=self.st.nats, upstream=self.st.upstream, subject="up1",
                           serve_args=["--protocol", "1"], gateway_args=["--protocol", "1"])
        lat = self.measure(st.port)
        print(f"\nSSE latency (v1 peers): median {statistics.median(lat) * 1000:.1f} ms, "
              f"max {max(lat) * 1000:.1f} ms", flush=True)
        self.assertLess(max(lat), 0.100, [round(x * 1000, 1) for x in lat])

    def test_chunked_with_pauses_arrives_part_by_part(self):
        d = harness.tmpdir("trace")
        t0 = time.time()
        # curl -N writes each part as it comes; the trace gives the times
        rc, out, err = harness.curl("-N", "--trace-time", "--trace-ascii", d / "trace",
                                    self.st.base + "/up/chunked?n=5&size=10&pause=0.4")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, b"".join(bytes([0x41 + i]) * 10 for i in range(5)))
        times = [l for l in (d / "trace").read_text().splitlines() if "<= Recv data" in l]
        self.assertGreaterEqual(len(times), 5, times)
        self.assertGreater(time.time() - t0, 1.5)


class ConcurrencyTest(harness.E2ETestCase):
    timeout = 90

    def test_many_slow_requests_at_once_on_fixed_threads(self):
        st = UpstreamStack(serve_args=["--upstream-max-conns", "64"],
                           gateway_args=["--threads", "4"])
        # warm up, then count the threads of serve
        self.assertEqual(curl_full(st.base + "/warm")[0], 0)
        threads_before = st.serve.threads()
        results = []
        lock = threading.Lock()

        def one(i):
            r = curl_full(st.base + f"/up/slow-head?delay=1&i={i}")
            with lock:
                results.append(r)

        peak = [0]
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                peak[0] = max(peak[0], st.serve.threads() or 0)
                time.sleep(0.05)

        w = threading.Thread(target=watch)
        w.start()
        t0 = time.monotonic()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        took = time.monotonic() - t0
        stop.set()
        w.join()
        self.assertEqual(len(results), 40)
        for rc, resp, body, err in results:
            self.assertEqual((rc, resp.status, body), (0, 200, b"late\n"), err)
        print(f"\n40 requests each held 1 s by the upstream: {took:.2f} s in all; serve threads "
              f"{threads_before} before, peak {peak[0]} during", flush=True)
        self.assertLess(took, 6)
        self.assertEqual(peak[0], threads_before, "a thread per request?")

    def test_max_conns_queues_beyond_the_limit(self):
        st = UpstreamStack(serve_args=["--upstream-max-conns", "2"])
        before = st.upstream.stats()["connections"]
        results = []

        def one(i):
            results.append(curl_full(st.base + f"/up/slow-head?delay=0.5&i={i}"))

        t0 = time.monotonic()
        ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        took = time.monotonic() - t0
        for rc, resp, body, err in results:
            self.assertEqual((rc, resp.status), (0, 200), err)
        used = st.upstream.stats()["connections"] - before - 1   # not the stats call
        self.assertLessEqual(used, 2)
        self.assertGreater(took, 1.3)   # 6 requests, 2 at a time, 0.5 s each


if __name__ == "__main__":
    harness.main()
