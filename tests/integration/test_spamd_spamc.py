#!/usr/bin/python3
"""The spamd protocol of a running `spamward serve` (issue 5, part 2), driven by the real
SpamAssassin client `spamc` (Debian package `spamc`) and, for what spamc never sends (garbage,
a short body, a huge Content-length), by raw sockets.

One daemon serves the class: [listen] spamd on a free port, allow_tell off, max_message_bytes
64 KiB, and two [scores] overrides so that content alone can give each answer:
  - a clean message scores 0;
  - no Message-ID: HDR_MESSAGE_ID_MISSING = 4.0, accept (over greylist's 3.0, which never
    applies without a client address);
  - no Date: HDR_DATE_MISSING = 7.0, tag;
  - GTUBE: reject (1000 points).
`spamc -c` must exit 1 exactly for tag, tempfail and reject (DESIGN §3.5).
"""

import email.utils
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

SPAMC = shutil.which("spamc") or "/usr/bin/spamc"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
MAX_MESSAGE_BYTES = 65536
# Symbols that may appear on any message here with 0 points (no DKIM signature).
ZERO_POINT = {"DKIM_NONE"}


def message(date=True, message_id=True, body="Hello Bob,\nsee you at lunch.\n", extra="", eol="\n"):
    lines = ["From: Alice <alice@example.net>", "To: Bob <bob@example.org>", "Subject: lunch"]
    if date:
        lines.append("Date: " + email.utils.formatdate(localtime=False))
    if message_id:
        lines.append("Message-ID: <" + str(time.time_ns()) + "@example.net>")
    text = "\n".join(lines) + "\n" + extra + "\n" + body
    return text.replace("\n", eol).encode()


