#!/usr/bin/python3
"""The Redis store backend through real daemons: two `spamward serve` sharing one private
redis-server, as two MX hosts of a cluster would (docs/redis.md).

  - a greylist triplet deferred through daemon A passes through daemon B after min_delay;
  - a deny entry added with the CLI (Redis config) and a ban earned by hammering A are seen
    by B's policy answers and by `spamward ip` run against B's config;
  - Bayes learned with `spamward learn` (200 spam + 200 ham of the corpus train split)
    classifies test-split mail through B's HTTP check API;
  - when Redis dies, mail keeps flowing (fail open, logged) with no hang, the CLI fails with a
    one-line error, and once Redis is back the daemons use it again without a restart;
  - a daemon started while Redis is down starts, fails open, and catches up.
"""

import http.client
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
import corpus  # noqa: E402
from redis_fixture import RedisServer  # noqa: E402

MIN_DELAY = 2.0


def check_api(port, message, **envelope):
    """POST /api/v1/check; returns the verdict object."""
    query = "&".join(f"{k}={v}" for k, v in envelope.items())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/check" + ("?" + query if query else ""), body=message,
                 headers={"Content-Type": "message/rfc822"})
    r = conn.getresponse()
    body = r.read().decode("utf-8", "replace")
    conn.close()
    if r.status != 200:
        raise AssertionError(f"check API answered {r.status}: {body}")
    return json.loads(body)


def names(verdict):
    return [s["name"] for s in verdict["symbols"]]


