#!/usr/bin/python3
"""Unknown recipients, address guessing and the non-MX trap through the real daemon (issue 7).

Through the policy protocol:
  - an unknown recipient is refused with 550 5.1.1, a valid one and postmaster@ pass;
  - three unknown recipients from one client make ADDRESS_GUESSING and a ban (450 on its
    next request), with the evidence in `spamward ip`;
  - typos of valid addresses do not;
  - a guessing campaign spread over ten /24s, two guesses each, is caught: every participant
    is banned, the first ones too;
  - a client that reached one of our addresses no MX points to, on port 25, is banned at
    once and appears in the blocklist file; port 587 and authenticated clients are not;
  - the trap responder ([trap] listen) greets, answers 421 and records the offence;
  - unknown-recipient refusals in the MTA's log ([recipients] follow_log) count too.
Through a real Postfix with swaks (XCLIENT presents the client addresses):
  - unknown recipients are refused in the SMTP dialogue, guessing bans the client, and mail
    to a valid recipient from an innocent client is delivered.
"""

import os
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

DOMAIN = "local.example.test"
VALID = f"""# valid recipients
bob@{DOMAIN}
alice@{DOMAIN}
margaret@{DOMAIN}
"""
GUESSES = ["ceo", "info", "sales", "admin", "hr", "jobs", "billing", "office", "contact",
           "webmaster", "marketing", "press"]