class SpamdSpamc(h.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp_class = h.make_tempdir()
        cls.spamd_port = h.free_port()
        cls.sw = h.Spamward(cls.tmp_class, {
            "listen": {"spamd": f"127.0.0.1:{cls.spamd_port}"},
            "limits": {"max_message_bytes": MAX_MESSAGE_BYTES},
            "scores": {"HDR_MESSAGE_ID_MISSING": 4.0, "HDR_DATE_MISSING": 7.0},
        })
        cls.sw.start()
        if not h.wait_until(lambda: h.port_accepts(cls.spamd_port), 10):
            raise RuntimeError("spamd port not listening:\n" + cls.sw.diagnostics())

    @classmethod
    def tearDownClass(cls):
        cls.sw._cleanup()

    def setUp(self):
        self._servers = []
        self.addCleanup(self._report)

    def _report(self):
        if self._failed():
            print("\n" + self.sw.diagnostics(), file=sys.stderr)

    # helpers ------------------------------------------------------------------------------
    def spamc(self, *args, input=b"", timeout=20):
        """(rc, stdout bytes, stderr text) of spamc against our daemon (bytes: line ends kept)."""
        argv = [SPAMC, "-d", "127.0.0.1", "-p", str(self.spamd_port), "--connect-retries=1",
                "-t", "10", *args]
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")

    def raw(self, data, half_close=True, timeout=10.0):
        """Sends bytes on a fresh connection, half-closes, reads until the server closes."""
        with socket.create_connection(("127.0.0.1", self.spamd_port), timeout=timeout) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            if half_close:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                out += chunk
            return out

    def check(self, msg):
        rc, out, err = self.spamc("-c", input=msg)
        m = re.fullmatch(rb"(-?\d+\.\d)/(\d+\.\d)\n", out)
        self.assertTrue(m, f"spamc -c printed {out!r} (stderr {err!r})")
        return rc, float(m.group(1)), float(m.group(2))

    def assert_still_serving(self):
        self.assertTrue(self.sw.alive(), "spamward died")
        rc, out, err = self.spamc("-K")
        self.assertEqual((rc, out), (0, b"SPAMD/1.5 0\n"), err)

    # tests --------------------------------------------------------------------------------
    def test_ping(self):
        # spamc -K prints the version and code of spamd's "SPAMD/1.5 0 PONG".
        self.assert_still_serving()

    def test_check_exit_codes_follow_the_action(self):
        self.assertEqual(self.check(message()), (0, 0.0, 6.0), "clean: accept")
        self.assertEqual(self.check(message(message_id=False)), (0, 4.0, 6.0),
                         "4 points: accept (greylisting needs a client address)")
        self.assertEqual(self.check(message(date=False)), (1, 7.0, 6.0), "7 points: tag")
        rc, score, threshold = self.check(message(body=GTUBE + "\n"))
        self.assertEqual((rc, threshold), (1, 6.0), "GTUBE: reject")
        self.assertGreaterEqual(score, 1000.0)
        # The decisions were logged by the engine: tag and reject (GTUBE) among them.
        self.assertTrue(self.sw.wait_log(r"action=tag\b"), self.sw.log_text())
        self.assertTrue(self.sw.wait_log(r"action=reject\b.*GTUBE"), self.sw.log_text())

    def test_report(self):
        rc, out, err = self.spamc("-R", input=message(body=GTUBE + "\n"))
        self.assertEqual(rc, 0, err)
        text = out.decode()
        first, _, report = text.partition("\n")
        self.assertRegex(first, r"^10\d\d\.\d/6\.0$")
        self.assertIn("spamward judged this message spam: action reject", report)
        self.assertIn("Content analysis details:", report)
        self.assertRegex(report, r"(?m)^ pts rule name +description$")
        self.assertRegex(report, r"(?m)^1000\.0 GTUBE +the GTUBE test string")
        # A ham message gets a report too (-R), without GTUBE.
        rc, out, _ = self.spamc("-R", input=message(date=False))
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith(b"7.0/6.0\n"), out)
        self.assertRegex(out.decode(), r"(?m)^ 7\.0 HDR_DATE_MISSING +no Date header$")
        self.assertLess(out.decode().index("HDR_DATE_MISSING  "), out.decode().index("DKIM_NONE")
                        if "DKIM_NONE" in out.decode() else len(out), "highest points first")
        self.assertNotIn("GTUBE", out.decode())

    def scoring(self, names):
        """The names that carry points (informational 0-point symbols such as DKIM_NONE are
        left out; they come and go as checks are added)."""
        return [n for n in names if n not in ZERO_POINT]

    def test_symbols(self):
        rc, out, err = self.spamc("-y", input=message(body=GTUBE + "\n"))
        self.assertEqual(rc, 0, err)
        names = out.decode().strip().split(",")
        self.assertEqual(names, sorted(names), "sorted, as spamd sorts them")
        self.assertEqual(self.scoring(names), ["GTUBE"])
        rc, out, _ = self.spamc("-y", input=message(date=False, message_id=False))
        self.assertEqual(self.scoring(out.decode().strip().split(",")),
                         ["HDR_DATE_MISSING", "HDR_MESSAGE_ID_MISSING"])
        rc, out, _ = self.spamc("-y", input=message())
        self.assertEqual(self.scoring([n for n in out.decode().strip().split(",") if n]), [])

    def test_process_adds_our_headers_and_removes_forged_ones(self):
        forged = ("X-Spam-Flag: YES\nX-Spam-Status: No, score=-100.0\n\tfolded=forged\n"
                  "X-Spamward-Symbols: ALLOWLIST(-20.00)\nX-Spam-Score: -99\n")
        for eol in ("\n", "\r\n"):
            with self.subTest(eol=repr(eol)):
                body = "Body\nX-Spam-Flag: YES stays in the body\n"
                msg = message(extra=forged, body=body, eol=eol)
                rc, out, err = self.spamc(input=msg)
                self.assertEqual(rc, 0, err)
                head, sep, rest = out.partition(eol.encode() * 2)
                self.assertTrue(sep, out)
                self.assertEqual(rest, body.replace("\n", eol).encode(),
                                 "the body is returned byte for byte")
                lines = head.decode().split(eol)
                self.assertNotIn("X-Spam-Flag: YES", lines)
                self.assertFalse(any("forged" in l or "-99" in l or "ALLOWLIST" in l for l in lines), lines)
                self.assertIn("X-Spam-Score: 0.00", lines)
                ours = [l for l in lines if l.startswith(("X-Spam", "X-Spamward"))]
                self.assertEqual([l.split(":")[0] for l in ours],
                                 ["X-Spam-Score", "X-Spamward-Symbols", "X-Spam-Status"], lines)
                self.assertRegex(ours[2], r"^X-Spam-Status: No, score=0\.0 required=6\.0 tests=")
                self.assertEqual(lines[:3], ["From: Alice <alice@example.net>",
                                             "To: Bob <bob@example.org>", "Subject: lunch"])
                self.assertEqual(lines[-3:], ours, "ours come last in the header block")
                if eol == "\n":
                    self.assertNotIn(b"\r", out)
                else:
                    self.assertNotIn(b"\n", out.replace(b"\r\n", b""), "CRLF throughout")
        # A tagged message: X-Spam-Flag: YES, once.
        rc, out, _ = self.spamc(input=message(date=False, extra="X-Spam-Flag: NO\n"))
        text = out.decode()
        self.assertEqual(text.count("X-Spam-Flag:"), 1, text)
        self.assertIn("\nX-Spam-Flag: YES\n", text)
        self.assertRegex(text, r"\nX-Spam-Status: Yes, score=7\.0 required=6\.0 tests=\S*HDR_DATE_MISSING")
        self.assertRegex(text, r"\nX-Spamward-Symbols: .*HDR_DATE_MISSING\(7\.00\)")
        # -E: the exit code says spam for PROCESS too.
        rc, _, _ = self.spamc("-E", input=message(date=False))
        self.assertEqual(rc, 1)

    def test_headers_mode(self):
        # --headers: spamd returns only the header block; spamc appends the original body.
        msg = message(extra="X-Spam-Flag: YES\n", body="the body\n")
        rc, out, err = self.spamc("--headers", input=msg)
        self.assertEqual(rc, 0, err)
        self.assertTrue(out.endswith(b"\n\nthe body\n"), out)
        self.assertIn(b"X-Spam-Status: No, score=0.0", out)
        self.assertNotIn(b"X-Spam-Flag", out)

    def test_process_adds_authentication_results_when_enabled(self):
        # [headers] authentication_results, in a daemon of its own: PROCESS returns one
        # Authentication-Results with our authserv-id (from [network] our_names); a forged one
        # with our id is removed, one with another id stays.
        port = h.free_port()
        sw = h.Spamward(self.tmp_class, {
            "listen": {"spamd": f"127.0.0.1:{port}"},
            "network": {"trusted": [], "our_names": ["mail.spamward.test"]},
            "headers": {"authentication_results": True},
        }, name="spamward-authres")
        self.addCleanup(sw._cleanup)
        sw.start()
        self.assertTrue(h.wait_until(lambda: h.port_accepts(port), 10), sw.diagnostics())
        forged = ("Authentication-Results: Mail.Spamward.Test; dkim=pass header.d=forged.example\n"
                  "Authentication-Results: other.example; spf=pass smtp.mailfrom=kept.example\n")
        argv = [SPAMC, "-d", "127.0.0.1", "-p", str(port), "--connect-retries=1", "-t", "10"]
        p = subprocess.run(argv, input=message(extra=forged), capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        head = p.stdout.decode().partition("\n\n")[0]
        fields = re.sub(r"\n[ \t]+", " ", head).split("\n")
        results = [l for l in fields if l.lower().startswith("authentication-results:")]
        self.assertEqual(results, [
            "Authentication-Results: other.example; spf=pass smtp.mailfrom=kept.example",
            "Authentication-Results: mail.spamward.test; dkim=none"], head)
        self.assertNotIn("forged.example", p.stdout.decode())
        # spamc -c (CHECK) is unchanged.
        p = subprocess.run(argv + ["-c"], input=message(), capture_output=True, timeout=20)
        self.assertEqual(p.stdout, b"0.0/6.0\n", p.stderr)

    def test_exim_request_shape(self):
        # Exim's spam.c (SpamAssassin variant) sends "REPORT SPAMC/1.2" with User and
        # Content-length, half-closes, reads to EOF and parses with sscanf
        # "SPAMD/%7s 0 EX_OK\r\nSpam: %*s ; %lf / %lf\r\n\r\n%n"; it then calls the message
        # spam ($spam_action "reject") when score >= threshold. (Exim itself is not installed
        # here: it would replace the test Postfix as the system MTA.)
        exim_format = re.compile(rb"SPAMD/(\S{1,7}) 0 EX_OK\r\nSpam: \S+ ; (\S+) / (\S+)\r\n\r\n")
        for msg, spam in ((message(), False), (message(date=False), True),
                          (message(body=GTUBE + "\n"), True)):
            reply = self.raw(b"REPORT SPAMC/1.2\r\nUser: nobody\r\nContent-length: %d\r\n\r\n"
                             % len(msg) + msg)
            m = exim_format.match(reply)
            self.assertTrue(m, reply)
            score, threshold = float(m.group(2)), float(m.group(3))
            self.assertEqual(score >= threshold, spam, reply)
            report = reply[m.end():].decode()
            self.assertIn("Content analysis details:", report)

    def test_learning_is_refused_without_allow_tell(self):
        since = self.sw.log_size()
        for kind in ("spam", "ham", "forget"):
            with self.subTest(kind=kind):
                rc, out, err = self.spamc("-L", kind, input=message())
                # spamd answers one error line and closes; spamc reports the failure
                # (EX_IOERR: it never gets the empty line that ends a reply).
                self.assertEqual(rc, 74, (out, err))
                self.assertNotIn(b"learned", out)
        self.assertTrue(self.sw.wait_log(r"spamd: TELL from .* refused: \[spamd\] allow_tell is off",
                                         since=since), self.sw.log_text(since))
        reply = self.raw(b"TELL SPAMC/1.5\r\nMessage-class: spam\r\nSet: local\r\n"
                         b"Content-length: 5\r\n\r\nhello")
        self.assertEqual(reply, b"SPAMD/1.0 69 Service Unavailable: TELL commands are not "
                                b"enabled ([spamd] allow_tell = false)\r\n")

    def test_large_message_is_scored_on_its_first_bytes(self):
        body = GTUBE + "\n" + ("x" * 76 + "\n") * 2000  # ~154 KB, over max_message_bytes
        msg = message(body=body)
        self.assertGreater(len(msg), MAX_MESSAGE_BYTES * 2)
        rc, score, _ = self.check_big(msg)
        self.assertEqual(rc, 1)
        self.assertGreaterEqual(score, 1000.0)
        self.assertTrue(self.sw.wait_log(r"larger than max_message_bytes"), self.sw.log_text())
        # PROCESS cannot return part of a message: an error, and spamc passes the message
        # through unchanged (its "safe fallback"), or with -x reports the failure.
        rc, out, err = self.spamc("-s", "1000000", input=msg)
        self.assertEqual((rc, out), (0, msg))
        rc, out, err = self.spamc("-x", "-s", "1000000", input=msg)
        self.assertNotEqual(rc, 0, "spamc -x must report the error")

    def check_big(self, msg):
        rc, out, err = self.spamc("-c", "-s", "1000000", input=msg)
        m = re.fullmatch(rb"(-?\d+\.\d)/(\d+\.\d)\n", out)
        self.assertTrue(m, f"spamc -c printed {out!r} (stderr {err!r})")
        return rc, float(m.group(1)), float(m.group(2))

    def test_bad_input_gets_an_error_and_others_are_unaffected(self):
        since = self.sw.log_size()
        # A slow client in the middle of a request stays open meanwhile, unharmed.
        slow = socket.create_connection(("127.0.0.1", self.spamd_port), timeout=10)
        slow.sendall(b"CHECK SPAMC/1.5\r\nContent-length: 30\r\n\r\nSubject: x\r\n")
        try:
            cases = [
                (b"GARBAGE\r\n\r\n", rb"^SPAMD/1\.0 76 Bad header line: \(request line is not"),
                (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                 rb"^SPAMD/1\.0 76 Bad header line: \(unknown command 'GET'\)\r\n$"),
                (b"CHECK SPAMC/1.5\r\nContent-length: 100\r\n\r\nonly a few bytes",
                 rb"^SPAMD/1\.0 76 Bad header line: \(Content-Length mismatch: Expected 100 bytes, "
                 rb"got 16 bytes\)\r\n$"),
                (b"CHECK SPAMC/1.5\r\nContent-length: 300000000\r\n\r\n" + b"x" * 1000,
                 rb"^SPAMD/1\.0 76 Bad header line: \(Content-length 300000000 is over the limit"),
                (b"CHECK SPAMC/1.5\r\nUser: " + b"u" * 100000 + b"\r\n\r\n",
                 rb"^SPAMD/1\.0 76 Bad header line: \(line longer than 1024 bytes\)\r\n$"),
                (b"\x00\xff\xfe\x80" + os.urandom(4096), rb"^SPAMD/1\.0 76 Bad header line: "),
                # spamc -z (zlib): spamward has no decompression; spamd without Compress::Zlib
                # answers the same way.
                (b"CHECK SPAMC/1.5\r\nCompress: zlib\r\nContent-length: 5\r\n\r\nxxxxx",
                 rb"^SPAMD/1\.0 76 Bad header line: \(compression not supported"),
            ]
            for data, want in cases:
                with self.subTest(data=data[:40]):
                    reply = self.raw(data)
                    self.assertRegex(reply, want)
                    self.assertEqual(reply.count(b"\n"), 1, "one line, then the server closes")
                    self.assert_still_serving()
            # The slow client finishes its request and gets its answer.
            slow.sendall(b"\r\nhello world\r\n   ")  # 30 bytes in all
            slow.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            self.assertRegex(answer, rb"^SPAMD/1\.1 0 EX_OK\r\nSpam: (True|False) ; \d+\.\d / 6\.0\r\n\r\n$")
        finally:
            slow.close()
        self.assertTrue(self.sw.wait_log(r"spamd: closing connection from 127\.0\.0\.1:\d+: "
                                         r"Content-Length mismatch", since=since),
                        self.sw.log_text(since))
        for reason in ("unknown_command", "content_length_mismatch", "content_length_too_big",
                       "line_too_long", "bad_request_line", "compression_unsupported"):
            value = self.sw.metric("spamward_protocol_errors_total",
                                   f'reason="{reason}",server="spamd"')
            if value is None:
                value = self.sw.metric("spamward_protocol_errors_total",
                                       f'server="spamd",reason="{reason}"')
            self.assertGreaterEqual(value or 0, 1, f"{reason} counted")

    def test_metrics(self):
        self.spamc("-c", input=message())
        self.spamc("-K")
        status, body, _ = self.sw.http_get("/metrics")
        self.assertEqual(status, 200)
        requests = h.metric_samples(body, "spamward_spamd_requests_total")
        self.assertGreaterEqual(requests.get('command="CHECK"', 0), 1, requests)
        self.assertGreaterEqual(requests.get('command="PING"', 0), 1, requests)
        gauges = h.metric_samples(body, "spamward_open_connections")
        self.assertIn('server="spamd"', gauges)


if __name__ == "__main__":
    h.main()
