#!/usr/bin/python3
"""DNSBL and DNSWL against a real DNS server (issue 3, points 2 and 6; DESIGN §3.3, §3.6).

A private unbound on loopback serves four lists:
  bl-main  (bl.example.test)       healthy, IPv6, codes map {127.0.0.10 = 1.5}
  world    (all.example.test)      answers 127.0.0.2 for every name: lists everything
  refused  (refused.example.test)  answers 127.255.255.254 for every name: a blocked resolver
  good     (wl.example.test)       a DNSWL
`spamward serve` uses it through [dns] servers; policy requests carry the client address and
the decision log (JSON) shows the symbols. Also `spamward check --json`, `spamward dnsbl
health`, and the DNS server stopped (a decision still arrives within the timeout, without
DNS symbols).
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from unbound import Unbound  # noqa: E402

DNS_TIMEOUT_MS = 500
V6_LISTED = "2001:db8::1"
V6_UNLISTED = "2001:db8::2"


def nibbles(addr_bytes):
    return ".".join(f"{b & 0xf:x}.{b >> 4:x}" for b in reversed(addr_bytes))


def v6_name(text, zone):
    import ipaddress
    return nibbles(ipaddress.IPv6Address(text).packed) + "." + zone


MAPPED_2 = bytes(10) + b"\xff\xff\x7f\x00\x00\x02"  # ::ffff:127.0.0.2, the IPv6 test point

ZONES = [
    ("example.net", "static"),  # the senders' domains: SPF gets NXDOMAIN at once
    ("bl.example.test", "static"),
    ("all.example.test", "redirect"),
    ("refused.example.test", "redirect"),
    ("wl.example.test", "static"),
]
DATA = [
    # bl-main: RFC 5782 §5 test points (127.0.0.1 is absent: NXDOMAIN), and listed clients
    "2.0.0.127.bl.example.test. A 127.0.0.2",
    nibbles(MAPPED_2) + ".bl.example.test. A 127.0.0.2",
    "1.2.0.192.bl.example.test. A 127.0.0.2",
    "2.2.0.192.bl.example.test. A 127.0.0.10",
    v6_name(V6_LISTED, "bl.example.test.") + " A 127.0.0.2",
    # world and refused: every name below answers the same
    "all.example.test. A 127.0.0.2",
    "refused.example.test. A 127.255.255.254",
    # good (DNSWL)
    "2.0.0.127.wl.example.test. A 127.0.0.2",
    "3.2.0.192.wl.example.test. A 127.0.10.2",
]

LISTS = """
[[dnsbl]]
name = "bl-main"
zone = "bl.example.test"
weight = 3.0
ipv6 = true
codes = { "127.0.0.10" = 1.5 }

[[dnsbl]]
name = "world"
zone = "all.example.test"
weight = 4.0

[[dnsbl]]
name = "refused"
zone = "refused.example.test"
weight = 4.0

