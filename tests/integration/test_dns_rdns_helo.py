#!/usr/bin/python3
"""Reverse DNS and HELO against a real unbound (issue 3, points 3 and 6).

A private unbound on loopback serves PTR/A fixtures: a confirmed PTR, a missing PTR (IPv4 and
IPv6), a dynamic-looking PTR, a PTR that does not resolve back, a resolvable and a
non-existent HELO name. They are checked through `spamward check --ip --helo --json` (no
--hostname, so spamward looks the PTR up itself) and through policy requests to `spamward
serve`, with the MTA's facts (client_name / reverse_client_name, which must win over DNS)
and without them (empty attributes: the lookup path). Finally DNS is stopped: a timeout or
refusal is not an answer, so no RDNS_NONE appears.
"""

import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from unbound import Unbound  # noqa: E402

GOOD = "192.0.2.20"      # PTR mx.good.example.test, which resolves back
NOPTR = "192.0.2.21"     # no PTR at all
DYNAMIC = "192.0.2.22"   # PTR dsl-192-0-2-22.dyn.example.test, resolves back
LIAR = "192.0.2.23"      # PTR liar.example.test, which resolves elsewhere
NOPTR6 = "2001:db8::21"  # no PTR
OURS = ["mx.local.example.test", "198.51.100.25"]

# in-addr.arpa and ip6.arpa are static zones in the fixture already.
LOCAL_ZONES = [("example.test.", "static")]
LOCAL_DATA = [
    "20.2.0.192.in-addr.arpa. PTR mx.good.example.test.",
    "mx.good.example.test. A 192.0.2.20",
    "22.2.0.192.in-addr.arpa. PTR dsl-192-0-2-22.dyn.example.test.",
    "dsl-192-0-2-22.dyn.example.test. A 192.0.2.22",
    "23.2.0.192.in-addr.arpa. PTR liar.example.test.",
    "liar.example.test. A 198.51.100.1",
]

RDNS_HELO = {"RDNS_NONE", "RDNS_DYNAMIC", "FCRDNS_MISMATCH", "HELO_NOT_FQDN", "HELO_BARE_IP",
             "HELO_FORGED", "HELO_NO_RESOLVE"}


def ours(symbols):
    """{name: score} of the rDNS/HELO symbols among `symbols`."""
    return {s["name"]: s["score"] for s in symbols if s["name"] in RDNS_HELO}


