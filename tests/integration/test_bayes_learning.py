#!/usr/bin/python3
"""Bayes learning end to end (issue 6): `spamward learn` from directories, relearning without
double counting, classification by `spamward check` once min_learned is reached, spamd TELL
through the real `spamc -L`, the HTTP learn API (admin token), and learned data surviving
kill -9 of the daemon.

The messages are real ones from the shared corpus: 200 ham and 200 spam of its train split
are learned ([bayes] min_learned = 200, the default), and messages of its test split judged.
"""

import json
import os
import shutil
import subprocess
import sys
import http.client

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
import corpus  # noqa: E402
from milter_client import Milter  # noqa: E402

SPAMC = shutil.which("spamc") or "/usr/bin/spamc"
TOKEN = "learn-test-token-0123456789"


def post(port, path, body, token=None, timeout=30.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "message/rfc822"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read().decode("utf-8", "replace")
    conn.close()
    return r.status, data


class BayesLearning(h.IntegrationCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp_class = h.make_tempdir()
        cls.train_spam = corpus.write_dir(os.path.join(cls.tmp_class, "train-spam"),
                                          corpus.split_messages("spam", "train", 200))
        cls.train_ham = corpus.write_dir(os.path.join(cls.tmp_class, "train-ham"),
                                         corpus.split_messages("ham", "train", 200))
        cls.test_spam = corpus.split_messages("spam", "test", 30)
        cls.test_ham = corpus.split_messages("ham", "test", 30)
        cls.extra = corpus.split_messages("spam", "train", 3, skip=200)

    def daemon(self, overrides=None):
        token_file = os.path.join(self.tmp, "admin.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_file, 0o600)
        self.spamd_port = h.free_port()
        settings = {
            "listen": {"spamd": f"127.0.0.1:{self.spamd_port}"},
            "http": {"admin_token_file": token_file},
            "spamd": {"allow_tell": True},
        }
        for k, v in (overrides or {}).items():
            settings.setdefault(k, {}).update(v)
        return self.spamward(settings, start=False)

    def learn(self, sw, *args):
        rc, out, err = sw.cli("learn", *args, timeout=120)
        self.assertEqual(rc, 0, f"learn {args} failed: {out}\n{err}")
        return out

    def check_json(self, sw, messages):
        d = h.make_tempdir("spamward-judge-")
        corpus.write_dir(d, messages)
        rc, out, err = sw.cli("check", "--json", d, timeout=120)
        self.assertEqual(rc, 0, err)
        results = [json.loads(line) for line in out.splitlines() if line.strip()]
        self.assertEqual(len(results), len(messages))
        return results

    @staticmethod
    def bayes_symbol(result):
        for s in result["symbols"]:
            if s["name"].startswith("BAYES_"):
                return s
        return None

    def test_learn_relearn_and_classify(self):
        sw = self.daemon()
        # Below min_learned: no Bayes symbol at all.
        out = self.learn(sw, "--spam", self.train_spam)
        self.assertIn("200 messages read as spam: 200 learned, 0 moved from ham, 0 already learned", out)
        self.assertIn("min_learned", out)
        self.assertTrue(all(self.bayes_symbol(r) is None
                            for r in self.check_json(sw, self.test_spam[:5])))
        # --explain says why there is no symbol.
        one = corpus.write_dir(h.make_tempdir("spamward-explain-"), self.test_spam[:1])
        rc, explained, err = sw.cli("check", "--explain", one, timeout=60)
        self.assertEqual(rc, 0, err)
        self.assertIn("bayes:  inactive (global database: 200 spam and 0 ham learned; "
                      "it needs 200 of each)", explained)
        self.assertIn("model: none yet", out)  # Fisher would answer, once active
        out = self.learn(sw, "--ham", self.train_ham)
        self.assertIn("200 learned", out)
        self.assertIn("global database: 200 spam, 200 ham learned", out)
        # The logistic model is rebuilt from the 400 learned messages' tokens.
        self.assertIn("model: logistic, trained on 400 messages", out)
        self.assertIn("(rebuilt now)", out)
        self.check_explain(sw, one)
        # Relearning the same messages counts nothing twice.
        out = self.learn(sw, "--ham", self.train_ham)
        self.assertIn("0 learned, 0 moved from spam, 200 already learned", out)
        self.assertIn("200 spam, 200 ham learned", out)
        self.assertNotIn("rebuilt now", out)  # nothing changed: no rebuild
        # Now the classifier speaks: most test spam gets BAYES_SPAM, ham never does.
        spam_hits = sum(1 for r in self.check_json(sw, self.test_spam)
                        if (self.bayes_symbol(r) or {}).get("name") == "BAYES_SPAM")
        ham_results = self.check_json(sw, self.test_ham)
        ham_as_spam = sum(1 for r in ham_results
                          if (self.bayes_symbol(r) or {}).get("name") == "BAYES_SPAM")
        # (Trained on only 400 messages: one of these 30 ham gets a weak BAYES_SPAM.)
        self.assertGreaterEqual(spam_hits, 25, "BAYES_SPAM on too few of 30 test spam")
        self.assertLessEqual(ham_as_spam, 1, "BAYES_SPAM on test ham")
        self.assertGreaterEqual(sum(1 for r in ham_results
                                    if (self.bayes_symbol(r) or {}).get("name") == "BAYES_HAM"),
                                20, "BAYES_HAM on too few of 30 test ham")
        for r in ham_results:  # no test ham reaches the tag threshold (6.0) through Bayes
            s = self.bayes_symbol(r)
            if s:
                self.assertLess(s["score"], 6.0, r)
                self.assertIn("z=", s["detail"])  # the logistic model answered
        # The daemon's online step: a test ham the admin teaches as spam (spamc -L spam) moves
        # toward spam at once, long before the next rebuild.
        def z_of(result):
            s = self.bayes_symbol(result)
            if not s:
                return None
            return float(s["detail"].split()[0][2:])
        hammy = [(m, r) for m, r in zip(self.test_ham, ham_results)
                 if (self.bayes_symbol(r) or {}).get("name") == "BAYES_HAM"][0]
        before = z_of(hammy[1])
        sw.start()
        r = subprocess.run([SPAMC, "-d", "127.0.0.1", "-p", str(self.spamd_port), "-L", "spam"],
                           input=hammy[0][1], capture_output=True, timeout=30)
        self.assertIn(b"Message successfully un/learned", r.stdout)
        after = {}
        def moved():
            after["r"] = self.check_json(sw, [hammy[0]])[0]
            z = z_of(after["r"])
            return z is None or z > before + 1.0
        self.assertTrue(h.wait_until(moved, 10), f"z stayed at {before}: {after}")
        sw.stop()
        # Moving: two spam relearned as ham move, and the totals follow.
        move_dir = corpus.write_dir(os.path.join(self.tmp, "move"),
                                    corpus.split_messages("spam", "train", 2))
        out = self.learn(sw, "--ham", move_dir)
        self.assertIn("0 learned, 2 moved from spam", out)
        self.assertIn("199 spam, 202 ham learned", out)  # 200 + the TELL one - 2
        # Under min_learned spam again: the model is gone, as the classifier is inactive.
        self.assertIn("model: none yet", out)
        out = self.learn(sw, "--forget", move_dir)
        self.assertIn("2 forgotten", out)

    def check_explain(self, sw, path):
        """`check --explain`: the tokens behind the logistic model's z, as text and JSON."""
        rc, out, err = sw.cli("check", "--json", "--explain", path, timeout=60)
        self.assertEqual(rc, 0, err)
        result = json.loads(out)
        bayes = result["bayes"]
        self.assertTrue(bayes["active"])
        self.assertEqual(bayes["model"], "logistic")
        self.assertEqual(bayes["learned"], {"spam": 200, "ham": 200})
        # The same classification as the verdict's symbol (detail "z=1.93 p=0.873").
        symbol_z = float(self.bayes_symbol(result)["detail"].split()[0][2:])
        self.assertAlmostEqual(bayes["z"], symbol_z, places=2)
        clues = bayes["clues"]
        self.assertEqual(len(clues), 20)
        shares = [abs(c["weight"]) for c in clues]
        self.assertEqual(shares, sorted(shares, reverse=True))
        self.assertTrue(all(c["token"] and c["weight"] != 0 for c in clues), clues)
        self.assertLessEqual(len(clues), bayes["clues_used"])
        self.assertLessEqual(bayes["clues_used"], bayes["tokens"])
        # Text: a header line and one line per token, "+0.1234  token".
        rc, out, err = sw.cli("check", "--explain", path, timeout=60)
        self.assertEqual(rc, 0, err)
        self.assertIn("bayes:  logistic model, global database: z=", out)
        token_lines = [l for l in out.splitlines() if l.startswith("  +") or l.startswith("  -")]
        self.assertEqual(len(token_lines), 20, out)
        self.assertEqual(token_lines[0].split(None, 1)[1], clues[0]["token"])
        # --explain needs a message.
        rc, out, err = sw.cli("check", "--explain", timeout=30)
        self.assertEqual(rc, 2)
        self.assertIn("--explain explains messages", err)

    def test_learn_bad_usage(self):
        sw = self.daemon()
        rc, _, err = sw.cli("learn", self.train_spam)
        self.assertEqual(rc, 2)
        self.assertIn("--spam or --ham", err)
        rc, out, err = sw.cli("learn", "--spam", os.path.join(self.tmp, "nonexistent"))
        self.assertEqual(rc, 1)
        self.assertIn("nonexistent", err)

    def test_tell_http_and_kill9(self):
        sw = self.daemon()
        sw.start()
        msg1, msg2, msg3 = (m for _, m in self.extra)
        # spamc -L spam: learned; again: already learned (spamc still exits 0).
        r = subprocess.run([SPAMC, "-d", "127.0.0.1", "-p", str(self.spamd_port), "-L", "spam"],
                           input=msg1, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"Message successfully un/learned", r.stdout)
        r = subprocess.run([SPAMC, "-d", "127.0.0.1", "-p", str(self.spamd_port), "-L", "spam"],
                           input=msg1, capture_output=True, timeout=30)
        self.assertIn(b"Message was already un/learned", r.stdout)
        # HTTP: no token or a wrong one, no learning.
        status, body = post(sw.http_port, "/api/v1/learn/spam", msg2)
        self.assertEqual(status, 401, body)
        status, body = post(sw.http_port, "/api/v1/learn/spam", msg2, token="wrong")
        self.assertEqual(status, 401, body)
        status, body = post(sw.http_port, "/api/v1/learn/spam", msg2, token=TOKEN)
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["outcome"], "learned")
        self.assertEqual(answer["learned"]["spam"], 2)  # the TELL one and this one
        status, body = post(sw.http_port, "/api/v1/learn/ham", msg2, token=TOKEN)
        self.assertEqual(json.loads(body)["outcome"], "moved")
        # What was learned survives kill -9 (the store commits in milliseconds).
        h.wait_until(lambda: False, 0.5)
        sw.kill9()
        sw.start()
        status, body = post(sw.http_port, "/api/v1/learn/spam", msg3, token=TOKEN)
        self.assertEqual(status, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["learned"], {"spam": 2, "ham": 1})

    def test_autolearn_through_the_milter(self):
        """A message from an allow-listed client scores far below zero without Bayes: the daemon
        learns it as ham on its own (autolearning), once; with autolearn off it does not."""
        milter_port = h.free_port()
        sw = self.daemon({"listen": {"milter": f"127.0.0.1:{milter_port}"}})
        rc, _, err = sw.cli("allow", "add", "192.0.2.77", "--comment", "autolearn test")
        self.assertEqual(rc, 0, err)
        sw.start()
        raw = self.extra[0][1].replace(b"\r\n", b"\n")
        head, _, body = raw.partition(b"\n\n")

        def send_through_milter():
            m = Milter(milter_port)
            try:
                self.assertEqual(m.negotiate()[0], b"O")
                m.connect("192.0.2.77", "mx.example.net")
                m.command(b"H", b"mx.example.net\0")
                self.assertEqual(m.command(b"M", b"<a@example.net>\0")[0], b"c")
                self.assertEqual(m.command(b"R", b"<b@example.org>\0")[0], b"c")
                name = None
                for line in head.split(b"\n"):
                    if line[:1] in (b" ", b"\t") and name is not None:
                        value += b"\n" + line
                        continue
                    if name is not None:
                        m.command(b"L", name + b"\0" + value + b"\0")
                    name, _, value = line.partition(b":")
                if name is not None:
                    m.command(b"L", name + b"\0" + value + b"\0")
                m.command(b"N")
                self.assertEqual(m.command(b"B", body.replace(b"\n", b"\r\n"))[0], b"c")
                return m.eom()[-1][0]
            finally:
                m.close()

        self.assertEqual(send_through_milter(), b"a")
        self.assertTrue(h.wait_until(
            lambda: (sw.metric("spamward_bayes_autolearned_total", 'class="ham"') or 0) >= 1, 5),
            sw.log_text())
        self.assertEqual(send_through_milter(), b"a")  # the same message: learned once
        h.wait_until(lambda: False, 0.5)
        self.assertEqual(sw.metric("spamward_bayes_autolearned_total", 'class="ham"'), 1)
        # The store holds it as ham: teaching it again by hand changes nothing.
        d = corpus.write_dir(os.path.join(self.tmp, "autolearned"), [("m", raw)])
        out = self.learn(sw, "--ham", d)
        self.assertIn("0 learned, 0 moved from spam, 1 already learned", out)
        out = self.learn(sw, "--spam", d)  # the admin overrides: it moves
        self.assertIn("0 learned, 1 moved from ham", out)


if __name__ == "__main__":
    h.main()
