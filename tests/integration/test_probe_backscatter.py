#!/usr/bin/python3
"""`spamward probe backscatter HOST[:PORT]` against two private Postfix instances (issue 7,
part 3's last bullet; DESIGN §3.2). No spamward daemon is involved.

- "safe": virtual mailboxes for local.example.test without a catch-all (bob and postmaster
  only), so Postfix refuses unknown users at RCPT (550 5.1.1): exit 0.
- "vulnerable": the harness default catch-all mailbox for local.example.test, plus
  backup.example.test as a relay domain with an empty relay_recipient_maps (a backup MX
  without the recipient list: it accepts every recipient and would bounce later; its
  relay transport is deferred, so nothing could leave anyway): exit 1
  for both domains.
- The safe instance probed for the domain of its greeting (mx.example.test, which it does not
  receive mail for): postmaster is refused, exit 2. A port where nothing listens: exit 2.
  Bad usage: exit 2.
After every probe: nothing was delivered (no file under the Maildirs), nothing is queued, and
Postfix's disconnect log line shows RSET and QUIT but no DATA.

Both instances have `smtpd_recipient_restrictions = reject_unauth_destination` (the harness
default also asks a policy service, which this test does not run).
"""

import os
import re
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

NO_POLICY = "smtpd_recipient_restrictions = reject_unauth_destination\n"

STRICT_VMAILBOX = """\
bob@local.example.test          local.example.test/bob/
postmaster@local.example.test   local.example.test/postmaster/
"""


def probe(*args, timeout=60):
    return h.run([h.BIN, "probe", "backscatter", *args], timeout=timeout)


