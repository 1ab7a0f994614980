#!/usr/bin/python3
"""Hostile input against `spamward serve`'s policy server (issue 2, point 6 and 9; DESIGN §3.5
Limits): a request over a limit or malformed closes that connection with a log line, never
crashes or hangs anything, and other connections are unaffected.

One daemon serves every test of the class; after each bad input a normal request on a new
connection must still be answered, and the last test checks the daemon is alive (healthz).
"""

import os
import selectors
import socket
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

CLOSE_WAIT = 10.0  # seconds a malformed/over-limit connection may stay open
SLOW_CLOSE_WAIT = 15.0  # the server's request_timeout is 10 s (policy_server.h PolicyLimits)


class PolicyBadInput(h.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        # 1,000 connections: the client needs the fds, and so does the daemon (it inherits).
        cls.nofile = h.raise_nofile(8192)
        cls.tmp = h.make_tempdir()
        cls.sw = h.Spamward(cls.tmp)
        cls.sw.start()

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
    def connect(self):
        return socket.create_connection(("127.0.0.1", self.sw.policy_port), timeout=10)

    def send_tolerant(self, sock, data):
        """Sends data; the server may close (reset) before it is all sent. True if all sent."""
        try:
            sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def assert_still_serving(self):
        self.assertTrue(self.sw.alive(), "spamward died")
        t0 = time.monotonic()
        reply = self.sw.policy(timeout=5)
        self.assertEqual(reply.get("action"), "DUNNO", reply)
        self.assertLess(time.monotonic() - t0, 2.0, "a normal request should be answered at once")

    def assert_closed_with_log_line(self, sock, since, what):
        closed = h.wait_closed(sock, CLOSE_WAIT)
        sock.close()
        self.assertTrue(closed, f"{what}: the server kept the connection open for {CLOSE_WAIT}s")
        # policy_server.h: one log line "policy: closing connection from PEER: REASON".
        line = self.sw.wait_log(r"closing connection", since=since, timeout=3)
        self.assertTrue(line, f"{what}: no log line about the closed connection:\n{self.sw.log_text(since)}")

    # tests --------------------------------------------------------------------------------
    def test_binary_garbage(self):
        since = self.sw.log_size()
        s = self.connect()
        garbage = b"\x00\xff\xfe\x80GARBAGE\x01\x02\n\x00\x00\n" + bytes(range(256)) * 64 + os.urandom(64 * 1024)
        self.send_tolerant(s, garbage)
        self.assert_closed_with_log_line(s, since, "binary garbage")
        self.assert_still_serving()

    def test_one_mebibyte_line(self):
        since = self.sw.log_size()
        s = self.connect()
        line = b"request=smtpd_access_policy\nclient_address=" + b"A" * (1024 * 1024) + b"\n\n"
        self.send_tolerant(s, line)
        self.assert_closed_with_log_line(s, since, "1 MiB line")
        self.assert_still_serving()

    def test_ten_thousand_attributes(self):
        since = self.sw.log_size()
        s = self.connect()
        attrs = h.policy_attrs()
        for i in range(10_000):
            attrs[f"x_attr_{i:05d}"] = "1"
        self.send_tolerant(s, h.encode_request(attrs))
        self.assert_closed_with_log_line(s, since, "10,000 attributes")
        self.assert_still_serving()

    def test_unknown_attributes_are_ignored(self):
        # Not bad input: Postfix adds attributes over time, a few unknown ones are fine.
        reply = self.sw.policy(h.policy_attrs(future_attribute="x", another_new_one=""))
        self.assertEqual(reply.get("action"), "DUNNO", reply)

    def test_half_request_then_close(self):
        for cut in (1, 30, 200):
            s = self.connect()
            s.sendall(h.encode_request(h.policy_attrs())[:cut])
            s.close()
        s = self.connect()
        s.sendall(b"request=smtpd_access_policy\nclient_addr")
        s.shutdown(socket.SHUT_WR)  # half-close: the server sees EOF mid-request
        self.assertTrue(h.wait_closed(s, CLOSE_WAIT), "server should close after EOF mid-request")
        s.close()
        self.assert_still_serving()

    def test_many_requests_on_one_connection(self):
        # Postfix reuses a connection for many requests.
        with h.PolicyConnection(self.sw.policy_port) as c:
            for i in range(50):
                reply = c.request(h.policy_attrs(recipient=f"user{i}@local.example.test"))
                self.assertEqual(reply.get("action"), "DUNNO", reply)

    def test_one_byte_a_second(self):
        request = h.encode_request(h.policy_attrs())
        since = self.sw.log_size()
        s = self.connect()
        state = {"sent": 0, "closed_at": None, "error": None}
        stop = threading.Event()
        t0 = time.monotonic()

        def trickle():
            try:
                for b in request:
                    if stop.is_set():
                        return
                    s.sendall(bytes([b]))
                    state["sent"] += 1
                    if stop.wait(1.0):
                        return
            except OSError as e:  # the server closed: EPIPE / ECONNRESET
                state["error"] = e

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            # Meanwhile other connections are served at once.
            for _ in range(5):
                time.sleep(0.5)
                self.assert_still_serving()
            closed = h.wait_closed(s, SLOW_CLOSE_WAIT - (time.monotonic() - t0))
            took = time.monotonic() - t0
        finally:
            stop.set()
            sender.join(5)
            s.close()
        self.assertTrue(closed, f"a client sending one byte a second ({state['sent']} bytes so far) "
                                f"was not disconnected within {SLOW_CLOSE_WAIT}s")
        self.assertLess(state["sent"], len(request), "the slow request should not have completed")
        self.assertTrue(self.sw.wait_log(r"closing connection.*(request|timeout|within)", since=since, timeout=3),
                        f"no log line about the slow client:\n{self.sw.log_text(since)}")
        print(f"slow client disconnected after {took:.1f}s ({state['sent']} bytes sent)", file=sys.stderr)
        self.assert_still_serving()

    def test_thousand_concurrent_connections(self):
        n = 1000
        self.assertGreaterEqual(self.nofile, n + 100, "could not raise RLIMIT_NOFILE")
        socks = []
        sel = selectors.DefaultSelector()
        try:
            t0 = time.monotonic()
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", self.sw.policy_port), timeout=20)
                socks.append(s)
            # Every connection is open before any request is sent: all 1,000 are concurrent.
            for i, s in enumerate(socks):
                s.sendall(h.encode_request(h.policy_attrs(
                    client_address=f"198.51.100.{i % 250 + 1}",
                    recipient=f"user{i}@local.example.test")))
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ, i)
            bufs = {}
            answered = {}
            deadline = time.monotonic() + 60
            while len(answered) < n and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1.0):
                    i = key.data
                    try:
                        chunk = key.fileobj.recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b""
                    if not chunk:
                        sel.unregister(key.fileobj)
                        answered.setdefault(i, None)  # closed without an answer
                        continue
                    bufs[i] = bufs.get(i, b"") + chunk
                    if b"\n\n" in bufs[i]:
                        answered[i] = h.parse_reply(bufs[i].partition(b"\n\n")[0] + b"\n")
                        sel.unregister(key.fileobj)
            took = time.monotonic() - t0
            # The server holds all of them at once (not just the kernel's accept queue).
            open_now = self.sw.metric("spamward_open_connections", 'server="policy"')
        finally:
            sel.close()
            for s in socks:
                s.close()
        good = [i for i, r in answered.items() if r and r.get("action") == "DUNNO"]
        bad = {i: r for i, r in answered.items() if not (r and r.get("action") == "DUNNO")}
        missing = n - len(answered)
        self.assertEqual(len(good), n, f"{len(good)} of {n} answered DUNNO; {missing} unanswered; "
                                       f"examples of others: {list(bad.items())[:5]}")
        print(f"{n} concurrent connections answered in {took:.1f}s", file=sys.stderr)
        self.assertIsNotNone(open_now, "metric spamward_open_connections{server=\"policy\"} missing")
        self.assertGreaterEqual(open_now, n, "the daemon should hold all connections open at once")
        self.assert_still_serving()
        # Closed connections are released (no leak).
        self.assertTrue(h.wait_until(
            lambda: self.sw.metric("spamward_open_connections", 'server="policy"') == 0, 5),
            "open policy connections should drop back to 0 after the clients closed")

    def test_zz_daemon_alive_and_healthy(self):
        # Runs last (alphabetical order): after all the above the daemon still works.
        self.assertTrue(self.sw.alive(), "spamward died during the bad-input tests")
        status, body, _ = self.sw.http_get("/healthz")
        self.assertEqual(status, 200, body)
        status, body, _ = self.sw.http_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("spamward_decisions_total", body)
        # Each closed bad connection is counted by reason (policy_server.h).
        errors = {k: v for k, v in h.metric_samples(body, "spamward_protocol_errors_total").items()
                  if 'server="policy"' in k}
        self.assertGreaterEqual(sum(errors.values()), 4, f"protocol errors counted: {errors}")
        self.assert_still_serving()
        self.assertEqual(self.sw.stop(), 0, "SIGTERM should drain and exit 0")


if __name__ == "__main__":
    h.main()
