#!/usr/bin/python3
"""BATV signing and the BACKSCATTER check through the real daemon (issue 7, part 3).

PolicyBatv (the policy protocol, no MTA):
  1. `spamward batv sign` prints a prvs= address; exit 2 with one stderr line for a
     non-address and for a config without [batv] keys;
  2. with enforce = true: a bounce (sender="") to the signed address passes (DUNNO), a bounce
     to the bare address is refused (REJECT, 5.7.1), a normal mail to the bare address passes,
     a bounce to postmaster@ passes, a bounce to a tag with a broken hash is refused;
  3. with enforce = false: the bounce to the bare address is not refused, but BACKSCATTER is
     in its decision line.
MilterBatvPostfix (a real Postfix, spamward as its milter, enforce = true):
  4. a mail from a trusted client ([network] trusted) leaves with a prvs= envelope sender
     (Return-Path of the delivered message), and that tag verifies;
  5. a forged bounce (MAIL FROM:<>) to the untagged bob@ is refused at RCPT in the SMTP
     dialogue; a bounce to bob's tagged address (from `batv sign`) is delivered to bob: the
     `recipient_canonical_maps = regexp:` map of docs/backscatter.md strips the tag, and
     smtpd's recipient validation (no catch-all in virtual_mailbox_maps here) accepts it.
"""

import os
import re
import sys
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

KEYS = ["integration-batv-key-new-0001", "integration-batv-key-old-0000"]
BOB = "bob@local.example.test"
TAG_RE = re.compile(r"^prvs=[0-9]{4}[0-9a-f]{6}=(.+)$")
# The map docs/backscatter.md documents (Postfix regexp tables are case-insensitive).
CANONICAL_MAP = "/^prvs=[0-9][0-9]{3}[0-9a-f]{6}=(.+)$/ ${1}\n"


def decision_line(sw, needle, since=0, timeout=3.0):
    return sw.wait_log(lambda line: "decision" in line and needle in line, since=since,
                       timeout=timeout)


class PolicyBatv(h.IntegrationCase):
    def sign(self, sw, address):
        rc, out, err = sw.cli("batv", "sign", address)
        self.assertEqual(rc, 0, err)
        tagged = out.strip()
        m = TAG_RE.match(tagged)
        self.assertTrue(m, f"not a prvs= address: {tagged!r}")
        self.assertEqual(m.group(1), address)
        self.assertEqual(tagged[5], "1", "two keys: the first signs with number (2-1) % 10")
        return tagged

    def test_1_sign_command(self):
        sw = self.spamward({"batv": {"keys": KEYS}}, start=False)
        self.sign(sw, BOB)
        rc, out, err = sw.cli("batv", "sign", "not-an-address")
        self.assertEqual(rc, 2)
        self.assertEqual(out, "")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("not an address", err)
        nokeys = self.spamward(name="nokeys", start=False)
        rc, out, err = nokeys.cli("batv", "sign", BOB)
        self.assertEqual(rc, 2)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("no [batv] keys", err)

    def test_2_enforce_refuses_bounces_to_untagged_addresses(self):
        sw = self.spamward({"batv": {"keys": KEYS, "enforce": True}})
        tagged = self.sign(sw, BOB)
        ok = sw.policy(sender="", recipient=tagged)
        self.assertEqual(ok.get("action"), "DUNNO", ok)
        refused = sw.policy(sender="", recipient=BOB, client_address="192.0.2.31")
        self.assertRegex(refused.get("action", ""), r"^REJECT 5\.7\.1 ", refused)
        self.assertTrue(decision_line(sw, "BACKSCATTER"), sw.log_text())
        normal = sw.policy(sender="alice@example.net", recipient=BOB)
        self.assertEqual(normal.get("action"), "DUNNO", normal)
        double = sw.policy(sender="", recipient="postmaster@local.example.test")
        self.assertEqual(double.get("action"), "DUNNO", double)
        forged = tagged[:11] + ("0" if tagged[11] != "0" else "1") + tagged[12:]
        bad = sw.policy(sender="", recipient=forged)
        self.assertRegex(bad.get("action", ""), r"^REJECT ", bad)

    def test_3_without_enforce_it_only_scores(self):
        sw = self.spamward({"batv": {"keys": KEYS, "enforce": False}})
        since = sw.log_size()
        reply = sw.policy(sender="", recipient=BOB, client_address="192.0.2.32")
        self.assertFalse(reply.get("action", "").upper().startswith("REJECT"), reply)
        line = decision_line(sw, "192.0.2.32", since=since)
        self.assertTrue(line, sw.log_text(since))
        self.assertIn("BACKSCATTER", sw.log_text(since))


