"""The NATS service API (issue 6, item 6): serve answers $SRV.PING,
$SRV.INFO and $SRV.STATS (and the .<name> and .<name>.<id> forms) with the
io.nats.micro.v1 documents; and an error reply of a plain NATS service
(Nats-Service-Error-Code, Nats-Service-Error) becomes that HTTP status with
the error text at the gateway.

    natsraw request $SRV.* -> nats-server -> serve s1, s2 (queue group g)
    curl -> gateway -> nats-server -> natsraw reply (service error headers)
"""

import json
import re

import harness
import peers
import test_cluster_common as cc

VERSION = "0.1.0"


class ServiceApiTest(harness.E2ETestCase):
    timeout = 120

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nats = harness.Nats()
        cls.ids = {}
        for name in ("s1", "s2"):
            p = harness.serve(cls.nats, cc.SUBJECT, cc.instance_dir(name), group="g", name=name)
            cls.ids[name] = re.search(r"service natshttp id (\w+) on \$SRV", p.log_text()).group(1)
        cls.nats.wait_subs("$SRV.PING", 2)

    def ask(self, subject: str, ms: int = 1000) -> list[dict]:
        return [json.loads(m.data) for m in peers.natsraw_request(self.nats, subject, ms=ms)]

    def identity(self, doc: dict, type_: str):
        self.assertEqual(doc["type"], type_)
        self.assertEqual(doc["name"], "natshttp")
        self.assertEqual(doc["version"], VERSION)
        self.assertIn(doc["id"], self.ids.values())
        self.assertEqual(doc["metadata"], {"mode": "dir", "subject": cc.SUBJECT})

    def test_ping(self):
        for subject in ("$SRV.PING", "$SRV.PING.natshttp"):
            with self.subTest(subject):
                docs = self.ask(subject)
                self.assertEqual(sorted(d["id"] for d in docs), sorted(self.ids.values()))
                for d in docs:
                    self.identity(d, "io.nats.micro.v1.ping_response")
                    self.assertEqual(set(d), {"type", "name", "id", "version", "metadata"})
        docs = self.ask(f"$SRV.PING.natshttp.{self.ids['s2']}")
        self.assertEqual([d["id"] for d in docs], [self.ids["s2"]])
        self.assertEqual(self.ask("$SRV.PING.other", ms=500), [])
        self.assertEqual(self.ask("$SRV.PING.natshttp.NOSUCHID", ms=500), [])
        self.assertEqual(self.ask("$SRV.NOSUCHVERB", ms=500), [])

    def test_info(self):
        docs = self.ask(f"$SRV.INFO.natshttp.{self.ids['s1']}")
        self.assertEqual(len(docs), 1)
        d = docs[0]
        self.identity(d, "io.nats.micro.v1.info_response")
        self.assertEqual(d["id"], self.ids["s1"])
        self.assertEqual(d["description"], "HTTP over NATS (nats-http serve)")
        self.assertEqual(d["endpoints"], [{"name": "http", "subject": cc.SUBJECT + ".>",
                                           "queue_group": "g", "metadata": None}])

    def test_stats(self):
        gw = harness.gateway(self.nats, cc.SUBJECT)
        served = {"s1": 0, "s2": 0}
        for _ in range(12):
            served[cc.who(gw.port)] += 1
        errors = 0
        status, _, _ = cc.get(gw.port, "/missing")
        self.assertEqual(status, 404)   # an answer, not an error of the service
        for name in ("s1", "s2"):
            with self.subTest(name):
                docs = self.ask(f"$SRV.STATS.natshttp.{self.ids[name]}")
                self.assertEqual(len(docs), 1)
                d = docs[0]
                self.identity(d, "io.nats.micro.v1.stats_response")
                self.assertRegex(d["started"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
                (ep,) = d["endpoints"]
                self.assertEqual((ep["name"], ep["subject"], ep["queue_group"]),
                                 ("http", cc.SUBJECT + ".>", "g"))
                self.assertIn(ep["num_requests"], (served[name], served[name] + 1))
                errors += ep["num_errors"]
                self.assertEqual(ep["last_error"], "")
                self.assertGreater(ep["processing_time"], 0)
                self.assertEqual(ep["average_processing_time"],
                                 ep["processing_time"] // ep["num_requests"])
        self.assertEqual(errors, 0)
        docs = self.ask("$SRV.STATS")
        self.assertEqual(len(docs), 2)
        total = sum(d["endpoints"][0]["num_requests"] for d in docs)
        self.assertEqual(total, 13, (served, docs))


class ServiceOptionsTest(harness.E2ETestCase):
    timeout = 60

    def test_name_and_off(self):
        nats = harness.Nats()
        rc, _, err = harness.nats_http("serve", "--subject", "x", "--dir", ".", "--server",
                                       nats.url, "--service-name", "bad name", timeout=20)
        self.assertEqual(rc, 2)
        self.assertIn("--service-name wants letters, digits, '-' and '_' only", err)
        harness.serve(nats, "x", cc.instance_dir("s1"), "--service-name", "cache-1", name="s1")
        harness.serve(nats, "y", cc.instance_dir("s2"), "--service-name", "", name="s2")
        nats.wait_subs("$SRV.PING", 1)
        docs = [json.loads(m.data) for m in peers.natsraw_request(nats, "$SRV.PING", ms=1000)]
        self.assertEqual([d["name"] for d in docs], ["cache-1"])
        self.assertEqual(nats.subs_matching("$SRV.PING"), 1)


class ServiceErrorTest(harness.E2ETestCase):
    """A micro-style error reply from a plain NATS service, at the gateway."""
    timeout = 60

    def check(self, headers, want_status: int, want_body: bytes):
        nats = harness.Nats()
        peers.natsraw_reply(nats, "plain.>", headers=headers, data="")
        nats.wait_subs("plain.x", 1)
        gw = harness.gateway(nats, "plain")
        status, hdrs, body = cc.get(gw.port, "/thing")
        self.assertEqual(status, want_status)
        self.assertEqual(body, want_body)
        self.assertEqual(hdrs["content-type"], "text/plain; charset=utf-8")
        self.assertEqual(hdrs["content-length"], str(len(want_body)))
        status, hdrs, body = cc.get(gw.port, "/thing", method="HEAD")
        self.assertEqual((status, body), (want_status, b""))

    def test_404_with_text(self):
        self.check(["Nats-Service-Error-Code: 404", "Nats-Service-Error: no such thing"], 404,
                   b"no such thing\n")

    def test_503_with_text(self):
        self.check(["Nats-Service-Error-Code: 503", "Nats-Service-Error: busy, try later"], 503,
                   b"busy, try later\n")

    def test_code_that_is_no_http_status(self):
        self.check(["Nats-Service-Error-Code: 42", "Nats-Service-Error: odd"], 502, b"odd\n")


if __name__ == "__main__":
    harness.main()
