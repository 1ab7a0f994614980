#!/usr/bin/python3
"""The spamward command line (DESIGN §3.2-3.5; issue 2, points 4, 5, 7 and 8).

--version/--help; `config check` on the shipped config and on bad files (exit 2, one stderr
line naming file, line and key); `serve` with a bad config; allow/deny add/del/list and bad
entries; `ip`; `check --json` with SMTP facts and with messages (files, Maildirs, mboxes,
stdin); SIGHUP reload (good, dry-run, broken); /healthz and /metrics.
"""

import json
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

DENIED = "192.0.2.66"
OTHER = "192.0.2.10"

# Bad configs: (name, text, [(line, key), ...] any of which the error may name).
# A few comment lines first, so the line number is not a small number found by chance.
PAD = "# spamward test config\n#\n#\n#\n"
BAD_CONFIGS = [
    ("unknown_key", PAD + "[actions]\ngreylist = 3.0\nrejekt = 15.0\n", [(7, "rejekt")]),
    ("unknown_table_key", PAD + "[greylist]\nmode = \"off\"\n\n[nosuchtable]\nx = 1\n", [(8, "nosuchtable"), (9, "nosuchtable")]),
    ("wrong_type", PAD + "[actions]\ntag = \"six\"\n", [(6, "tag")]),
    ("wrong_type_bool", PAD + "[actions]\ndry_run = \"yes\"\n", [(6, "dry_run")]),
    ("bad_duration", PAD + "[greylist]\nmode = \"selective\"\nmin_delay = \"5 minutes\"\n", [(7, "min_delay")]),
    ("bad_duration_unit", PAD + "[reputation]\nban_max = \"1y\"\n", [(6, "ban_max")]),
    ("bad_address", PAD + "[network]\ntrusted = [\"127.0.0.0/8\", \"300.1.2.3/32\"]\n", [(6, "trusted")]),
    ("bad_listen_address", PAD + "[listen]\npolicy = \"127.0.0.1:99999\"\n", [(6, "policy")]),
    ("bad_threshold_order", PAD + "[actions]\ngreylist = 3.0\ntag = 20.0\nreject = 15.0\n",
     [(7, "tag"), (8, "reject")]),
]


def names_line(text, path, n):
    """True when `text` points at line n of `path`: "PATH:N" (the compiler-style spelling
    spamward uses) or "line N". Digits elsewhere (a timestamp, the temp dir) do not count."""
    return bool(re.search(re.escape(path) + rf":{n}(?![0-9])", text)
                or re.search(rf"(?i)\bline {n}(?![0-9])", text))


def one_line_error(test, rc, out, err, path, choices):
    """Asserts exit 2 and exactly one non-empty stderr line naming the file, one of the
    (line, key) pairs."""
    test.assertEqual(rc, 2, f"exit code; stdout={out!r} stderr={err!r}")
    lines = [l for l in err.splitlines() if l.strip()]
    test.assertEqual(len(lines), 1, f"exactly one stderr line expected, got: {err!r}")
    line = lines[0]
    test.assertIn(path, line, "the error should name the file")
    ok = [(n, k) for n, k in choices if names_line(line, path, n) and k in line]
    test.assertTrue(ok, f"the error should name line and key, one of {choices}: {line!r}")
    return line