class AddressGuessingAndTrap(h.IntegrationCase):
    def settings(self, **extra):
        valid = os.path.join(self.tmp, "recipients")
        with open(valid, "w") as f:
            f.write(VALID)
        s = {"recipients": {"valid": "file:" + valid, "guess_threshold": 3,
                            "guess_window": "10m"},
             "reputation": {"ban_base": "10m"},
             "ips": {"export": "all"}}
        for table, keys in extra.items():
            s.setdefault(table, {}).update(keys)
        return s

    def rcpt(self, sw, client, rcpt, **kw):
        fields = dict(client_address=client, recipient=rcpt)
        fields.update(kw)
        return sw.policy(h.policy_attrs(**fields))["action"]

    def ip_report(self, sw, address):
        rc, out, err = sw.cli("ip", address)
        self.assertEqual(rc, 0, err)
        return out

    def test_unknown_recipients_refused_and_three_guesses_ban(self):
        sw = self.spamward(self.settings())
        self.assertEqual(self.rcpt(sw, "192.0.2.50", f"bob@{DOMAIN}"), "DUNNO")
        self.assertEqual(self.rcpt(sw, "192.0.2.51", f"postmaster@{DOMAIN}"), "DUNNO")
        self.assertEqual(self.rcpt(sw, "192.0.2.51", "anyone@elsewhere.example"), "DUNNO")
        guesser = "198.51.100.50"
        for local in ("ceo", "info"):
            action = self.rcpt(sw, guesser, f"{local}@{DOMAIN}")
            self.assertTrue(action.startswith("550 5.1.1"), action)
        third = self.rcpt(sw, guesser, f"sales@{DOMAIN}")
        self.assertTrue(third.startswith("550 5.1.1"), third)
        self.assertIsNotNone(sw.wait_log(lambda l: "decision" in l and "ADDRESS_GUESSING" in l))
        # The offence banned it: its next request, even to a valid recipient, is deferred.
        banned = self.rcpt(sw, guesser, f"bob@{DOMAIN}")
        self.assertTrue(banned.startswith("450 4.7.1"), banned)
        report = self.ip_report(sw, guesser)
        self.assertIn("guessing", report)
        self.assertIn("3 unknown recipients", report)
        self.assertIn(f"sales@{DOMAIN}", report)

    def test_typos_do_not_count_as_guessing(self):
        sw = self.spamward(self.settings())
        client = "198.51.100.60"
        for typo in ("bbo", "alcie", "margret", "magaret"):
            action = self.rcpt(sw, client, f"{typo}@{DOMAIN}")
            self.assertTrue(action.startswith("550 5.1.1"), action)
        self.assertEqual(self.rcpt(sw, client, f"bob@{DOMAIN}"), "DUNNO")
        # The decision lines are written by then; the last one is bob's acceptance.
        self.assertIsNotNone(sw.wait_log(lambda l: "decision" in l and f"bob@{DOMAIN}" in l))
        self.assertIn("typo of", sw.log_text())
        self.assertNotIn("ADDRESS_GUESSING", sw.log_text())

    def test_campaign_over_ten_networks_is_caught(self):
        sw = self.spamward(self.settings())
        clients = [f"203.0.{n}.9" for n in range(100, 110)]
        for n, client in enumerate(clients):
            for k in range(2):
                local = GUESSES[(n + k) % len(GUESSES)]
                action = self.rcpt(sw, client, f"{local}@{DOMAIN}")
                self.assertTrue(action.startswith("550 5.1.1"), (client, action))
        self.assertIsNotNone(sw.wait_log(lambda l: f"campaign at {DOMAIN}" in l))
        # Every participant is banned, the first ones included (two guesses each, below the
        # per-client threshold of three).
        for client in clients:
            action = self.rcpt(sw, client, f"bob@{DOMAIN}")
            self.assertTrue(action.startswith("450 4.7.1"), (client, action))
        # Many senders writing to one departed user is no campaign.
        for n in range(20):
            action = self.rcpt(sw, f"198.18.{n}.9", f"departed@{DOMAIN}")
            self.assertTrue(action.startswith("550 5.1.1"), action)
        for n in range(20):
            self.assertEqual(self.rcpt(sw, f"198.18.{n}.9", f"bob@{DOMAIN}"), "DUNNO")

    def test_client_at_a_non_mx_address_is_banned_and_exported(self):
        sw = self.spamward(self.settings(trap={"mx_addresses": ["192.0.2.25"]}))
        # Our MX, submission and an authenticated user are never trapped.
        self.assertEqual(self.rcpt(sw, "198.51.100.70", f"bob@{DOMAIN}",
                                   server_address="192.0.2.25"), "DUNNO")
        self.assertEqual(self.rcpt(sw, "198.51.100.71", f"bob@{DOMAIN}",
                                   server_address="192.0.2.26", server_port="587"), "DUNNO")
        self.assertEqual(self.rcpt(sw, "198.51.100.72", f"bob@{DOMAIN}",
                                   server_address="192.0.2.26", sasl_method="PLAIN",
                                   sasl_username="alice"), "DUNNO")
        scanner = "198.51.100.77"
        action = self.rcpt(sw, scanner, f"bob@{DOMAIN}", server_address="192.0.2.26")
        self.assertTrue(action.startswith("450 4.7.1"), action)
        self.assertIsNotNone(sw.wait_log(lambda l: "decision" in l and "TRAP_NON_MX" in l))
        banned = os.path.join(sw.dir, "banned.txt")

        def exported():
            try:
                with open(banned) as f:
                    return f.read()
            except FileNotFoundError:
                return ""

        self.assertTrue(h.wait_until(lambda: scanner in exported(), 5), exported())
        self.assertNotIn("198.51.100.71", exported())
        self.assertIn("trap", self.ip_report(sw, scanner))
        # It stays banned at our real MX too.
        again = self.rcpt(sw, scanner, f"bob@{DOMAIN}", server_address="192.0.2.25")
        self.assertTrue(again.startswith("450 4.7.1"), again)

    def test_trap_responder_greets_refuses_and_records(self):
        port = h.free_port()
        sw = self.spamward(self.settings(trap={"mx_addresses": ["192.0.2.25"],
                                               "listen": [f"127.0.0.1:{port}"]}))
        self.assertTrue(h.wait_until(lambda: h.port_accepts(port), 5))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            f = s.makefile("rb")
            greeting = f.readline().decode()
            self.assertTrue(greeting.startswith("220 "), greeting)
            s.sendall(b"EHLO scanner.example\r\n")
            closing = f.readline().decode()
            self.assertTrue(closing.startswith("421 "), closing)
            self.assertEqual(f.readline(), b"")  # closed: nothing else is ever accepted
        self.assertIsNotNone(
            sw.wait_log(lambda l: "trap: 127.0.0.1 connected to trap address" in l))
        self.assertIn("trap", self.ip_report(sw, "127.0.0.1"))
        self.assertGreaterEqual(sw.metric("spamward_trap_connections_total"), 1)

    def test_unknown_recipients_in_the_mta_log_count(self):
        maillog = os.path.join(self.tmp, "mail.log")
        open(maillog, "w").close()
        sw = self.spamward(self.settings(recipients={"follow_log": maillog}))
        self.assertIsNotNone(sw.wait_log(lambda l: "following" in l and maillog in l))
        client = "198.51.100.90"
        with open(maillog, "a") as f:
            for local in ("ceo", "info", "sales"):
                f.write(f"Dec  3 10:00:00 mx postfix/smtpd[4242]: NOQUEUE: reject: RCPT from "
                        f"unknown[{client}]: 550 5.1.1 <{local}@{DOMAIN}>: Recipient address "
                        f"rejected: User unknown in virtual mailbox table; "
                        f"from=<x@spam.example> to=<{local}@{DOMAIN}> proto=ESMTP "
                        f"helo=<spam.example>\n")
        self.assertIsNotNone(sw.wait_log(lambda l: f"{client} is guessing addresses" in l,
                                         timeout=10))
        action = self.rcpt(sw, client, f"bob@{DOMAIN}")
        self.assertTrue(action.startswith("450 4.7.1"), action)

    def test_bad_recipient_list_is_a_config_error(self):
        valid = os.path.join(self.tmp, "bad-recipients")
        with open(valid, "w") as f:
            f.write("bob@local.example.test\nbroken@\n")
        sw = self.spamward({"recipients": {"valid": "file:" + valid}}, start=False)
        rc, out, err = sw.cli("config", "check")
        self.assertEqual(rc, 2, out + err)
        self.assertIn(f"{valid}:2", err)
        self.assertIn("recipients.valid", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_through_postfix(self):
        sw = self.spamward(self.settings())
        pf = self.postfix(sw.policy_port)
        rc, transcript = h.swaks(pf.smtp_port, f"nobody@{DOMAIN}", client_addr="192.0.2.90")
        self.assertEqual(rc, 24, transcript)  # no recipient accepted
        self.assertIn("550 5.1.1", transcript)
        guesser = "198.51.100.95"
        for local in ("ceo", "info", "sales"):
            rc, transcript = h.swaks(pf.smtp_port, f"{local}@{DOMAIN}", client_addr=guesser)
            self.assertIn("550 5.1.1", transcript)
        rc, transcript = h.swaks(pf.smtp_port, f"bob@{DOMAIN}", client_addr=guesser)
        self.assertNotEqual(rc, 0, transcript)
        self.assertIn("450 4.7.1", transcript)
        rc, transcript = h.swaks(pf.smtp_port, f"bob@{DOMAIN}", client_addr="192.0.2.91")
        self.assertEqual(rc, 0, transcript)
        bob = os.path.join(pf.mail, DOMAIN, "bob", "new")
        self.assertTrue(h.wait_until(lambda: os.path.isdir(bob) and os.listdir(bob), 10))
        self.assertFalse(os.path.isdir(os.path.join(pf.mail, DOMAIN, "catchall", "new")) and
                         os.listdir(os.path.join(pf.mail, DOMAIN, "catchall", "new")))


if __name__ == "__main__":
    h.main()
