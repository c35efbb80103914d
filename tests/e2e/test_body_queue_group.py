"""BR-29: the chunks of one request body reach one responder. Two
echo_responder instances share a queue group behind one gateway; 50 PUTs of
10 MiB of distinct random data, 4 at a time: every one arrives whole and in
order at exactly one instance (its SHA-256 matches), both instances serve
some, and the request subject carries 50 first messages, not fragments.

    curl x4 -> nats-http gateway -> nats-server -> echo_responder e1 | e2 (queue group g)
"""

import collections
import concurrent.futures
import time

import harness
import peers

COUNT = 50
SIZE = 10 * 1024 * 1024


class QueueGroupUploadTest(harness.E2ETestCase, peers.UploadChecks):
    timeout = 240
    gateway_args: tuple = ()     # default: v2 with peers that speak it

    def test_BR29_50_uploads_two_instances(self):
        nats = harness.Nats()
        peers.echo(nats, "subj", group="g", instance="e1", name="echo-e1")
        peers.echo(nats, "subj", group="g", instance="e2", name="echo-e2")
        nats.wait_subs("subj.PUT.upload", 2)
        self.gw = harness.gateway(nats, "subj", *self.gateway_args)
        listen = peers.natsraw_listen(nats, "subj.>", ms=200000)
        files = harness.tmpdir("uploads")

        def one(i: int):
            f = files / f"u{i}.bin"
            sha = harness.make_random_file(f, SIZE, seed=1000 + i)
            status, echoed = self.curl_upload(f"/upload/{i}", f, "PUT", chunked=(i % 5 == 4))
            f.unlink()
            return i, sha, status, echoed

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(COUNT)))

        served = collections.Counter()
        for i, sha, status, echoed in results:
            with self.subTest(upload=i):
                self.assertEqual(status, 200)
                self.assertEqual(echoed["path"], f"/upload/{i}")
                self.assertEqual(echoed["length"], SIZE)
                self.assertEqual(echoed["sha256"], sha)
                self.assertEqual(echoed["complete"], True)
            served[echoed["instance"]] += 1
        self.assertEqual(sum(served.values()), COUNT)
        self.assertEqual(sorted(served), ["e1", "e2"], served)
        self.assertGreater(served["e1"], 0)
        self.assertGreater(served["e2"], 0)
        # The request subject saw one first message per upload; every other
        # chunk went to the private subject of the instance that took it.
        harness.wait_until(lambda: len(peers.listened(listen)) >= COUNT, 20, 0.05,
                           f"{COUNT} messages on subj.>")
        time.sleep(0.3)
        msgs = peers.listened(listen)
        self.assertEqual(sorted(m.subject for m in msgs),
                         sorted(f"subj.PUT.upload.{i}" for i in range(COUNT)))
        self.assertEqual(int(nats.varz()["slow_consumers"]), 0)


class QueueGroupUploadTestV1(QueueGroupUploadTest):
    """The same with the gateway speaking protocol v1 only."""
    gateway_args = ("--protocol", "1")


if __name__ == "__main__":
    harness.main()
