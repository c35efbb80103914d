"""The real nix client fetches a closure from a binary cache served by
`nats-http serve --dir`, through `nats-http gateway`: nix store ping,
nix path-info -rsS --json, nix copy --from into a fresh store, nix store
verify; with an uncompressed and an xz cache; signatures enforced; a missing
narinfo is a cache miss; a download cut off mid-NAR is resumed with Range;
a truncated or corrupted NAR is refused and never registered.

The commands are those of docs/nix-binary-cache.md."""

import hashlib
import os
import re
import shutil

import harness
import nixenv
from nixenv import NIX


class NixFetchTest(harness.E2ETestCase):
    timeout = 300

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nix = nixenv.Nix("nix-src")
        cls.src = cls.nix.store("src")
        cls.closure = nixenv.make_closure(cls.nix, cls.src)
        cls.keydir = harness.tmpdir("key")
        cls.sec, cls.pub = cls.nix.generate_key(cls.keydir)
        # An uncompressed cache, as in the guide (the xz one is made by its test).
        cls.plain = harness.tmpdir("cache-plain") / "cache"
        cls.nix.ok(NIX, "copy", "--store", cls.src,
                   "--to", f"file://{cls.plain}?compression=none&secret-key={cls.sec}",
                   cls.closure.top)

    def fresh_nix(self, trusted: bool = True) -> nixenv.Nix:
        """An agent: its own state, trusting our key (or not)."""
        conf = f"trusted-public-keys = {self.pub}\n" if trusted else ""
        return nixenv.Nix("nix-agent", extra_conf=conf)

    def start(self, cache, *serve_args, env=None):
        nats = harness.Nats()
        serve = harness.serve(nats, "cache", cache, *serve_args, env=env)
        gw = harness.gateway(nats, "cache")
        return serve, gw

    def assert_fetched(self, agent, store, gw):
        c = self.closure
        r = agent.ok(NIX, "copy", "--from", gw.base, "--to", store, c.top)
        self.assertIn("copying 3 paths", r.err)
        for p in c.paths:
            data = nixenv.file_in_store(store, p).read_bytes()
            self.assertEqual(hashlib.sha256(data).hexdigest(),
                             hashlib.sha256(c.contents[p]).hexdigest(), p)
        r = agent.ok(NIX, "store", "verify", "--store", store, "-r", c.top)
        for p in c.paths:
            self.assertIn(f"checking '{p}'", r.err)
        self.assertNotIn("untrusted", r.err)
        self.assertNotIn("corrupt", r.err)
        got = nixenv.path_info(agent, str(store), c.top, "-r")
        self.assertEqual(sorted(i["path"] for i in got), sorted(c.paths))
        for i in got:
            self.assertEqual(i["narHash"], c.nar_hash(i["path"]))
            self.assertEqual(len(i["signatures"]), 1, i)
            self.assertTrue(i["signatures"][0].startswith(nixenv.KEY_NAME + ":"), i)

    def test_plain_cache(self):
        c = self.closure
        serve, gw = self.start(self.plain)
        agent = self.fresh_nix()

        r = agent.ok(NIX, "store", "ping", "--store", gw.base)
        self.assertIn(f"Store URL: {gw.base}", r.out + r.err)

        info = {i["path"]: i for i in nixenv.path_info(agent, gw.base, c.top, "-rsS")}
        self.assertEqual(sorted(info), sorted(c.paths))
        total = sum(len(c.nars[p]) for p in c.paths)
        for p, i in info.items():
            nar = c.nars[p]
            self.assertEqual(i["narSize"], len(nar), p)
            self.assertEqual(i["narHash"], c.nar_hash(p), p)
            self.assertEqual(i["downloadSize"], len(nar), p)     # uncompressed
            self.assertEqual(i["url"], f"nar/{nixenv.GEN.nix32(hashlib.sha256(nar).digest())}.nar")
            self.assertEqual(sorted(i["references"]), c.refs[p], p)
            self.assertTrue(i["signatures"][0].startswith(nixenv.KEY_NAME + ":"), i)
        self.assertEqual(info[c.top]["closureSize"], total)
        self.assertEqual(info[c.big]["closureSize"], len(c.nars[c.big]))
        self.assertGreater(info[c.big]["narSize"], nixenv.BIG_SIZE)

        # Without our key the paths lack a valid signature: nothing is registered.
        stranger = self.fresh_nix(trusted=False)
        untrusting = stranger.store("untrusting")
        r = stranger.run(NIX, "copy", "--from", gw.base, "--to", untrusting, c.top)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("lacks a valid signature", r.err)
        for p in c.paths:
            self.assertFalse(stranger.registered(untrusting, p), p)

        self.assert_fetched(agent, agent.store("fresh"), gw)
        log = gw.log_text()
        nar = f"nar/{nixenv.GEN.nix32(hashlib.sha256(c.nars[c.big]).digest())}.nar"
        self.assertTrue(harness.access_entries(log, method="GET", target=f"/{nar}", status="200",
                                               out=str(len(c.nars[c.big]))), log)
        self.assertTrue(harness.access_entries(log, method="GET", target="/nix-cache-info",
                                               status="200"), log)

    def test_xz_cache(self):
        c = self.closure
        xz = harness.tmpdir("cache-xz") / "cache"
        self.nix.ok(NIX, "copy", "--store", self.src, "--to", f"file://{xz}?secret-key={self.sec}",
                    c.top)
        nars = sorted((xz / "nar").iterdir())
        self.assertEqual(len(nars), 3)
        self.assertTrue(all(n.name.endswith(".nar.xz") for n in nars), nars)
        serve, gw = self.start(xz)
        agent = self.fresh_nix()
        info = {i["path"]: i for i in nixenv.path_info(agent, gw.base, c.top, "-rsS")}
        self.assertEqual(sorted(info), sorted(c.paths))
        big_xz = max(nars, key=lambda n: n.stat().st_size)
        self.assertEqual(info[c.big]["url"], f"nar/{big_xz.name}")
        self.assertEqual(info[c.big]["downloadSize"], big_xz.stat().st_size)
        self.assertEqual(info[c.big]["narSize"], len(c.nars[c.big]))
        self.assert_fetched(agent, agent.store("fresh-xz"), gw)
        # The compressed bytes crossed untouched (no re-encoding on the way).
        self.assertTrue(harness.access_entries(gw.log_text(), method="GET",
                                               target=f"/nar/{big_xz.name}", status="200",
                                               out=str(big_xz.stat().st_size)))

    def test_missing_narinfo_is_a_cache_miss(self):
        c = self.closure
        # The same cache without big.bin's narinfo (files hard-linked, not copied).
        holey = harness.tmpdir("cache-holey") / "cache"
        shutil.copytree(self.plain, holey, copy_function=os.link)
        big_hash = c.big.split("/")[-1].split("-")[0]
        (holey / f"{big_hash}.narinfo").unlink()
        serve, gw = self.start(holey)
        agent = self.fresh_nix()
        store = agent.store("miss")
        # The path itself missing: nix says it is not there, exits non-zero.
        r = agent.run(NIX, "copy", "--from", gw.base, "--to", store, c.big)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn(f"path '{c.big}' is required, but there is no substituter that can build it",
                      r.err)
        # A reference missing: the path that needs it is not registered either.
        r = agent.run(NIX, "copy", "--from", gw.base, "--to", store, c.top)
        self.assertNotEqual(r.rc, 0, r)
        self.assertFalse(agent.registered(store, c.big))
        self.assertFalse(agent.registered(store, c.top))
        asked = harness.access_entries(gw.log_text(), target=f"/{big_hash}.narinfo")
        self.assertTrue(asked)
        self.assertEqual({e["status"] for e in asked}, {"404"}, asked)

    def test_resume_after_cut(self):
        c = self.closure
        # The server leaves out body piece 20 of every response (a test hook):
        # the gateway sees the gap, cuts the connection mid-NAR (~20 MiB in),
        # and nix asks for the rest with Range; the rest has fewer pieces.
        serve, gw = self.start(self.plain, "--log-level", "debug",
                               env={"NATSHTTP_TEST_DROP_SEQ": "20"})
        agent = self.fresh_nix()
        store = agent.store("resumed")
        r = agent.ok(NIX, "copy", "--from", gw.base, "--to", store, c.top)
        m = re.search(r"retrying from offset (\d+)", r.err)
        self.assertIsNotNone(m, r)
        offset = int(m.group(1))
        size = len(c.nars[c.big])
        self.assertTrue(0 < offset < size, offset)
        nar = f"nar/{nixenv.GEN.nix32(hashlib.sha256(c.nars[c.big]).digest())}.nar"
        log = gw.log_text()
        self.assertTrue(harness.access_entries(log, method="GET", target=f"/{nar}", status="200",
                                               end="broke_off"), log)
        self.assertTrue(harness.access_entries(log, method="GET", target=f"/{nar}", status="206",
                                               out=str(size - offset)), log)
        self.assertRegex(serve.log_text(),
                         rf"GET /{nar} -> 206 \({size - offset} bytes\) range=bytes={offset}-")
        self.assertIn("drop piece 20", serve.log_text())
        data = nixenv.file_in_store(store, c.big).read_bytes()
        self.assertEqual(hashlib.sha256(data).hexdigest(),
                         hashlib.sha256(c.contents[c.big]).hexdigest())
        agent.ok(NIX, "store", "verify", "--store", store, "-r", c.top)

    def test_bad_nar_is_never_registered(self):
        c = self.closure
        big_nar = f"{nixenv.GEN.nix32(hashlib.sha256(c.nars[c.big]).digest())}.nar"
        nar = c.nars[c.big]
        flipped = bytearray(nar)
        flipped[len(nar) // 2] ^= 0x01
        # nix 2.8 says "coroutine has finished" when a NAR stream ends early.
        for what, bad, expect in (("truncated", nar[:len(nar) - 4096],
                                   r"error: (coroutine has finished|.*(unexpected end|truncated))"),
                                  ("corrupted", bytes(flipped),
                                   rf"error: hash mismatch importing path '{c.big}'")):
            with self.subTest(what):
                cache = harness.tmpdir(f"cache-{what}") / "cache"
                shutil.copytree(self.plain, cache, copy_function=os.link)
                (cache / "nar" / big_nar).unlink()   # a link to the good one
                (cache / "nar" / big_nar).write_bytes(bad)
                serve, gw = self.start(cache)
                agent = self.fresh_nix()
                store = agent.store(what)
                r = agent.run(NIX, "copy", "--from", gw.base, "--to", store, c.top)
                self.assertNotEqual(r.rc, 0, r)
                self.assertRegex(r.err, expect)
                self.assertFalse(agent.registered(store, c.big))
                self.assertFalse(agent.registered(store, c.top))
                # (the file may be left in the store directory, invalid, for the GC)
                # The server sent what it had, whole: the refusal is nix's own check.
                self.assertTrue(harness.access_entries(gw.log_text(), method="GET",
                                                       target=f"/nar/{big_nar}", status="200",
                                                       out=str(len(bad))))
                serve.stop(check=True)
                gw.stop(check=True)


if __name__ == "__main__":
    harness.main()
