#!/usr/bin/python3
"""SPF against a real unbound (issue 3, points 4 and 6).

A private unbound on loopback publishes SPF records: pass, fail, softfail, an include chain,
a redirect, and a record that errors. `spamward check --ip --from --json` and policy
requests to `spamward serve` must show the matching SPF_* symbol, the admin allow list must
trust an `@domain` entry only when SPF passes for it, and with DNS stopped the result is a
temperror that scores nothing.
"""

import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from unbound import Unbound  # noqa: E402

CLIENT = "192.0.2.10"
LOCAL_ZONES = [("example.test.", "static")]
LOCAL_DATA = [
    'pass.example.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"',
    'fail.example.test. TXT "v=spf1 ip4:198.51.100.0/24 -all"',
    'soft.example.test. TXT "v=spf1 ip4:198.51.100.0/24 ~all"',
    'neutral.example.test. TXT "v=spf1 ?all"',
    # An include chain two deep, the pass found at the bottom.
    'chain.example.test. TXT "v=spf1 include:mid.example.test -all"',
    'mid.example.test. TXT "v=spf1 ip4:203.0.113.0/24 include:leaf.example.test -all"',
    'leaf.example.test. TXT "v=spf1 a:out.leaf.example.test -all"',
    "out.leaf.example.test. A 192.0.2.10",
    'redir.example.test. TXT "v=spf1 redirect=pass.example.test"',
    'broken.example.test. TXT "v=spf1 ip4:192.0.2.0/33 -all"',
]

SPF = {"SPF_PASS", "SPF_FAIL", "SPF_SOFTFAIL", "SPF_NEUTRAL", "SPF_NONE", "SPF_PERMERROR",
       "SPF_TEMPERROR"}


def spf_symbols(obj):
    return {s["name"]: s for s in obj["symbols"] if s["name"] in SPF}


class SpfAgainstUnbound(h.IntegrationCase):
    def setUp(self):
        super().setUp()
        self.dns = Unbound(self.tmp, local_zones=LOCAL_ZONES, local_data=LOCAL_DATA)
        self._servers.append(self.dns)
        self.dns.start()

    def settings(self):
        return {"dns": {"servers": [f"127.0.0.1@{self.dns.port}"], "timeout_ms": 500},
                "network": {"trusted": []}}

    def check(self, sw, sender, ip=CLIENT):
        rc, out, err = sw.cli("check", "--ip", ip, "--helo", "mx.example.test", "--from", sender,
                              "--rcpt", "bob@local.example.test", "--json")
        self.assertEqual(rc, 0, f"stderr={err!r}")
        lines = [line for line in out.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, out)
        return json.loads(lines[0])

    def test_results_through_check(self):
        sw = self.spamward(self.settings(), start=False)
        cases = [
            ("a@pass.example.test", "SPF_PASS", 0.0),
            ("a@fail.example.test", "SPF_FAIL", 2.0),
            ("a@soft.example.test", "SPF_SOFTFAIL", 1.0),
            ("a@neutral.example.test", "SPF_NEUTRAL", 0.0),
            ("a@chain.example.test", "SPF_PASS", 0.0),
            ("a@redir.example.test", "SPF_PASS", 0.0),
            ("a@broken.example.test", "SPF_PERMERROR", 0.5),
            ("a@nospf.example.test", "SPF_NONE", 0.0),
        ]
        for sender, want, score in cases:
            with self.subTest(sender=sender):
                found = spf_symbols(self.check(sw, sender))
                self.assertEqual(list(found), [want], found)
                self.assertEqual(found[want]["score"], score, found)
        # The same sender from an address the record does not cover fails.
        found = spf_symbols(self.check(sw, "a@pass.example.test", ip="198.51.100.7"))
        self.assertEqual(list(found), ["SPF_FAIL"], found)

    def test_allow_list_sender_entry_needs_spf_pass(self):
        sw = self.spamward(self.settings(), start=False)
        self.assertEqual(sw.cli("allow", "add", "@pass.example.test")[0], 0)
        self.assertEqual(sw.cli("deny", "add", CLIENT)[0], 0)
        # SPF passes for the domain: the allow entry vouches, and beats the deny entry.
        obj = self.check(sw, "a@pass.example.test")
        names = {s["name"] for s in obj["symbols"]}
        self.assertIn("ALLOWLIST", names, obj)
        self.assertEqual(obj["action"], "accept", obj)
        # A forged sender of that domain (SPF fails from here) inherits nothing.
        obj = self.check(sw, "a@pass.example.test", ip="198.51.100.7")
        self.assertNotIn("ALLOWLIST", {s["name"] for s in obj["symbols"]}, obj)

    def test_policy_requests_and_dns_down(self):
        sw = self.spamward(self.settings())
        reply = sw.policy(client_address=CLIENT, sender="a@fail.example.test",
                          helo_name="mx.example.test")
        self.assertEqual(reply.get("action"), "DUNNO", reply)  # SPF fail alone refuses nothing
        self.assertIsNotNone(sw.wait_log(lambda line: "a@fail.example.test" in line and "SPF_FAIL(2.00)" in line))
        self.dns.stop()
        reply = sw.policy(client_address=CLIENT, sender="a@soft.example.test",
                          helo_name="mx.example.test")
        self.assertEqual(reply.get("action"), "DUNNO", reply)
        # A timeout is not an answer: SPF_TEMPERROR at 0 (or nothing), never SPF_SOFTFAIL.
        line = sw.wait_log(lambda t: "decision" in t and "a@soft.example.test" in t, timeout=5.0)
        self.assertIsNotNone(line)
        self.assertNotIn("SPF_SOFTFAIL", line)
        self.assertRegex(line, r"SPF_TEMPERROR\(0\.00\)|symbols=\"\"")


if __name__ == "__main__":
    h.main()