class Cli(h.IntegrationCase):
    # ---- no config needed ----------------------------------------------------------------
    def test_version_and_help(self):
        rc, out, err = h.run([h.BIN, "--version"])
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"spamward \d+\.\d+")
        rc, out, err = h.run([h.BIN, "--help"])
        self.assertEqual(rc, 0, err)
        for sub in ("serve", "config", "check", "ip", "allow", "deny"):
            self.assertIn(sub, out)
        rc, out, err = h.run([h.BIN, "no-such-command"])
        self.assertEqual(rc, 2, "an unknown command is bad usage")

    def test_config_check_shipped_config(self):
        self.assertTrue(os.path.exists(h.SHIPPED_CONFIG), h.SHIPPED_CONFIG)
        rc, out, err = h.run([h.BIN, "config", "check", "-c", h.SHIPPED_CONFIG], cwd=h.SOURCE_DIR)
        self.assertEqual(rc, 0, f"shipped config should be valid: {err}")
        self.assertEqual(err.strip(), "")

    def test_config_check_good_test_config(self):
        sw = self.spamward(start=False)
        rc, out, err = sw.cli("config", "check")
        self.assertEqual(rc, 0, err)

    def test_config_check_bad_files(self):
        for name, text, choices in BAD_CONFIGS:
            with self.subTest(name):
                path = os.path.join(self.tmp, f"{name}.toml")
                with open(path, "w") as f:
                    f.write(text)
                rc, out, err = h.run([h.BIN, "config", "check", "-c", path])
                one_line_error(self, rc, out, err, path, choices)

    def test_config_check_missing_file(self):
        path = os.path.join(self.tmp, "does-not-exist.toml")
        rc, out, err = h.run([h.BIN, "config", "check", "-c", path])
        self.assertEqual(rc, 2)
        self.assertIn(path, err)

    def test_serve_refuses_bad_config(self):
        for name, text, choices in (BAD_CONFIGS[0], BAD_CONFIGS[2], BAD_CONFIGS[-1]):
            with self.subTest(name):
                sw = h.Spamward(self.tmp, name=f"serve-{name}")
                # A bad key added to an otherwise working config (listeners on free ports).
                good = sw.config_text()
                bad = good + "\n" + text
                sw.write_config(bad)
                rc, out, err = h.run([h.BIN, "serve", "-c", sw.config_path], timeout=15, cwd=sw.dir)
                self.assertFalse(h.port_accepts(sw.policy_port))
                bad_lines = good.count("\n") + 1
                one_line_error(self, rc, out, err, sw.config_path,
                               [(n + bad_lines, k) for n, k in choices])

    # ---- lists, ip, check ----------------------------------------------------------------
    def test_lists_round_trip(self):
        sw = self.spamward(start=False)

        def listed(kind):
            rc, out, err = sw.cli(kind, "list")
            self.assertEqual(rc, 0, err)
            return [line.split()[0] for line in out.splitlines() if line.strip()]

        self.assertEqual(listed("deny"), [])
        self.assertEqual(listed("allow"), [])
        for kind, entry, stored in (("deny", DENIED, DENIED),
                                    ("deny", "198.51.100.7/24", "198.51.100.0/24"),
                                    ("deny", "2001:DB8::/32", "2001:db8::/32"),
                                    ("deny", "@Spam.Example", "@spam.example"),
                                    ("allow", "203.0.113.5", "203.0.113.5"),
                                    ("allow", "friend@example.org", "friend@example.org")):
            with self.subTest(add=entry):
                rc, out, err = sw.cli(kind, "add", entry)
                self.assertEqual(rc, 0, err)
                self.assertIn(stored, listed(kind))
        self.assertEqual(len(listed("deny")), 4)
        self.assertEqual(len(listed("allow")), 2)
        # Options may come before positional arguments too (DESIGN §3.2).
        rc, out, err = h.run([h.BIN, "deny", "-c", sw.config_path, "add", "192.0.2.99"])
        self.assertEqual(rc, 0, err)
        self.assertIn("192.0.2.99", listed("deny"))

        rc, out, err = sw.cli("deny", "del", "198.51.100.0/24")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("198.51.100.0/24", listed("deny"))
        rc, out, err = sw.cli("deny", "del", "198.51.100.0/24")
        self.assertEqual(rc, 1, "deleting an entry that is not there is the negative answer")
        rc, out, err = sw.cli("allow", "del", "friend@example.org")
        self.assertEqual(rc, 0, err)
        self.assertEqual(listed("allow"), ["203.0.113.5"])
        self.assertIn(DENIED, listed("deny"))

        for bad in ("not-an-address", "192.0.2.300", "10.0.0.0/33", "2001:db8::/129", "user@", "@",
                    "a b@example.org"):
            with self.subTest(bad=bad):
                rc, out, err = sw.cli("deny", "add", bad)
                self.assertEqual(rc, 2, f"{bad!r}: out={out!r} err={err!r}")
                self.assertEqual(len([l for l in err.splitlines() if l.strip()]), 1, err)
        self.assertNotIn("not-an-address", " ".join(listed("deny")))

        rc, out, err = sw.cli("deny", "add")
        self.assertEqual(rc, 2, "add without ENTRY is bad usage")
        rc, out, err = sw.cli("deny", "frobnicate", "1.2.3.4")
        self.assertEqual(rc, 2)

    def test_ip_shows_deny_entry(self):
        sw = self.spamward(start=False)
        self.assertEqual(sw.cli("deny", "add", "192.0.2.64/28", "--comment", "bad neighbourhood")[0], 0)
        rc, out, err = sw.cli("ip", DENIED)
        self.assertEqual(rc, 0, err)
        self.assertIn("192.0.2.64/28", out)
        self.assertRegex(out, r"(?i)deny")
        self.assertIn("bad neighbourhood", out)
        rc, out, err = sw.cli("ip", "203.0.113.9")
        self.assertEqual(rc, 0, err)
        self.assertNotIn("192.0.2.64/28", out)
        rc, out, err = sw.cli("ip", "not-an-ip")
        self.assertEqual(rc, 2)

    def check_json(self, sw, ip):
        rc, out, err = sw.cli("check", "--ip", ip, "--from", "a@b.example", "--rcpt", "c@d.example",
                              "--json")
        self.assertIn(rc, (0, 1), f"stderr={err!r}")
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"one JSON object expected: {out!r}")
        obj = json.loads(lines[0])
        for key in ("file", "action", "score", "families", "symbols", "reason"):
            self.assertIn(key, obj, obj)
        self.assertIsNone(obj["file"], "SMTP facts only: no file")
        self.assertNotIn("index", obj, "index is for mbox messages only")
        self.assertIn(obj["action"], ("accept", "tag", "greylist", "tempfail", "reject"))
        self.assertIsInstance(obj["score"], (int, float))
        self.assertIsInstance(obj["families"], list)
        self.assertIsInstance(obj["symbols"], list)
        self.assertIsInstance(obj["reason"], str)
        for sym in obj["symbols"]:
            for key in ("name", "score", "family", "detail"):
                self.assertIn(key, sym, sym)
        return obj

    def test_check_json(self):
        sw = self.spamward(start=False)
        self.assertEqual(sw.cli("deny", "add", DENIED)[0], 0)
        denied = self.check_json(sw, DENIED)
        self.assertEqual(denied["action"], "reject", denied)
        self.assertIn("DENYLIST", [s["name"] for s in denied["symbols"]], denied)
        other = self.check_json(sw, OTHER)
        self.assertEqual(other["action"], "accept", other)
        self.assertNotIn("DENYLIST", [s["name"] for s in other["symbols"]], other)
        # check never changes state: the lists are as they were.
        rc, out, err = sw.cli("deny", "list")
        self.assertEqual([l.split()[0] for l in out.splitlines() if l.strip()], [DENIED])

    def test_check_messages_from_files_maildirs_mboxes_and_stdin(self):
        """`check PATH...` (DESIGN §3.2, §3.4): one JSON line per message, `file` and, for
        mbox messages only, `index`; content checks (GTUBE, HDR_*) run on each message."""
        sw = self.spamward(start=False)
        clean = ("Received: from a.example by mx.example.org; Wed, 2 Dec 2026 11:59:00 +0000\n"
                 "Date: Wed, 2 Dec 2026 11:58:00 +0000\nMessage-ID: <1@a.example>\n"
                 "From: Alice <alice@a.example>\nSubject: hi\n\nHello.\n")
        gtube = ("Date: Wed, 2 Dec 2026 11:58:00 +0000\nMessage-ID: <2@a.example>\n"
                 "From: alice@a.example\nSubject: test\n\n"
                 "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\n")
        sloppy = "Subject: no date, no id, no from\n\nbody\n"
        d = os.path.join(sw.dir, "msgs")
        os.makedirs(os.path.join(d, "md", "cur"))
        os.makedirs(os.path.join(d, "md", "new"))
        single = os.path.join(d, "clean.eml")
        with open(single, "w") as f:
            f.write(clean)
        with open(os.path.join(d, "md", "new", "1"), "w") as f:
            f.write(sloppy)
        box = os.path.join(d, "box.mbox")
        with open(box, "w") as f:
            f.write("From a@a.example Wed Dec  2 11:58:00 2026\n" + clean + "\n"
                    "From b@a.example Wed Dec  2 11:59:00 2026\n" + gtube + "\n")
        missing = os.path.join(d, "missing.eml")
        rc, out, err = sw.cli("check", "--json", single, os.path.join(d, "md"), box, missing, "-",
                              input=gtube)
        self.assertEqual(rc, 1, f"a missing path is a runtime failure; stderr={err!r}")
        self.assertIn("missing.eml", err)
        objs = [json.loads(l) for l in out.splitlines() if l.strip()]
        self.assertEqual([(o["file"], o.get("index")) for o in objs],
                         [(single, None), (os.path.join(d, "md", "new", "1"), None),
                          (box, 1), (box, 2), ("-", None)], out)
        names = [[s["name"] for s in o["symbols"]] for o in objs]
        self.assertEqual(objs[0]["action"], "accept", objs[0])
        self.assertFalse([n for n in names[0] if n.startswith("HDR_")], objs[0])
        self.assertTrue({"HDR_DATE_MISSING", "HDR_MESSAGE_ID_MISSING", "HDR_FROM_MISSING"}
                        <= set(names[1]), objs[1])
        self.assertLess(objs[1]["score"], 3.0, "header oddities alone stay soft")
        self.assertEqual(objs[2]["action"], "accept", objs[2])
        for o, n in ((objs[3], names[3]), (objs[4], names[4])):
            self.assertIn("GTUBE", n, o)
            self.assertEqual(o["action"], "reject", o)

        # Plain output names each message.
        rc, out, err = sw.cli("check", box)
        self.assertEqual(rc, 0, err)
        self.assertIn(f"== {box} #1", out)
        self.assertIn(f"== {box} #2", out)
        self.assertEqual(out.count("action: "), 2, out)

    # ---- the daemon ----------------------------------------------------------------------
    def test_serve_reload_health_metrics(self):
        sw = self.spamward()
        status, body, _ = sw.http_get("/healthz")
        self.assertEqual(status, 200, body)

        self.assertEqual(sw.cli("deny", "add", DENIED)[0], 0)
        reply = sw.wait_action("REJECT", timeout=2.0, client_address=DENIED)
        self.assertRegex(reply["action"], r"^REJECT 5\.7\.1 \S")
        self.assertEqual(sw.policy(client_address=OTHER).get("action"), "DUNNO")

        # Reload into monitor-only mode: decided and logged, never refused.
        sw.reload({"actions": {"dry_run": True}})
        sw.wait_action("DUNNO", timeout=3.0, client_address=DENIED)

        # A broken file is refused: the old config (dry run) stays in force.
        since = sw.log_size()
        broken = sw.config_text({"actions": {"dry_run": False, "rejekt": 1.0}})
        sw.write_config(broken)
        sw.reload()
        bad_line = broken.splitlines().index("rejekt = 1.0") + 1
        logged = sw.wait_log(lambda l: "rejekt" in l and sw.config_path in l, since=since, timeout=3.0)
        self.assertTrue(logged, f"the log should name the file and the key of the broken config:\n"
                                f"{sw.log_text(since)}")
        self.assertTrue(names_line(logged, sw.config_path, bad_line),
                        f"the log should name line {bad_line}: {logged!r}")
        time.sleep(0.5)
        self.assertTrue(sw.alive(), "a broken config must not stop the daemon")
        for _ in range(3):
            self.assertEqual(sw.policy(client_address=DENIED).get("action"), "DUNNO",
                             "the old config (dry run) should still be in force")
        status, body, _ = sw.http_get("/healthz")
        self.assertEqual(status, 200, body)

        # A good file after the broken one is taken again.
        sw.reload({})
        sw.wait_action("REJECT", timeout=3.0, client_address=DENIED)

        status, body, headers = sw.http_get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn("spamward_decisions_total", body)
        counted = [l for l in body.splitlines() if l.startswith("spamward_decisions_total")]
        self.assertTrue(any(re.search(r"reject", l) and float(l.split()[-1]) >= 1 for l in counted),
                        f"reject decisions should be counted: {counted}")
        status, body, _ = sw.http_get("/no-such-page")
        self.assertEqual(status, 404)
        self.assertTrue(sw.alive())
        self.assertEqual(sw.stop(), 0, "SIGTERM should drain and exit 0")


if __name__ == "__main__":
    h.main()
