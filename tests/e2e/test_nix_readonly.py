"""The read-only deployment of docs/nix-binary-cache.md, section 5, with
docs/examples/nix-cache.conf as it is: NATS users whose permissions allow
only `cache.GET.>` and `cache.HEAD.>` fetch with nix; their PUT is refused by
the NATS server (the gateway answers 403) even though the file server is
--writable; a publisher allowed `cache.PUT.>` uploads. Each user has its own
inbox prefix and may subscribe to nothing else."""

import pathlib

import harness
import nixenv
from nixenv import NIX

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONF_FILE = ROOT / "docs" / "examples" / "nix-cache.conf"
PASSWORDS = {"cache-server": "CHANGE-ME-1", "agent": "CHANGE-ME-2", "publisher": "CHANGE-ME-3"}


def nats_conf() -> str:
    """The example file, minus its `listen` line (the harness picks the port)."""
    text = CONF_FILE.read_text()
    guide = (ROOT / "docs" / "nix-binary-cache.md").read_text()
    assert text in guide, "docs/nix-binary-cache.md must show nix-cache.conf as it is"
    return "\n".join(l for l in text.splitlines() if not l.startswith("listen:"))


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

        nats = harness.Nats(nats_conf())
        url = {u: nats.client_url(u, p) for u, p in PASSWORDS.items()}
        serve = harness.serve(url["cache-server"], "cache", cache, "--writable", "/",
                      "--inbox-prefix", "_INBOX_cache-server")
        agent_gw = harness.gateway(url["agent"], "cache", "--inbox-prefix", "_INBOX_agent",
                                   name="gateway-agent")
        publisher_gw = harness.gateway(url["publisher"], "cache",
                                       "--inbox-prefix", "_INBOX_publisher",
                                       name="gateway-publisher")

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
        agent_gw.wait_for(r"NATS refused the publish to cache\.PUT\.", timeout=5)
        self.assertNotIn("Permissions Violation", serve.log_text())

        # The publisher may.
        src_nix.ok(NIX, "copy", "--store", src,
                   "--to", f"{publisher_gw.base}?secret-key={sec}&compression=none", c.top)
        agent.ok(NIX, "copy", "--from", agent_gw.base, "--to", store, c.top)
        agent.ok(NIX, "store", "verify", "--store", store, "-r", c.top)


if __name__ == "__main__":
    harness.main()
