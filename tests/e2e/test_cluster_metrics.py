"""Metrics (issue 6, item 6): `--metrics ADDR:PORT` on the gateway and on
serve, Prometheus text format, scraped after known traffic; every count is
checked exactly.

    curl -> gateway (--metrics) -> nats-server -> serve --dir (--metrics)
"""

import http.client

import harness
import test_cluster_common as cc

NOT_FOUND_PATH = "/missing.txt"


class MetricsTest(harness.E2ETestCase):
    timeout = 120

    def test_counts_after_known_traffic(self):
        nats = harness.Nats()
        d = cc.instance_dir("s1")
        (d / "k.bin").write_bytes(bytes(range(256)) * 40)   # 10240 bytes
        serve = harness.serve(nats, cc.SUBJECT, d, "--metrics", "127.0.0.1:0", name="s1")
        gw = harness.gateway(nats, cc.SUBJECT, "--metrics", "127.0.0.1:0")
        gport, sport = cc.metrics_port(gw), cc.metrics_port(serve)

        before = cc.scrape(gport)
        self.assertEqual(before["natshttp_requests_in_flight"], 0)
        self.assertEqual(before["natshttp_request_duration_seconds_count"], 0)
        self.assertEqual(before["natshttp_nats_connected"], 1)
        self.assertEqual(before["natshttp_nats_reconnects_total"], 0)
        self.assertFalse([k for k in before if k.startswith("natshttp_requests_total{")])

        c = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        sent_out = 0
        for _ in range(5):
            status, _, body = cc.get(gw.port, "/k.bin", conn=c)
            self.assertEqual((status, len(body)), (200, 10240))
            sent_out += len(body)
        for _ in range(3):
            status, _, body = cc.get(gw.port, NOT_FOUND_PATH, conn=c)
            self.assertEqual(status, 404)
            sent_out += len(body)
        for _ in range(2):
            status, headers, body = cc.get(gw.port, "/k.bin", method="HEAD", conn=c)
            self.assertEqual((status, body, headers["content-length"]), (200, b"", "10240"))
        # An upload of 1000 bytes: serve --dir refuses PUT (405).
        c.request("PUT", "/k.bin", body=b"x" * 1000)
        r = c.getresponse()
        body = r.read()
        self.assertEqual(r.status, 405)
        sent_out += len(body)
        c.close()

        for name, port in (("gateway", gport), ("serve", sport)):
            with self.subTest(name):
                # A request is counted once its exchange is over, which may be
                # a moment after the client has read the whole response.
                harness.wait_until(lambda port=port: cc.scrape(port)
                                   ["natshttp_request_duration_seconds_count"] >= 11, 10, 0.02,
                                   f"{name} counted 11 requests")
                m = cc.scrape(port)
                codes = {k: v for k, v in m.items() if k.startswith("natshttp_requests_total{")}
                self.assertEqual(codes, {'natshttp_requests_total{code="200"}': 7,
                                         'natshttp_requests_total{code="404"}': 3,
                                         'natshttp_requests_total{code="405"}': 1})
                self.assertEqual(m["natshttp_response_body_bytes_total"], sent_out)
                self.assertEqual(m["natshttp_request_body_bytes_total"], 1000)
                self.assertEqual(m["natshttp_requests_in_flight"], 0)
                self.assertEqual(m["natshttp_transfers_aborted_total"], 0)
                self.assertEqual(m["natshttp_request_duration_seconds_count"], 11)
                self.assertEqual(m['natshttp_request_duration_seconds_bucket{le="+Inf"}'], 11)
                buckets = [v for k, v in m.items()
                           if k.startswith("natshttp_request_duration_seconds_bucket")]
                self.assertEqual(buckets, sorted(buckets), "buckets are cumulative")
                self.assertGreater(m["natshttp_request_duration_seconds_sum"], 0)

        # A reconnect is counted.
        nats.restart()
        for proc, port in ((gw, gport), (serve, sport)):
            proc.wait_for(r"reconnected to NATS")
            harness.wait_until(lambda port=port: cc.scrape(port)["natshttp_nats_connected"] == 1,
                               10, 0.05, "connected again")
            self.assertEqual(cc.scrape(port)["natshttp_nats_reconnects_total"], 1)

        # Only GET /metrics.
        status, _, _ = cc.get(gport, "/other")
        self.assertEqual(status, 404)
        status, _, _ = cc.get(gport, "/metrics", method="POST")
        self.assertEqual(status, 405)

    def test_bad_metrics_address(self):
        nats = harness.Nats()
        rc, _, err = harness.nats_http("gateway", "--subject", "x", "--server", nats.url,
                                       "--listen", "127.0.0.1:0", "--metrics", "nowhere",
                                       timeout=20)
        self.assertEqual(rc, 1)
        self.assertIn("--metrics wants ADDR:PORT, not 'nowhere'", err)


if __name__ == "__main__":
    harness.main()