class RedisCluster(h.IntegrationCase):
    def setUp(self):
        super().setUp()
        self.redis = RedisServer(self.tmp)
        self._servers.append(self.redis)
        self.redis.start()

    def daemon(self, name, start=True, **overrides):
        settings = {
            "store": {"backend": "redis", "url": self.redis.url},
            "greylist": {"mode": "always", "min_delay": "2s", "max_wait": "1m",
                         "auto_allow_after": 5, "auto_allow_ttl": "1h", "hammering": 4},
            "reputation": {"ban_base": "1m", "ban_factor": 4.0, "ban_max": "1h"},
        }
        for k, v in overrides.items():
            settings.setdefault(k, {}).update(v)
        return self.spamward(settings, start=start, name=name)

    def rcpt(self, sw, client, sender, rcpt):
        return sw.policy(client_address=client, sender=sender, recipient=rcpt,
                         helo_name="mx.example.net", client_name="mx.example.net",
                         reverse_client_name="mx.example.net")["action"]

    def test_greylist_deny_and_ban_are_shared(self):
        a = self.daemon("a")
        b = self.daemon("b")
        # Greylisting: deferred at A, early at B too, passed at B after min_delay.
        triplet = ("192.0.2.20", "news@sender.example", "bob@local.example.test")
        self.assertTrue(self.rcpt(a, *triplet).startswith("DEFER_IF_PERMIT"))
        self.assertTrue(self.rcpt(b, *triplet).startswith("DEFER_IF_PERMIT"))
        time.sleep(MIN_DELAY + 0.3)
        self.assertEqual(self.rcpt(b, *triplet), "DUNNO")
        self.assertIsNotNone(b.wait_log(lambda l: "decision" in l and "GREYLIST_PASSED" in l))
        # An admin deny entry written by the CLI against A's config refuses at B.
        rc, out, err = a.cli("deny", "add", "198.51.100.9")
        self.assertEqual(rc, 0, out + err)
        b.wait_action("REJECT", timeout=3.0, client_address="198.51.100.9")
        rc, out, err = b.cli("deny", "list")
        self.assertEqual(rc, 0, err)
        self.assertIn("198.51.100.9", out)
        # A bot hammering A is banned at B (from another network: 192.0.2.0/24 has passed).
        # `spamward ip` with B's config reads the shared store itself; B's own answers follow
        # within its ban snapshot's refresh (200 ms). (Every early retry that reaches B before
        # that would be an offence of its own, so B is asked only once the ban is stored.)
        bot = ("203.0.113.66", "win@lottery.example", "carol@local.example.test")
        for _ in range(5):
            self.assertTrue(self.rcpt(a, *bot).startswith("DEFER_IF_PERMIT"))

        def ip_report():
            rc, out, err = b.cli("ip", bot[0])
            self.assertEqual(rc, 0, err)
            return out if "ban: 203.0.113.66 until" in out else None
        report = h.wait_until(ip_report, 5, interval=0.2)
        self.assertIsNotNone(report, "the ban made at A is not in the shared store")
        self.assertRegex(report, r"ban: 203\.0\.113\.66 until .* \(offence 1, 4xx, temporary\)")
        self.assertIn("hammering", report)
        self.assertTrue(h.wait_until(lambda: self.rcpt(b, *bot).startswith("450 4.7.1"), 3,
                                     interval=0.3), self.rcpt(b, *bot))
        # Everything lives in Redis under the documented prefix, not in the LMDB path.
        self.assertFalse(os.path.exists(a.store_path))
        self.assertEqual(self.redis.command("SISMEMBER", "spamward:tables", "greylist"), 1)
        self.assertEqual(self.redis.command("HEXISTS", "spamward:t:meta", "format_version"), 1)

    def test_bayes_learned_through_one_host_classifies_on_another(self):
        b = self.daemon("b")
        a = self.daemon("a", start=False)  # only its config: `learn` is a CLI command
        spam = corpus.write_dir(os.path.join(self.tmp, "train-spam"),
                                corpus.split_messages("spam", "train", 200))
        ham = corpus.write_dir(os.path.join(self.tmp, "train-ham"),
                               corpus.split_messages("ham", "train", 200))
        for kind, path in (("--spam", spam), ("--ham", ham)):
            rc, out, err = a.cli("learn", kind, path, timeout=240)
            self.assertEqual(rc, 0, out + err)
            self.assertIn("200 learned", out)
        self.assertIn("global database: 200 spam, 200 ham learned", out)
        test_spam = corpus.split_messages("spam", "test", 20)
        test_ham = corpus.split_messages("ham", "test", 20)
        envelope = dict(ip="192.0.2.44", helo="mx.example.net", rcpt="bob@local.example.test")
        spam_hits = sum("BAYES_SPAM" in names(check_api(b.http_port, m, **envelope))
                        for _, m in test_spam)
        ham_as_spam = sum("BAYES_SPAM" in names(check_api(b.http_port, m, **envelope))
                          for _, m in test_ham)
        self.assertGreaterEqual(spam_hits, 12, "B does not see what A learned")
        self.assertLessEqual(ham_as_spam, 1)

    def test_daemons_survive_redis_going_away_and_recover(self):
        a = self.daemon("a")
        b = self.daemon("b")
        self.assertTrue(self.rcpt(a, "192.0.2.30", "x@one.example", "bob@local.example.test")
                        .startswith("DEFER_IF_PERMIT"))
        since_a = a.log_size()
        self.redis.kill()
        # Mail flows: greylisting cannot run, so it adds nothing; each answer comes quickly.
        for sw in (a, b):
            for i in range(3):
                start = time.monotonic()
                action = self.rcpt(sw, f"192.0.2.{100 + i}", "y@two.example",
                                   "bob@local.example.test")
                self.assertEqual(action, "DUNNO")
                self.assertLess(time.monotonic() - start, 2.0)
        self.assertIsNotNone(a.wait_log(r"redis at redis://127\.0\.0\.1:\d+/0", since=since_a))
        rc, out, err = a.cli("deny", "list")
        self.assertEqual(rc, 1)
        self.assertRegex(err, r"^spamward: .*redis at redis://127\.0\.0\.1:\d+/0: cannot connect")
        self.assertEqual(err.count("\n"), 1, err)
        # A stalled Redis (SIGSTOP) is the same: answers within the store deadline, no hang.
        self.redis.start()
        self.redis.pause()
        start = time.monotonic()
        self.assertEqual(self.rcpt(b, "192.0.2.120", "z@three.example", "bob@local.example.test"),
                         "DUNNO")
        self.assertLess(time.monotonic() - start, 4.0)
        self.redis.resume()
        # Back (empty: no persistence in the test): greylisting works again, shared, with no
        # restart of either daemon.
        triplet = ("192.0.2.40", "w@four.example", "bob@local.example.test")
        self.assertTrue(h.wait_until(
            lambda: self.rcpt(a, *triplet).startswith("DEFER_IF_PERMIT"), 5),
            "A does not greylist again after Redis came back")
        self.assertTrue(self.rcpt(b, *triplet).startswith("DEFER_IF_PERMIT"))
        time.sleep(MIN_DELAY + 0.3)
        self.assertEqual(self.rcpt(b, *triplet), "DUNNO")
        self.assertTrue(a.alive() and b.alive())

    def test_daemon_starts_while_redis_is_down(self):
        self.redis.kill()
        a = self.daemon("a")  # starts: fail open rather than leave the MTA without an answer
        self.assertIsNotNone(a.wait_log("starting anyway: store-backed checks fail open"))
        self.assertEqual(self.rcpt(a, "192.0.2.50", "v@five.example", "bob@local.example.test"),
                         "DUNNO")
        self.redis.start()
        triplet = ("192.0.2.51", "v@five.example", "bob@local.example.test")
        self.assertTrue(h.wait_until(
            lambda: self.rcpt(a, *triplet).startswith("DEFER_IF_PERMIT"), 5))
        self.assertEqual(self.redis.command("HEXISTS", "spamward:t:meta", "format_version"), 1)


if __name__ == "__main__":
    h.main()