class MilterBatvPostfix(h.IntegrationCase):
    TRUSTED = "192.0.2.50"
    OUTSIDER = "198.51.100.9"

    def setUp(self):
        super().setUp()
        self.milter_port = h.free_port()
        self.sw = self.spamward({
            "listen": {"milter": f"127.0.0.1:{self.milter_port}"},
            "network": {"trusted": [self.TRUSTED + "/32"]},
            "batv": {"keys": KEYS, "enforce": True},
        })
        self.assertTrue(h.wait_until(lambda: h.port_accepts(self.milter_port), 10),
                        "spamward does not listen on its milter port")
        canonical = os.path.join(self.tmp, "batv_canonical")
        with open(canonical, "w") as f:
            f.write(CANONICAL_MAP)
        os.chmod(canonical, 0o644)
        extra = (
            "smtpd_recipient_restrictions = reject_unauth_destination\n"
            f"smtpd_milters = inet:127.0.0.1:{self.milter_port}\n"
            "milter_protocol = 6\n"
            "milter_default_action = tempfail\n"
            "milter_command_timeout = 10s\n"
            f"recipient_canonical_maps = regexp:{canonical}\n"
        )
        pf = h.Postfix(self.tmp, self.sw.policy_port, extra_main_cf=extra)
        # No catch-all: an unknown local part is refused by smtpd (reject_unlisted_recipient),
        # so a delivered prvs= address shows that smtpd's validation accepted it.
        vmailbox = os.path.join(pf.etc, "vmailbox")
        with open(vmailbox, "w") as f:
            f.write(f"{BOB}   local.example.test/bob/\n")
        past = time.time() - 10
        os.utime(vmailbox, (past, past))
        self._servers.append(pf)
        pf.start()
        self.pf = pf

    def test_4_trusted_mail_leaves_with_a_prvs_sender(self):
        token = "signed-" + uuid.uuid4().hex[:12]
        rc, transcript = h.swaks(self.pf.smtp_port, BOB, from_="alice@local.example.test",
                                 client_addr=self.TRUSTED,
                                 headers=[f"Subject: batv {token}"])
        self.assertEqual(rc, 0, transcript)
        msg = self.pf.wait_message(token, timeout=10)
        self.assertTrue(msg, f"not delivered:\n{transcript}")
        m = re.search(r"^Return-Path: <([^>]*)>", msg, re.M)
        self.assertTrue(m, msg)
        sender = m.group(1)
        tm = TAG_RE.match(sender)
        self.assertTrue(tm, f"envelope sender not signed: {sender}")
        self.assertEqual(tm.group(1), "alice@local.example.test")
        # The tag verifies in the daemon: a bounce to it passes the policy check.
        reply = self.sw.policy(sender="", recipient=sender)
        self.assertEqual(reply.get("action"), "DUNNO", reply)
        # An untrusted, unauthenticated client's sender is left alone.
        token2 = "unsigned-" + uuid.uuid4().hex[:12]
        rc, transcript = h.swaks(self.pf.smtp_port, BOB, from_="carol@example.net",
                                 client_addr=self.OUTSIDER, headers=[f"Subject: batv {token2}"])
        self.assertEqual(rc, 0, transcript)
        msg2 = self.pf.wait_message(token2, timeout=10)
        self.assertTrue(msg2, transcript)
        self.assertRegex(msg2, r"(?m)^Return-Path: <carol@example\.net>")

    def test_5_forged_bounce_refused_tagged_bounce_delivered(self):
        token = "forged-" + uuid.uuid4().hex[:12]
        rc, transcript = h.swaks(self.pf.smtp_port, BOB, from_="<>", client_addr=self.OUTSIDER,
                                 headers=[f"Subject: bounce {token}"])
        self.assertNotEqual(rc, 0, transcript)
        self.assertTrue(any(r.startswith("550 5.7.1") for r in h.smtp_replies(transcript, "5")),
                        transcript)
        self.assertIn("MAIL FROM:<>", transcript)
        time.sleep(0.3)
        self.assertEqual(self.pf.count_messages(token), 0)

        rc, tagged, err = self.sw.cli("batv", "sign", BOB)
        self.assertEqual(rc, 0, err)
        tagged = tagged.strip()
        token = "bounce-" + uuid.uuid4().hex[:12]
        rc, transcript = h.swaks(self.pf.smtp_port, tagged, from_="<>", client_addr=self.OUTSIDER,
                                 headers=[f"Subject: bounce {token}"])
        self.assertEqual(rc, 0, transcript)
        msg = self.pf.wait_message(token, timeout=10)
        self.assertTrue(msg, f"bounce to {tagged} not delivered to bob:\n{transcript}")
        self.assertRegex(msg, r"(?m)^Return-Path: <>")
        # An unknown local part, tagged or not, is still refused by Postfix itself.
        rc, transcript = h.swaks(self.pf.smtp_port, "nobody@local.example.test",
                                 client_addr=self.OUTSIDER)
        self.assertNotEqual(rc, 0, transcript)


if __name__ == "__main__":
    h.main()
