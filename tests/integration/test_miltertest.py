#!/usr/bin/python3
"""The milter wire protocol of a running `spamward serve` (issue 5), driven by miltertest
(Debian package `miltertest`, Lua scripts in tests/integration/milter/) and, for what
miltertest cannot send (raw over-limit frames, SMFIC_QUIT_NC), by a small client below.

  - full_transaction.lua: negotiation (actions, steps, macro lists), macros, every command,
    forged X-Spam-* headers deleted by index, headers added, abort and a second message;
    the decision line carries the queue id and client name from the macros;
  - refusals.lua: a deny-listed client refused at MAIL; greylisting answered once at DATA
    for a message with two recipients, never at RCPT;
  - large_body.lua: a 70,000-byte body chunk accepted; SKIP past max_message_bytes (CONTINUE
    when the MTA did not offer SMFIP_SKIP); the message accepted and scored;
  - raw: a frame over 1 MiB closes that connection (log line, metric) while another
    connection in the middle of a message goes on; QUIT_NC starts a new SMTP session on the
    same connection; a truncated frame closes quietly.
"""

import os
import struct
import subprocess
import sys
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from milter_client import Milter  # noqa: E402

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "milter")
DENIED = "192.0.2.66"


class MilterWire(h.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = h.make_tempdir()
        cls.milter_port = h.free_port()
        cls.sw = h.Spamward(cls.tmp, {
            "listen": {"milter": f"127.0.0.1:{cls.milter_port}"},
            "greylist": {"mode": "selective", "min_delay": "1m"},
            "scores": {"HELO_NOT_FQDN": 3.5},
            "limits": {"max_message_bytes": 200000},
        })
        cls.sw.start()
        if not h.wait_until(lambda: h.port_accepts(cls.milter_port), 10):
            raise AssertionError("no milter listener:\n" + cls.sw.diagnostics())
        rc, out, err = cls.sw.cli("deny", "add", DENIED)
        if rc != 0:
            cls.sw._cleanup()
            raise AssertionError(f"deny add failed: {err}")

    @classmethod
    def tearDownClass(cls):
        cls.sw._cleanup()

    def setUp(self):
        self._servers = []
        self.addCleanup(self._finish_class)

    def _finish_class(self):
        if self._failed():
            print("\n" + self.sw.diagnostics(), file=sys.stderr)

    def miltertest(self, script, **defines):
        argv = ["miltertest", "-s", os.path.join(SCRIPTS, script), "-D", f"port={self.milter_port}"]
        for k, v in defines.items():
            argv += ["-D", f"{k}={v}"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, errors="replace")
        return p.returncode, p.stdout + p.stderr

    def test_full_transaction(self):
        qid = "MT" + uuid.uuid4().hex[:10].upper()
        since = self.sw.log_size()
        rc, out = self.miltertest("full_transaction.lua", qid=qid)
        self.assertEqual(rc, 0, out)
        self.assertIn("full_transaction: ok", out)
        # The macros reached the transaction: queue id (i) and Postfix's client name.
        line = self.sw.wait_log(lambda l: "decision" in l and f"id={qid}" in l and "stage=eom" in l,
                                since=since, timeout=3)
        self.assertTrue(line, self.sw.log_text(since))
        self.assertIn("client=192.0.2.10", line)
        self.assertIn("client_name=mx.example.net", line)
        self.assertIn("helo=mx.example.net", line)
        self.assertIn("from=<alice@example.net>", line)
        self.assertIn("<bob@example.org>", line)
        self.assertIn("<carol@example.org>", line)

    def test_refusals(self):
        since = self.sw.log_size()
        rc, out = self.miltertest("refusals.lua", denied=DENIED)
        self.assertEqual(rc, 0, out)
        self.assertIn("refusals: ok", out)
        self.assertTrue(self.sw.wait_log(lambda l: "decision" in l and f"client={DENIED}" in l
                                         and "DENYLIST" in l, since=since), self.sw.log_text(since))
        self.assertTrue(self.sw.wait_log(lambda l: "decision" in l and "client=192.0.2.77" in l
                                         and "stage=data" in l and "action=greylist" in l,
                                         since=since), self.sw.log_text(since))

    def test_refusal_texts_on_the_wire(self):
        m = Milter(self.milter_port)
        try:
            self.assertEqual(m.negotiate()[0], b"O")
            self.assertEqual(m.connect(DENIED)[0], b"c", "answered at MAIL, where the text shows")
            code, data = m.command(b"M", b"<a@example.net>\0")
            self.assertEqual(code, b"y")
            self.assertRegex(data.decode(), r"^550 5\.7\.1 Access denied by the site's administrator\0$")
        finally:
            m.close()

    def test_large_body(self):
        since = self.sw.log_size()
        rc, out = self.miltertest("large_body.lua")
        self.assertEqual(rc, 0, out)
        self.assertIn("large_body: ok", out)
        self.assertTrue(self.sw.wait_log(r"larger than max_message_bytes \(200000\)", since=since),
                        self.sw.log_text(since))
        self.assertGreaterEqual(self.sw.metric("spamward_milter_truncated_total") or 0, 2)

    def test_oversized_frame_closes_only_that_connection(self):
        since = self.sw.log_size()
        good = Milter(self.milter_port)
        bad = Milter(self.milter_port)
        try:
            self.assertEqual(good.negotiate()[0], b"O")
            self.assertEqual(good.connect("192.0.2.10", "mx.example.net")[0], b"c")
            self.assertEqual(good.command(b"M", b"<a@example.net>\0")[0], b"c")
            self.assertEqual(good.command(b"R", b"<b@example.org>\0")[0], b"c")
            self.assertEqual(good.command(b"N")[0], b"c")

            self.assertEqual(bad.negotiate()[0], b"O")
            # A length of 1 MiB + 2: refused as soon as the length is read, before any data.
            bad.sock.sendall(struct.pack(">I", (1 << 20) + 2) + b"B" + b"x" * 1000)
            self.assertTrue(h.wait_closed(bad.sock, 5), "the connection should be closed")
            line = self.sw.wait_log(r"milter: closing connection from 127\.0\.0\.1:\d+: frame of "
                                    r"1048578 bytes is over the limit", since=since)
            self.assertTrue(line, self.sw.log_text(since))
            self.assertGreaterEqual(self.sw.metric("spamward_protocol_errors_total",
                                                   'server="milter",reason="frame_too_large"')
                                    or 0, 1)

            # The other connection finishes its message.
            self.assertEqual(good.command(b"B", b"hello\r\n")[0], b"c")
            replies = good.eom()
            self.assertEqual(replies[-1][0], b"a")
            self.assertTrue(any(c == b"h" and d.startswith(b"X-Spam-Score\0") for c, d in replies))
        finally:
            good.close()
            bad.close()

    def test_quit_nc_starts_a_new_session(self):
        since = self.sw.log_size()
        m = Milter(self.milter_port)
        try:
            self.assertEqual(m.negotiate()[0], b"O")
            self.assertEqual(m.connect(DENIED)[0], b"c")
            self.assertEqual(m.command(b"M", b"<a@example.net>\0")[0], b"y",
                             "the first session's client is denied")
            m.send(b"K")  # QUIT_NC: no reply; the connection stays open for a new session
            self.assertEqual(m.connect("192.0.2.11", "mx2.example.net")[0], b"c")
            self.assertEqual(m.command(b"H", b"mx2.example.net\0")[0], b"c")
            self.assertEqual(m.command(b"M", b"<a@example.net>\0")[0], b"c")
            self.assertEqual(m.command(b"R", b"<b@example.org>\0")[0], b"c")
            self.assertEqual(m.command(b"N")[0], b"c")
            replies = m.eom()
            self.assertEqual(replies[-1][0], b"a")
            # A new OPTNEG on the same connection is fine too.
            m.send(b"K")
            self.assertEqual(m.negotiate()[0], b"O")
            m.send(b"Q")
            self.assertTrue(h.wait_closed(m.sock, 5), "QUIT closes")
        finally:
            m.close()
        line = self.sw.wait_log(lambda l: "decision" in l and "client=192.0.2.11" in l
                                and "stage=eom" in l, since=since)
        self.assertTrue(line, self.sw.log_text(since))
        self.assertIn("helo=mx2.example.net", line)
        self.assertNotIn("DENYLIST", line, "nothing of the first session carries over")

    def test_truncated_frame_and_garbage(self):
        since = self.sw.log_size()
        m = Milter(self.milter_port)
        try:
            m.sock.sendall(b"\x00\x00")  # half a length, then gone
        finally:
            m.close()
        m = Milter(self.milter_port)
        try:
            m.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not a milter: an absurd length
            self.assertTrue(h.wait_closed(m.sock, 5))
        finally:
            m.close()
        self.assertTrue(self.sw.wait_log(r"milter: closing connection .*frame of \d+ bytes",
                                         since=since), self.sw.log_text(since))
        # spamward is still serving.
        m = Milter(self.milter_port)
        try:
            self.assertEqual(m.negotiate()[0], b"O")
        finally:
            m.close()


if __name__ == "__main__":
    h.main()
