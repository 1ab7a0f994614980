#!/usr/bin/python3
"""spamward as the policy service of a real Postfix (issue 2, point 9).

One private Postfix (check_policy_service inet:127.0.0.1:<spamward policy port>) and one
spamward, shared by the steps below, which run in order (test_1..test_4):
  1. a deny-listed client (`spamward deny add`, made while serve runs, no reload) is
     refused at RCPT with spamward's text; nothing is queued or delivered;
  2. another client's mail reaches bob's Maildir;
  3. spamward killed with kill -9: Postfix answers 4xx at RCPT (swaks exit 24), nothing is
     queued or delivered, so the sender keeps the mail; after a restart the same mail is
     delivered, exactly once;
  4. the deny list survived the kill -9 (store durability), also for an entry added just
     before the kill.
Each decision leaves a decision line in spamward's log (client, action, symbols).
Clients are presented with XCLIENT (192.0.2.x), and `[network] trusted = []`.
"""

import os
import re
import sys
import time
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

DENIED = "192.0.2.66"
DENIED_LATE = "192.0.2.67"  # added just before the kill -9
GOOD = "192.0.2.10"
RCPT = "bob@local.example.test"


def decision_line(sw, client, action, since=0, timeout=3.0, symbol=None):
    """The decision log line for `client` with `action` (text format, decision_log.h)."""
    def match(line):
        if "decision" not in line:
            return False
        if not re.search(r"client=" + re.escape(client) + r"(\s|$)", line):
            return False
        if not re.search(r"action=" + action + r"\b", line, re.I):
            return False
        return symbol is None or symbol in line
    return sw.wait_log(match, since=since, timeout=timeout)