[[dnswl]]
name = "good"
zone = "wl.example.test"
weight = 1.0
"""

HEALTHY_LISTS = LISTS.split("[[dnsbl]]\nname = \"world\"")[0] + """
[[dnswl]]
name = "good"
zone = "wl.example.test"
weight = 1.0
"""


class DnsblIntegration(h.IntegrationCase):
    def setUp(self):
        super().setUp()
        self.dns = Unbound(self.tmp, local_zones=ZONES, local_data=DATA)
        self._servers.append(self.dns)  # diagnostics and cleanup with the others
        self.dns.start()
        self.sw = self.spamward(start=False)
        self.overrides = {
            "dns": {"servers": [f"127.0.0.1@{self.dns.port}"], "timeout_ms": DNS_TIMEOUT_MS},
            "engine": {"stage_deadline_ms": 3000},
            "log": {"format": "json", "file": self.sw.log_path},
        }
        self.sw.write_config(self.sw.config_text(self.overrides) + LISTS)
        self.sw.start()
        self.n = 0

    # helpers -------------------------------------------------------------------------------
    def decide(self, client, **attrs):
        """One policy request; returns (reply, decision log object, seconds taken)."""
        self.n += 1
        sender = attrs.pop("sender", f"t{self.n}@example.net")
        started = time.monotonic()
        reply = self.sw.policy(client_address=client, sender=sender, **attrs)
        took = time.monotonic() - started

        def find():
            for line in self.sw.log_text().splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("event") == "decision" and obj.get("from") == sender and obj.get("client") == client:
                    return obj
            return None

        decision = h.wait_until(find, 5.0)
        self.assertIsNotNone(decision, f"no decision line for {client} <{sender}>")
        return reply, decision, took

    @staticmethod
    def symbols(decision):
        out = {}
        for s in decision.get("symbols", []):
            out[s["name"]] = s
        return out

    def assert_dns_symbols(self, decision, want):
        """want: {symbol: (score, detail)}; every RBL_/DNSWL_ symbol must be in it."""
        got = {k: v for k, v in self.symbols(decision).items() if k.startswith(("RBL_", "DNSWL_"))}
        self.assertEqual(sorted(got), sorted(want), f"DNS list symbols of {decision}")
        for name, (score, detail) in want.items():
            self.assertAlmostEqual(got[name]["score"], score, places=2, msg=name)
            self.assertEqual(got[name].get("detail"), detail, name)

    # tests ---------------------------------------------------------------------------------
    def test_lists_against_unbound(self):
        with self.subTest("listed IPv4 client: weight"):
            _, d, _ = self.decide("192.0.2.1")
            self.assert_dns_symbols(d, {"RBL_BL_MAIN": (3.0, "127.0.0.2")})
            self.assertIn("dnsbl", d["families"])

        with self.subTest("return-code map"):
            _, d, _ = self.decide("192.0.2.2")
            self.assert_dns_symbols(d, {"RBL_BL_MAIN": (1.5, "127.0.0.10")})

        with self.subTest("unlisted IPv4 client; the list-everything list adds nothing"):
            _, d, _ = self.decide("192.0.2.9")
            self.assert_dns_symbols(d, {})
            self.assertEqual(self.sw.metric("spamward_dnsbl_healthy", 'list="world"'), 0.0)
            self.assertEqual(self.sw.metric("spamward_dnsbl_healthy", 'list="bl-main"'), 1.0)
            self.assertIsNone(self.sw.metric("spamward_dnsbl_queries_total", 'list="world"'))
            self.assertTrue(self.sw.wait_log(r"dnsbl world .*lists everything.*disabled"))

        with self.subTest("listed and unlisted IPv6 clients"):
            _, d, _ = self.decide(V6_LISTED)
            self.assert_dns_symbols(d, {"RBL_BL_MAIN": (3.0, "127.0.0.2")})
            _, d, _ = self.decide(V6_UNLISTED)
            self.assert_dns_symbols(d, {})

        with self.subTest("DNSWL subtracts"):
            _, d, _ = self.decide("192.0.2.3")
            self.assert_dns_symbols(d, {"DNSWL_GOOD": (-1.0, "127.0.10.2")})

        with self.subTest("blocked-resolver answers: no score, an alert metric and a log line"):
            self.assertGreaterEqual(self.sw.metric("spamward_dnsbl_alerts_total",
                                                   'list="refused",reason="blocked"') or 0, 1.0)
            self.assertTrue(self.sw.wait_log(r"dnsbl refused .*blocked code 127\.255\.255\.254.*no score"))
            self.assertIsNone(self.sw.metric("spamward_dnsbl_hits_total", 'list="refused"'))

        with self.subTest("check --json shows the RBL symbols"):
            rc, out, err = self.sw.cli("check", "--json", "--ip", "192.0.2.1", "--helo", "mx.example.net",
                                       "--from", "a@example.net", "--rcpt", "b@local.example.test")
            self.assertEqual(rc, 0, err)
            obj = json.loads(out.strip().splitlines()[-1])
            names = {s["name"]: s for s in obj["symbols"]}
            self.assertIn("RBL_BL_MAIN", names, out)
            self.assertAlmostEqual(names["RBL_BL_MAIN"]["score"], 3.0)
            self.assertEqual(names["RBL_BL_MAIN"]["family"], "dnsbl")
            self.assertNotIn("RBL_WORLD", names, out)
            self.assertNotIn("RBL_REFUSED", names, out)

        with self.subTest("dnsbl health: listing-everything and broken lists exit 1"):
            rc, out, err = self.sw.cli("dnsbl", "health")
            self.assertEqual(rc, 1, out + err)
            self.assertRegex(out, r"dnsbl bl-main \(bl\.example\.test\): healthy")
            self.assertRegex(out, r"dnsbl world \(all\.example\.test\): listing-everything")
            self.assertRegex(out, r"127\.0\.0\.1: listed 127\.0\.0\.2")
            self.assertRegex(out, r"dnsbl refused \(refused\.example\.test\): broken")
            self.assertRegex(out, r"blocked answer: 127\.255\.255\.254")
            self.assertRegex(out, r"dnswl good \(wl\.example\.test\): healthy")

        with self.subTest("dnsbl health: healthy lists exit 0, none configured exit 0, bad config 2"):
            good = os.path.join(self.tmp, "healthy.toml")
            with open(good, "w") as f:
                f.write(self.sw.config_text(self.overrides) + HEALTHY_LISTS)
            rc, out, err = h.run([h.BIN, "dnsbl", "health", "-c", good])
            self.assertEqual(rc, 0, out + err)
            self.assertNotIn("world", out)
            none = os.path.join(self.tmp, "none.toml")
            with open(none, "w") as f:
                f.write(self.sw.config_text(self.overrides))
            rc, out, err = h.run([h.BIN, "dnsbl", "health", "-c", none])
            self.assertEqual(rc, 0, out + err)
            self.assertIn("no [[dnsbl]] or [[dnswl]] lists", out)
            bad = os.path.join(self.tmp, "bad.toml")
            with open(bad, "w") as f:
                f.write('[[dnsbl]]\nname = "x"\nzone = "bl.example.test"\nweight = -1\n')
            rc, out, err = h.run([h.BIN, "dnsbl", "health", "-c", bad])
            self.assertEqual(rc, 2, out + err)

        with self.subTest("DNS server stopped: a decision within the timeout, no DNS symbols"):
            self.dns.stop()
            # No sender and no HELO: SPF has nothing to judge, so only the lists query DNS.
            reply, d, took = self.decide("192.0.2.77", sender="", helo_name="")
            self.assertTrue(reply.get("action"), reply)
            self.assertLess(took, DNS_TIMEOUT_MS / 1000.0 + 1.5)
            self.assert_dns_symbols(d, {})
            self.assertEqual(d["score"], 0)


if __name__ == "__main__":
    h.main()