class ProbeBackscatter(h.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp_class = h.make_tempdir()
        unused_policy_port = h.free_port()  # nothing listens there; no restriction uses it
        strict_map = os.path.join(cls.tmp_class, "safe", "etc", "vmailbox-strict")
        cls.safe = h.Postfix(cls.tmp_class, unused_policy_port, name="safe",
                             extra_main_cf=NO_POLICY + f"virtual_mailbox_maps = texthash:{strict_map}\n")
        h.Postfix._write(strict_map, STRICT_VMAILBOX)
        os.utime(strict_map, (0, 0))  # an old file: no "hot file" wait in postfix commands
        cls.vulnerable = h.Postfix(cls.tmp_class, unused_policy_port, name="vulnerable",
                                   extra_main_cf=NO_POLICY + (
                                       "relay_domains = backup.example.test\n"
                                       "relay_recipient_maps =\n"
                                       # Not error: or retry:, which smtpd refuses at RCPT.
                                       # master.cf has no "relay" service and the transport
                                       # is deferred: even a queued message stays here.
                                       "relay_transport = relay:[127.0.0.1]:9\n"
                                       "defer_transports = relay\n"))
        cls.safe.start()
        cls.vulnerable.start()

    @classmethod
    def tearDownClass(cls):
        for pf in (cls.vulnerable, cls.safe):
            left = pf.stop()
            if left:
                print(f"{pf!r}: processes left after stop: {left}", file=sys.stderr)

    def tearDown(self):
        if self._failed():
            for pf in (self.safe, self.vulnerable):
                print("\n" + pf.diagnostics(), file=sys.stderr)

    # helpers ---------------------------------------------------------------------------
    def delivered_files(self, pf):
        found = []
        for dirpath, _dirs, files in os.walk(pf.mail):
            found += [os.path.join(dirpath, f) for f in files]
        return found

    def disconnect_lines(self, pf):
        try:
            with open(pf.maillog, errors="replace") as f:
                return [l for l in f if "disconnect from" in l]
        except FileNotFoundError:
            return []

    def assert_nothing_sent(self, pf, sessions_before):
        """The probe's session ended with RSET and QUIT, without DATA; nothing queued or
        delivered."""
        lines = h.wait_until(
            lambda: (lambda ls: ls if len(ls) > sessions_before else None)(self.disconnect_lines(pf)),
            10, what="postfix disconnect line")
        self.assertIsNotNone(lines, f"no disconnect line in {pf.maillog}")
        last = lines[-1]
        self.assertRegex(last, r"\bmail=1\b", last)
        self.assertRegex(last, r"\brset=1\b", last)
        self.assertRegex(last, r"\bquit=1\b", last)
        self.assertNotIn("data=", last)
        self.assertNotIn("bdat=", last)
        with open(pf.maillog, errors="replace") as f:
            log = f.read()
        # An accepted RCPT opens a queue file (cleanup logs nothing yet); a message would
        # show as cleanup's "message-id=", qmgr's "nrcpt=" and a delivery or bounce "status=".
        for sign in ("message-id=", "nrcpt=", "status="):
            self.assertNotIn(sign, log, f"a message went through {pf!r}")
        self.assertEqual(pf.queue(), [])
        self.assertEqual(self.delivered_files(pf), [])

    def run_probe(self, pf, *args, expect_rc):
        before = len(self.disconnect_lines(pf))
        rc, out, err = probe(f"127.0.0.1:{pf.smtp_port}", "--verbose", "--timeout", "20", *args)
        self.assertEqual(rc, expect_rc, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertNotRegex(out, r"(?m)^C: (DATA|BDAT)")
        self.assertRegex(out, r"(?m)^C: QUIT$")
        self.assertEqual(err, "")
        self.assert_nothing_sent(pf, before)
        return out

    # tests -----------------------------------------------------------------------------
    def test_safe_server_exit_0(self):
        out = self.run_probe(self.safe, "--domain", "local.example.test", expect_rc=0)
        self.assertIn("C: RCPT TO:<postmaster@local.example.test>", out)
        m = re.search(r"(?m)^C: RCPT TO:<(spamward-probe-[0-9a-f]{12}@local\.example\.test)>$", out)
        self.assertIsNotNone(m, out)
        self.assertRegex(out, r"(?m)^S: 550 5\.1\.1 ")
        self.assertIn("refuses unknown recipients in the SMTP dialogue: safe", out)

    def test_catch_all_server_exit_1(self):
        out = self.run_probe(self.vulnerable, "--domain", "local.example.test", expect_rc=1)
        self.assertRegex(out, r"(?m)^127\.0\.0\.1:\d+ accepts mail for the unknown recipient "
                              r"<spamward-probe-[0-9a-f]{12}@local\.example\.test>: vulnerable")
        advice = " ".join(out.split())  # the advice is wrapped at 100 columns
        self.assertIn("smtpd_reject_unlisted_recipient = yes", advice)
        self.assertIn("catch-all", advice)

    def test_backup_mx_without_recipient_list_exit_1(self):
        out = self.run_probe(self.vulnerable, "--domain", "backup.example.test",
                             "--rcpt", "no-such-user-7f3a@backup.example.test", expect_rc=1)
        self.assertIn("C: RCPT TO:<no-such-user-7f3a@backup.example.test>", out)
        advice = " ".join(out.split())  # the advice is wrapped at 100 columns
        self.assertIn("relay_recipient_maps", advice)
        self.assertIn("A backup MX needs the same list", advice)

    def test_domain_from_greeting_not_received_here_exit_2(self):
        # No --domain: the greeting's mx.example.test, which neither instance receives mail
        # for; Postfix refuses postmaster@ there (relay access denied) and the probe stops.
        out = self.run_probe(self.safe, expect_rc=2)
        self.assertIn("C: RCPT TO:<postmaster@mx.example.test>", out)
        self.assertNotRegex(out, r"(?m)^C: RCPT TO:<spamward-probe-")
        self.assertRegex(out, r"could not tell: the server refused <postmaster@mx\.example\.test> "
                              r"\(554 5\.7\.1 ")
        self.assertIn("--domain", out)

    def test_nothing_listening_exit_2(self):
        port = h.free_port()
        rc, out, err = probe(f"127.0.0.1:{port}", "--timeout", "5")
        self.assertEqual(rc, 2, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertIn("could not tell", out)
        self.assertIn("cannot connect", out)

    def test_bad_usage_exit_2(self):
        for args in (["127.0.0.1:0"], ["127.0.0.1:25", "--rcpt", "a@b.example\r\nDATA"],
                     ["127.0.0.1:25", "--timeout", "0"], []):
            rc, out, err = probe(*args)
            self.assertEqual(rc, 2, f"{args}: stdout:\n{out}\nstderr:\n{err}")
            self.assertNotEqual(err.strip(), "", args)
            self.assertEqual(out, "", args)


if __name__ == "__main__":
    h.main()
