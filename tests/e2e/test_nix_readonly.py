"""The read-only deployment of docs/nix-binary-cache.md, section 5: NATS
users whose permissions allow only `cache.GET.>` and `cache.HEAD.>` fetch
with nix; their PUT is refused by the NATS server (the gateway answers 403)
even though the file server is --writable; a publisher allowed `cache.PUT.>`
uploads.

Needs the method-first ("native") subject layout, `<prefix>.<METHOD>.<path>`;
until nats-http has it (serve --help lists --layout) the module is skipped,
which CTest reports as skipped, not passed."""

import subprocess
import unittest

import harness
import nixenv
from nixenv import NIX

PASSWORDS = {"cache-server": "s3rver-pw", "agent": "ag3nt-pw", "publisher": "publ1sher-pw"}

# The nats-server.conf of the guide, with the test's passwords.
NATS_CONF = """
authorization {
  users = [
    { user: cache-server, password: "%(cache-server)s",
      permissions: { subscribe: ["cache.>", "_INBOX.>"], publish: ["_INBOX.>"] } }
    { user: agent, password: "%(agent)s",
      permissions: { publish: ["cache.GET.>", "cache.HEAD.>", "_INBOX.>"], subscribe: ["_INBOX.>"] } }
    { user: publisher, password: "%(publisher)s",
      permissions: { publish: ["cache.GET.>", "cache.HEAD.>", "cache.PUT.>", "_INBOX.>"],
                     subscribe: ["_INBOX.>"] } }
  ]
}
""" % PASSWORDS


def native_layout() -> bool:
    r = subprocess.run([harness.BIN, "serve", "--help"], capture_output=True, text=True)
    return "--layout" in r.stdout


@unittest.skipUnless(nixenv.available(), "nix (Debian package nix-bin) is not installed")
@unittest.skipUnless(native_layout(), "nats-http has no method-first subject layout yet")
class NixReadOnlyTest(harness.E2ETestCase):
    timeout = 300

    def test_agents_read_publishers_write(self):
        src_nix = nixenv.Nix("nix-publisher")
        src = src_nix.store("src")
        c = nixenv.make_closure(src_nix, src)
        sec, pub = src_nix.generate_key(harness.tmpdir("key"))
        cache = harness.tmpdir("cache") / "cache"
        src_nix.ok(NIX, "copy", "--store", src, "--to", f"file://{cache}?compression=none&secret-key={sec}",
                   c.small)

        nats = harness.Nats(NATS_CONF)
        url = {u: nats.client_url(u, p) for u, p in PASSWORDS.items()}
        harness.serve(url["cache-server"], "cache", cache, "--writable", "/")
        agent_gw = harness.gateway(url["agent"], "cache")
        publisher_gw = harness.gateway(url["publisher"], "cache")

        agent = nixenv.Nix("nix-agent", extra_conf=f"trusted-public-keys = {pub}\n")
        store = agent.store("agent")
        agent.ok(NIX, "store", "ping", "--store", agent_gw.base)
        agent.ok(NIX, "copy", "--from", agent_gw.base, "--to", store, c.small)
        agent.ok(NIX, "store", "verify", "--store", store, "-r", c.small)
        self.assertEqual(nixenv.file_in_store(store, c.small).read_bytes(), c.contents[c.small])

        before = nixenv.cache_files(cache)
        # The agent may not write, whatever its gateway is told to do.
        r = agent.run(NIX, "copy", "--store", src, "--to", f"{agent_gw.base}?secret-key={sec}", c.top)
        self.assertNotEqual(r.rc, 0, r)
        self.assertIn("HTTP error 403", r.err)
        rc, out, err = harness.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
                                    "--data-binary", "x", f"{agent_gw.base}/evil.narinfo")
        self.assertEqual((rc, out), (0, b"403"), err)
        self.assertEqual(nixenv.cache_files(cache), before)

        # The publisher may.
        src_nix.ok(NIX, "copy", "--store", src,
                   "--to", f"{publisher_gw.base}?secret-key={sec}&compression=none", c.top)
        agent.ok(NIX, "copy", "--from", agent_gw.base, "--to", store, c.top)
        agent.ok(NIX, "store", "verify", "--store", store, "-r", c.top)


if __name__ == "__main__":
    harness.main()