class PolicyWithPostfix(h.IntegrationCase):
    # One spamward and one Postfix for the whole class: the steps build on each other.
    @classmethod
    def setUpClass(cls):
        cls.tmp = h.make_tempdir()
        cls.sw = h.Spamward(cls.tmp)
        cls.sw.start()
        cls.pf = h.Postfix(cls.tmp, cls.sw.policy_port, policy_timeout="3s")
        cls.pf.start()
        # The deny entry is made while serve runs, without a reload.
        rc, out, err = cls.sw.cli("deny", "add", DENIED, "--comment", "integration test")
        if rc != 0:
            cls.pf.stop()
            cls.sw.stop()
            raise AssertionError(f"deny add failed: rc={rc} out={out!r} err={err!r}")
        cls.deny_added_at = time.monotonic()

    @classmethod
    def tearDownClass(cls):
        left = cls.pf.stop()
        cls.sw._cleanup()
        assert not left, f"Postfix processes left after stop: {left}"

    def setUp(self):
        self._servers = []
        self.addCleanup(self._finish_class)

    def _finish_class(self):
        if self._failed():
            print("\n" + self.sw.diagnostics() + "\n" + self.pf.diagnostics(), file=sys.stderr)

    def send(self, client, token, **kw):
        return h.swaks(self.pf.smtp_port, RCPT, client_addr=client,
                       headers=[f"Subject: spamward test {token}",
                                f"Message-Id: <{token}@example.net>"], **kw)

    def assert_not_queued_or_delivered(self, token):
        self.assertEqual(self.pf.queue(), [], "Postfix queue should be empty")
        time.sleep(0.3)  # delivery is asynchronous: give a wrongly accepted mail time to land
        self.assertEqual(self.pf.count_messages(token), 0, f"message {token} was delivered")

    # 1 --------------------------------------------------------------------------------
    def test_1_denied_client_refused_at_rcpt(self):
        # A running daemon sees the change within a second (DESIGN §3.2); the policy
        # protocol itself tells us when it is in force, and what spamward's text is.
        reply = self.sw.wait_action("REJECT", timeout=2.0, client_address=DENIED)
        self.assertLess(time.monotonic() - self.deny_added_at, 2.5)
        m = re.match(r"^REJECT 5\.7\.1 (\S.*)$", reply["action"])
        self.assertTrue(m, f"deny-listed client should get 'REJECT 5.7.1 <text>', got {reply}")
        text = m.group(1)

        since = self.sw.log_size()
        token = "deny-" + uuid.uuid4().hex[:12]
        rc, transcript = self.send(DENIED, token)
        self.assertEqual(rc, 24, f"swaks should report 'no RCPT accepted' (24):\n{transcript}")
        rcpt_replies = [r for r in h.smtp_replies(transcript) if "Recipient address rejected" in r]
        self.assertEqual(len(rcpt_replies), 1, transcript)
        self.assertTrue(rcpt_replies[0].startswith("554 5.7.1 "), rcpt_replies[0])
        self.assertIn(text, rcpt_replies[0], "spamward's text should reach the SMTP client")
        self.assertNotIn("354", [r[:3] for r in h.smtp_replies(transcript)], "DATA must not start")
        self.assert_not_queued_or_delivered(token)

        line = decision_line(self.sw, DENIED, "reject", since=since, symbol="DENYLIST")
        self.assertTrue(line, "no decision log line 'client=192.0.2.66 ... action=reject ... DENYLIST'"
                              f":\n{self.sw.log_text(since)}")

    # 2 --------------------------------------------------------------------------------
    def test_2_other_client_delivered(self):
        since = self.sw.log_size()
        token = "good-" + uuid.uuid4().hex[:12]
        rc, transcript = self.send(GOOD, token)
        self.assertEqual(rc, 0, transcript)
        self.assertTrue(any(r.startswith("250 2.0.0 Ok: queued as") for r in h.smtp_replies(transcript)),
                        transcript)
        msg = self.pf.wait_message(token, timeout=10)
        self.assertTrue(msg, f"message {token} did not reach the Maildir")
        self.assertIn(f"[{GOOD}]", msg, "the Received header should show the XCLIENT address")
        self.assertEqual(self.pf.count_messages(token), 1)
        self.assertTrue(h.wait_until(lambda: self.pf.queue() == [], 5), "queue should drain")

        line = decision_line(self.sw, GOOD, "accept", since=since)
        self.assertTrue(line, f"no decision log line 'client={GOOD} ... action=accept':\n"
                              f"{self.sw.log_text(since)}")
        self.assertIn("symbols=", line, "the decision line should list the symbols")

    # 3 --------------------------------------------------------------------------------
    def test_3_killed_spamward_means_4xx_then_delivery_after_restart(self):
        # An entry added just before the crash must survive it too (step 4).
        rc, out, err = self.sw.cli("deny", "add", DENIED_LATE)
        self.assertEqual(rc, 0, err)
        self.sw.kill9()
        self.assertFalse(h.port_accepts(self.sw.policy_port), "policy port still open after kill -9")

        token = "retry-" + uuid.uuid4().hex[:12]
        t0 = time.monotonic()
        rc, transcript = self.send(GOOD, token)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 24, f"RCPT should be refused while spamward is down:\n{transcript}")
        rcpt_replies = [r for r in h.smtp_replies(transcript) if "Recipient address rejected" in r]
        self.assertEqual(len(rcpt_replies), 1, transcript)
        self.assertRegex(rcpt_replies[0], r"^4\d\d 4\.\d+\.\d+ ",
                         "a temporary (4xx) refusal tells the sender to keep the mail and retry")
        self.assertFalse(h.smtp_replies(transcript, "5"), "no permanent refusal while spamward is down")
        self.assertLess(elapsed, 20, "the 4xx should come quickly (policy service refused)")
        self.assert_not_queued_or_delivered(token)

        # Back up: the same mail (same Message-Id) now gets through, exactly once.
        self.sw.start()
        rc, transcript = self.send(GOOD, token)
        self.assertEqual(rc, 0, f"after the restart the retried mail should be accepted:\n{transcript}")
        self.assertTrue(self.pf.wait_message(token, timeout=10), f"retried message {token} not delivered")
        self.assertEqual(self.pf.count_messages(token), 1)

    # 4 --------------------------------------------------------------------------------
    def test_4_deny_list_survives_kill9(self):
        if not self.sw.alive():  # step 3 failed before its restart
            self.sw.start()
        rc, out, err = self.sw.cli("deny", "list")
        self.assertEqual(rc, 0, err)
        listed = [line.split()[0] for line in out.splitlines() if line.strip()]
        self.assertIn(DENIED, listed, out)
        self.assertIn(DENIED_LATE, listed, out)

        for client in (DENIED, DENIED_LATE):
            since = self.sw.log_size()
            token = "after-restart-" + uuid.uuid4().hex[:12]
            rc, transcript = self.send(client, token)
            self.assertEqual(rc, 24, f"{client} should still be refused after kill -9:\n{transcript}")
            self.assertTrue([r for r in h.smtp_replies(transcript, "554 5.7.1")], transcript)
            self.assert_not_queued_or_delivered(token)
            self.assertTrue(decision_line(self.sw, client, "reject", since=since, symbol="DENYLIST"),
                            self.sw.log_text(since))


if __name__ == "__main__":
    h.main()