class RdnsHelo(h.IntegrationCase):
    def setUp(self):
        super().setUp()
        self.dns = Unbound(self.tmp, local_zones=LOCAL_ZONES, local_data=LOCAL_DATA)
        self._servers.append(self.dns)  # stopped after the test, its output shown on failure
        self.dns.start()

    def settings(self, log_format="text"):
        return {"dns": {"servers": [f"127.0.0.1@{self.dns.port}"], "timeout_ms": 500},
                "network": {"trusted": [], "our_names": OURS},
                "log": {"format": log_format}}

    def check(self, sw, ip, helo=None):
        args = ["check", "--ip", ip, "--from", "a@sender.example.test", "--rcpt",
                "bob@local.example.test", "--json"]
        if helo is not None:
            args += ["--helo", helo]
        rc, out, err = sw.cli(*args)
        self.assertIn(rc, (0, 1), f"stderr={err!r}")
        lines = [line for line in out.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, out)
        return json.loads(lines[0])

    # ---- `check`: the lookup path ------------------------------------------------------
    def test_check_reverse_dns(self):
        sw = self.spamward(self.settings(), start=False)
        good_helo = "mx.good.example.test"
        cases = [
            (GOOD, {}),
            (NOPTR, {"RDNS_NONE": 1.0}),
            (DYNAMIC, {"RDNS_DYNAMIC": 1.0}),
            (LIAR, {"FCRDNS_MISMATCH": 0.5}),
            (NOPTR6, {"RDNS_NONE": 0.1}),
        ]
        for ip, want in cases:
            with self.subTest(ip=ip):
                obj = self.check(sw, ip, good_helo)
                self.assertEqual(ours(obj["symbols"]), want, obj)
                self.assertEqual(obj["action"], "accept", obj)

    def test_check_helo_forms(self):
        sw = self.spamward(self.settings(), start=False)
        cases = [
            ("mx.good.example.test", {}),
            ("[192.0.2.20]", {}),
            ("[IPv6:2001:db8::20]", {}),
            ("nas", {"HELO_NOT_FQDN": 0.5}),
            ("bad_name.example.test", {"HELO_NOT_FQDN": 0.5}),
            ("192.0.2.20", {"HELO_BARE_IP": 0.5}),
            ("MX.Local.Example.Test", {"HELO_FORGED": 2.0}),
            ("[198.51.100.25]", {"HELO_FORGED": 2.0}),
            ("nosuch.example.test", {"HELO_NO_RESOLVE": 0.3}),
        ]
        for helo, want in cases:
            with self.subTest(helo=helo):
                obj = self.check(sw, GOOD, helo)
                self.assertEqual(ours(obj["symbols"]), want, obj)

    def test_home_made_server_stays_soft(self):
        # A NAS on a home line: no PTR, HELO its bare name or a LAN name.
        sw = self.spamward(self.settings(), start=False)
        for helo in ("DiskStation", "nas.fritz.box", "192.168.1.20"):
            with self.subTest(helo=helo):
                obj = self.check(sw, NOPTR, helo)
                found = ours(obj["symbols"])
                self.assertIn("RDNS_NONE", found, obj)
                self.assertLess(sum(found.values()), 3.0, obj)
                self.assertEqual(obj["action"], "accept", obj)

    def test_dns_down_is_not_an_answer(self):
        sw = self.spamward(self.settings(), start=False)
        self.assertEqual(ours(self.check(sw, NOPTR, "nosuch.example.test")["symbols"]),
                         {"RDNS_NONE": 1.0, "HELO_NO_RESOLVE": 0.3})
        self.dns.stop()
        obj = self.check(sw, NOPTR, "nosuch.example.test")
        self.assertEqual(ours(obj["symbols"]), {}, obj)
        self.assertEqual(obj["action"], "accept", obj)
        # Syntax needs no DNS: still judged.
        self.assertEqual(ours(self.check(sw, NOPTR, "nas")["symbols"]), {"HELO_NOT_FQDN": 0.5})

    # ---- `serve`: the MTA's facts first, the lookup path without them ------------------
    def decision(self, sw, sender, timeout=5.0):
        """The JSON decision line of the request whose sender was `sender`."""
        def probe():
            for line in sw.log_text().splitlines():
                start = line.find("{")
                if start < 0:
                    continue
                try:
                    obj = json.loads(line[start:])
                except ValueError:
                    continue
                if obj.get("event") == "decision" and obj.get("from") == sender:
                    return obj
            return None

        obj = h.wait_until(probe, timeout)
        self.assertIsNotNone(obj, f"no decision logged for {sender}:\n{sw.log_text()[-3000:]}")
        return obj

    def test_policy_with_and_without_mta_facts(self):
        sw = self.spamward(self.settings(log_format="json"))
        cases = [
            # (name, attributes, expected rDNS/HELO symbols)
            # MTA facts win over DNS: GOOD has a PTR in DNS, but Postfix says "unknown".
            ("facts-none", dict(client_address=GOOD, client_name="unknown",
                                reverse_client_name="unknown", helo_name="mx.good.example.test"),
             {"RDNS_NONE": 1.0}),
            ("facts-mismatch", dict(client_address=GOOD, client_name="unknown",
                                    reverse_client_name="mx.good.example.test",
                                    helo_name="mx.good.example.test"),
             {"FCRDNS_MISMATCH": 0.5}),
            # NOPTR has no PTR in DNS, but Postfix vouches for a name: no lookup, no symbol.
            ("facts-confirmed", dict(client_address=NOPTR, client_name="mx.partner.example.test",
                                     reverse_client_name="mx.partner.example.test",
                                     helo_name="mx.good.example.test"),
             {}),
            ("facts-dynamic", dict(client_address=DYNAMIC,
                                   client_name="dsl-192-0-2-22.dyn.example.test",
                                   reverse_client_name="dsl-192-0-2-22.dyn.example.test",
                                   helo_name="nas"),
             {"RDNS_DYNAMIC": 1.0, "HELO_NOT_FQDN": 0.5}),
            ("facts-ipv6", dict(client_address=NOPTR6, client_name="unknown",
                                reverse_client_name="unknown", helo_name="mx.good.example.test"),
             {"RDNS_NONE": 0.1}),
            # Empty attributes: spamward looks up itself.
            ("lookup-good", dict(client_address=GOOD, client_name="", reverse_client_name="",
                                 helo_name="mx.good.example.test"),
             {}),
            ("lookup-none", dict(client_address=NOPTR, client_name="", reverse_client_name="",
                                 helo_name="192.0.2.21"),
             {"RDNS_NONE": 1.0, "HELO_BARE_IP": 0.5}),
            ("lookup-liar", dict(client_address=LIAR, client_name="", reverse_client_name="",
                                 helo_name="mx.local.example.test"),
             {"FCRDNS_MISMATCH": 0.5, "HELO_FORGED": 2.0}),
            ("lookup-dynamic", dict(client_address=DYNAMIC, client_name="",
                                    reverse_client_name="", helo_name="nosuch.example.test"),
             {"RDNS_DYNAMIC": 1.0, "HELO_NO_RESOLVE": 0.3}),
        ]
        for name, attrs, want in cases:
            with self.subTest(name):
                sender = f"{name}@sender.example.test"
                reply = sw.policy(sender=sender, **attrs)
                self.assertEqual(reply.get("action"), "DUNNO", reply)
                obj = self.decision(sw, sender)
                self.assertEqual(ours(obj["symbols"]), want, obj)
        self.assertTrue(sw.alive())


if __name__ == "__main__":
    h.main()
