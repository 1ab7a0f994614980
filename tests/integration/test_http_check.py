#!/usr/bin/python3
"""The HTTP check API, POST /api/v1/check (DESIGN §3.4, §3.5 HTTP; issue 5 point 7), against
the real daemon: the envelope in query parameters and in headers, the §3.4 JSON, GTUBE
refused, header sanity symbols, bad input answered 400 without harm to the daemon, no admin
token needed (it changes no state), and no state changed (greylisting only peeks)."""

import http.client
import json
import os
import sys
import urllib.parse

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

CLEAN = ("Received: from a.example by mx.example.org; Wed, 2 Dec 2026 11:59:00 +0000\r\n"
         "Date: Wed, 2 Dec 2026 11:58:00 +0000\r\nMessage-ID: <1@a.example>\r\n"
         "From: Alice <alice@a.example>\r\nSubject: hi\r\n\r\nHello.\r\n")
GTUBE = ("Date: Wed, 2 Dec 2026 11:58:00 +0000\r\nMessage-ID: <2@a.example>\r\n"
         "From: alice@a.example\r\nSubject: test\r\nContent-Type: text/plain\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\n"
         # GTUBE inside base64: found in the decoded text part
         "WEpTKkM0SkRCUUFETjEuTlNCTjMqMklETkVOKkdUVUJFLVNUQU5EQVJELUFOVEktVUJFLVRFU1Qt\r\n"
         "RU1BSUwqQy4zNFgK\r\n")
DISPLAY = ("Date: Wed, 2 Dec 2026 11:58:00 +0000\r\nMessage-ID: <3@a.example>\r\n"
           "From: \"service@paypal.com\" <alerts@evil.example>\r\nSubject: verify\r\n\r\nx\r\n")


def post(port, path, body, headers=None, timeout=10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body.encode() if isinstance(body, str) else body,
                     headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def names(obj):
    return [s["name"] for s in obj["symbols"]]


class HttpCheck(h.IntegrationCase):
    def test_check_api(self):
        # Greylisting always on: a live path would defer this new triplet and store it; the
        # check API must only peek.
        sw = self.spamward(overrides={"greylist": {"mode": "always"}})
        port = sw.http_port

        status, body = post(port, "/api/v1/check", CLEAN)
        self.assertEqual(status, 200, body)
        obj = json.loads(body)
        for key in ("file", "action", "score", "families", "symbols", "reason"):
            self.assertIn(key, obj)
        self.assertIsNone(obj["file"])
        self.assertEqual(obj["action"], "accept", obj)
        self.assertFalse([n for n in names(obj) if n.startswith("HDR_")], obj)

        status, body = post(port, "/api/v1/check", GTUBE)
        obj = json.loads(body)
        self.assertEqual(status, 200)
        self.assertIn("GTUBE", names(obj), obj)
        self.assertEqual(obj["action"], "reject", obj)

        status, body = post(port, "/api/v1/check", DISPLAY)
        self.assertIn("HDR_FROM_DISPLAY_MISMATCH", names(json.loads(body)), body)

        # The envelope in query parameters: a denied client is refused.
        self.assertEqual(sw.cli("deny", "add", "192.0.2.66")[0], 0)
        q = urllib.parse.urlencode([("ip", "192.0.2.66"), ("helo", "mx.a.example"),
                                    ("from", "alice@a.example"), ("rcpt", "bob@b.example"),
                                    ("rcpt", "carol@b.example")])
        status, body = post(port, "/api/v1/check?" + q, CLEAN)
        obj = json.loads(body)
        self.assertEqual(obj["action"], "reject", obj)
        self.assertIn("DENYLIST", names(obj))
        # ... and in headers (rspamd's spelling).
        status, body = post(port, "/api/v1/check", CLEAN,
                            {"IP": "192.0.2.66", "From": "<alice@a.example>", "Rcpt": "bob@b.example"})
        self.assertIn("DENYLIST", names(json.loads(body)), body)

        # A client that is not denied, with greylisting always on: the answer says greylist,
        # but nothing is stored (the next check says greylist again, and `ip` shows no triplet).
        q = urllib.parse.urlencode({"ip": "198.51.100.7", "from": "x@a.example", "rcpt": "y@b.example"})
        for _ in range(2):
            status, body = post(port, "/api/v1/check?" + q, CLEAN)
            obj = json.loads(body)
            self.assertEqual(obj["action"], "greylist", obj)
        rc, out, err = sw.cli("ip", "198.51.100.7")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("y@b.example", out, "the check API must not store greylist triplets")

        # Bad input: 400 with a reason, and the daemon goes on.
        status, body = post(port, "/api/v1/check?ip=not-an-ip", CLEAN)
        self.assertEqual(status, 400, body)
        self.assertIn("ip", json.loads(body)["error"])
        status, body = post(port, "/api/v1/check?from=%zz", CLEAN)
        self.assertEqual(status, 400, body)
        status, body = post(port, "/api/v1/check", b"\x00\xff" * 5000 + b"\r\n\r\n" + b"\xfe" * 100)
        self.assertEqual(status, 200, body)
        json.loads(body)
        # Only POST: GET is 405.
        status, _, headers = h.http_get(port, "/api/v1/check")
        self.assertEqual(status, 405)
        self.assertEqual(h.http_get(port, "/healthz")[0], 200)


if __name__ == "__main__":
    h.main()
