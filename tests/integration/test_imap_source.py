#!/usr/bin/python3
"""Learning from IMAP folders (issue 6, point 4) against a real Dovecot on loopback.

A private Dovecot (tests/integration/lib/dovecot.py: self-signed certificate, passwd-file
accounts, Maildirs in a temp dir) serves folders filled from the shared corpus
(/work/shared/corpus, read straight from its archives) plus a few hostile messages. The client
is tests/integration/imap_fetch_driver (bayes/imap_source.h with its progress in LMDB), which
prints one line per fetched message: MSG <class> <folder> <uid> <size> <sha256>.
TODO(lead): switch run() to `spamward learn-imap -c CONFIG` once the command exists (its per
folder lines "USER FOLDER: N new" are printed by the driver too).

Checked:
- every message arrives byte for byte (Dovecot serves CRLF line ends: the expected bytes are the
  stored file with bare LF turned into CRLF), hostile lines inside messages included;
- nothing is marked read: the flags of every message are the same before and after;
- a second run fetches nothing; two new messages are then fetched, and only they;
- a changed UIDVALIDITY (the folder rebuilt) fetches the folder again;
- max_message_bytes caps what is fetched of a large message;
- imap:// with STARTTLS works; an untrusted certificate, a wrong password and a password file
  that others can read are refused with a one-line error.
"""

import hashlib
import os
import re
import sys
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402
from dovecot import Dovecot, corpus_messages  # noqa: E402

DRIVER = os.environ.get("SPAMWARD_IMAP_DRIVER") or os.path.join(
    os.path.dirname(h.BIN), "imap_fetch_driver")

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol pw \\ \"quoted\"", "dave": "dave-pw"}

# Messages whose lines look like IMAP responses, literals and our own tags: a client that reads
# the body line by line (as libcurl does for custom commands) would take them as responses.
HOSTILE = [
    b"From: x@example.test\r\nSubject: tags\r\n\r\nSW3 OK done\r\nSW4 BAD x\r\nA004 OK Fetch completed\r\n",
    b"From: x@example.test\nSubject: fake fetch\n\n* 1 FETCH (UID 99 BODY[] {5}\n)\n* BYE bye\n{99999}\n",
    b"From: x@example.test\nSubject: long line\n\n" + b"x" * 200000 + b"\n",
    b"From: x@example.test\nSubject: =?utf-8?q?8bit?=\n\n\xc3\xa4\xc3\xb6 \xff\xfe raw 8-bit\n",
]


def served(raw):
    """The bytes Dovecot serves for a stored file: bare LF becomes CRLF."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def parse(out):
    """Driver output -> (messages [(class, folder, uid, size, sha)], folders {folder: (new,
    uidvalidity, last_uid, restarted)}, errors {folder: why})."""
    msgs, folders, errors = [], {}, {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] == "MSG":
            msgs.append((parts[1], parts[2], int(parts[3]), int(parts[4]), parts[5]))
        elif parts[0] == "FOLDER":
            folders[parts[1]] = tuple(int(x) for x in parts[2:6])
        elif parts[0] == "ERROR":
            errors[parts[1]] = parts[2]
    return msgs, folders, errors


def without_recent(flags):
    """Flags per UID without \\Recent (session state, not stored mail state)."""
    return {uid: " ".join(sorted(f for f in fl.split() if f != "\\Recent"))
            for uid, fl in flags.items()}


class ImapSourceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(DRIVER, os.X_OK):
            raise RuntimeError(f"IMAP driver not found or not executable: {DRIVER} "
                               "(set SPAMWARD_IMAP_DRIVER; see the build line in "
                               "tests/integration/imap_fetch_driver.cpp)")
        cls.tmp = h.make_tempdir("spamward-imap-")
        cls.spam = corpus_messages("spam", 30)
        cls.ham = corpus_messages("ham", 20)
        cls.dv = Dovecot(cls.tmp, users=USERS)
        # alice: a spam folder with read and unread mail, a nested ham folder with a non-ASCII
        # name, and the hostile messages in INBOX (learned as ham).
        cls.dv.add_messages("alice", "Junk", cls.spam[:10], flags="")
        cls.dv.add_messages("alice", "Junk", cls.spam[10:20], flags="S")
        cls.dv.add_messages("alice", "Ham/Ünread", cls.ham[:12], flags="")
        cls.dv.add_messages("alice", "INBOX", HOSTILE, flags="F")
        cls.dv.add_messages("bob", "Junk", cls.spam[20:25])
        cls.dv.add_messages("dave", "Junk", cls.spam[25:27])
        cls.dv.add_messages("carol", "Junk", cls.spam[29:30])
        cls.dv.start()

    @classmethod
    def tearDownClass(cls):
        cls.dv.stop()

    def tearDown(self):
        outcome = getattr(self, "_outcome", None)
        result = getattr(outcome, "result", None)
        if result and any(t is self for t, _ in result.failures + result.errors):
            print("\n" + self.dv.diagnostics(), file=sys.stderr)

    # helpers -------------------------------------------------------------------------------
    def password_file(self, user, password=None, mode=0o600):
        path = os.path.join(self.tmp, f"{user}-{mode:o}.secret")
        with open(path, "w") as f:
            f.write((USERS[user] if password is None else password) + "\n")
        os.chmod(path, mode)
        return path

    def run_driver(self, user, spam=(), ham=(), state=None, url=None, ca=True, pwfile=None,
                   extra=()):
        argv = [DRIVER, "--url", url or f"imaps://127.0.0.1:{self.dv.imaps_port}",
                "--user", user, "--password-file", pwfile or self.password_file(user),
                "--state", state or os.path.join(self.tmp, f"state-{user}")]
        if ca:
            argv += ["--ca-file", self.dv.cert_path]
        for f in spam:
            argv += ["--spam", f]
        for f in ham:
            argv += ["--ham", f]
        argv += list(extra)
        return h.run(argv, timeout=120)

    def expect_messages(self, msgs, cls, folder, raws, first_uid=1, cap=None):
        got = [(m[2], m[3], m[4]) for m in msgs if m[1] == folder]
        want = [(first_uid + i, len(served(r)[:cap]), sha(served(r)[:cap]))
                for i, r in enumerate(raws)]
        self.assertEqual(got, want, f"messages of {folder}")
        self.assertTrue(all(m[0] == cls for m in msgs if m[1] == folder))

    # tests ---------------------------------------------------------------------------------
    def test_incremental_byte_exact_and_nothing_marked_read(self):
        folders = ["Junk", "Ham/Ünread", "INBOX"]
        before = {f: self.dv.flags("alice", f) for f in folders}
        self.assertEqual(sum(1 for fl in before["Junk"].values() if "\\Seen" in fl), 10)

        rc, out, err = self.run_driver("alice", spam=["Junk"], ham=["Ham/Ünread", "INBOX"])
        self.assertEqual(rc, 0, err)
        msgs, info, errors = parse(out)
        self.assertEqual(errors, {})
        self.expect_messages(msgs, "spam", "Junk", self.spam[:20])
        self.expect_messages(msgs, "ham", "Ham/Ünread", self.ham[:12])
        self.expect_messages(msgs, "ham", "INBOX", HOSTILE)
        self.assertEqual(len(msgs), 20 + 12 + len(HOSTILE))
        self.assertIn("alice Junk: 20 new", out)
        self.assertIn("total: 36 new", out)
        uv = self.dv.status("alice", "Junk")["uidvalidity"]
        self.assertEqual(info["Junk"], (20, uv, 20, 0))

        after = {f: self.dv.flags("alice", f) for f in folders}
        for f in folders:
            self.assertEqual(without_recent(after[f]), without_recent(before[f]),
                             f"flags of {f} changed")
        # Unread mail stays unread (EXAMINE and BODY.PEEK: not even \Recent is taken).
        self.assertEqual(sum(1 for fl in after["Junk"].values() if "\\Seen" in fl), 10)

        rc, out, err = self.run_driver("alice", spam=["Junk"], ham=["Ham/Ünread", "INBOX"])
        self.assertEqual(rc, 0, err)
        msgs, info, _ = parse(out)
        self.assertEqual(msgs, [], "a second run fetched again")
        self.assertIn("total: 0 new", out)

        new = self.spam[27:29]
        self.dv.add_messages("alice", "Junk", new)
        rc, out, err = self.run_driver("alice", spam=["Junk"], ham=["Ham/Ünread", "INBOX"])
        self.assertEqual(rc, 0, err)
        msgs, info, _ = parse(out)
        self.assertEqual(len(msgs), 2, out)
        self.expect_messages(msgs, "spam", "Junk", new, first_uid=21)
        self.assertEqual(info["Junk"][:3], (2, uv, 22))
        self.assertIn("alice Junk: 2 new", out)
        self.assertIn("total: 2 new", out)
        self.assertEqual(without_recent(self.dv.flags("alice", "Junk")),
                         {**without_recent(before["Junk"]), 21: "", 22: ""})

    def test_uidvalidity_change_fetches_again(self):
        rc, out, err = self.run_driver("bob", spam=["Junk"])
        self.assertEqual(rc, 0, err)
        msgs, info, _ = parse(out)
        self.expect_messages(msgs, "spam", "Junk", self.spam[20:25])
        old_uv = info["Junk"][1]

        new_uv = self.dv.rebuild_folder("bob", "Junk")
        self.assertNotEqual(new_uv, old_uv)
        rc, out, err = self.run_driver("bob", spam=["Junk"])
        self.assertEqual(rc, 0, err)
        msgs, info, _ = parse(out)
        self.expect_messages(msgs, "spam", "Junk", self.spam[20:25])
        self.assertEqual(info["Junk"], (5, new_uv, 5, 1))

        rc, out, err = self.run_driver("bob", spam=["Junk"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(parse(out)[0], [])

    def test_starttls_and_max_message_bytes(self):
        big = self.spam[0] + b"\n" + b"y" * 5000 + b"\n"
        self.dv.add_messages("dave", "Big", [big])
        rc, out, err = self.run_driver(
            "dave", spam=["Junk"], ham=["Big"], url=f"imap://127.0.0.1:{self.dv.imap_port}",
            extra=["--max-bytes", "1000"])
        self.assertEqual(rc, 0, err)
        msgs, info, _ = parse(out)
        self.assertTrue(all(len(served(m)) > 1000 for m in self.spam[25:27] + [big]))
        self.expect_messages(msgs, "spam", "Junk", self.spam[25:27], cap=1000)
        self.expect_messages(msgs, "ham", "Big", [big], cap=1000)

    def test_folder_that_does_not_exist_is_reported(self):
        rc, out, err = self.run_driver("dave", spam=["NoSuchFolder"],
                                       state=os.path.join(self.tmp, "state-dave-nosuch"))
        self.assertEqual(rc, 1)
        _, _, errors = parse(out)
        self.assertIn("NoSuchFolder", errors)
        self.assertIn("EXAMINE NoSuchFolder refused", errors["NoSuchFolder"])

    def test_password_with_quotes_and_spaces(self):
        rc, out, err = self.run_driver("carol", spam=["Junk"])
        self.assertEqual(rc, 0, err)
        self.expect_messages(parse(out)[0], "spam", "Junk", self.spam[29:30])

    def test_wrong_password(self):
        pw = self.password_file("carol", password="not-the-password")
        rc, out, err = self.run_driver("carol", spam=["Junk"], pwfile=pw)
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("login denied", err)
        self.assertIn("carol", err)
        self.assertNotIn("not-the-password", err + out)

    def test_world_readable_password_file_refused(self):
        pw = self.password_file("alice", mode=0o644)
        rc, out, err = self.run_driver("alice", spam=["Junk"], pwfile=pw,
                                       state=os.path.join(self.tmp, "state-alice-644"))
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("mode 0644", err)
        self.assertIn(pw, err)
        self.assertNotIn("MSG", out)
        pw = self.password_file("alice", mode=0o640)
        rc, out, err = self.run_driver("alice", spam=["Junk"], pwfile=pw,
                                       state=os.path.join(self.tmp, "state-alice-640"))
        self.assertEqual(rc, 1)
        self.assertIn("mode 0640", err)

    def test_untrusted_certificate_refused(self):
        rc, out, err = self.run_driver("alice", spam=["Junk"], ca=False,
                                       state=os.path.join(self.tmp, "state-alice-noca"))
        self.assertEqual(rc, 1)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("TLS certificate not trusted", err)

    def test_spamward_learn_imap_command(self):
        """`spamward learn-imap` on two [[imap]] accounts: one line per folder, the total, and
        the messages really learned (a second `learn` of the same messages finds them all
        learned); a second run learns nothing; a bad account is reported and the other one
        still learned (exit 1)."""
        work = h.make_tempdir("spamward-learn-imap-")
        url = f"imaps://127.0.0.1:{self.dv.imaps_port}"
        bob = {"url": url, "user": "bob", "password_file": self.password_file("bob"),
               "spam_folders": ["Junk"], "ham_folders": [], "ca_file": self.dv.cert_path}
        dave = {"url": url, "user": "dave", "password_file": self.password_file("dave"),
                "spam_folders": ["Junk"], "ham_folders": ["NoSuchFolder"],
                "ca_file": self.dv.cert_path}
        store = os.path.join(work, "store")
        config = os.path.join(work, "spamward.toml")
        with open(config, "w") as f:
            f.write(h.toml_dump({"store": {"backend": "lmdb", "path": store},
                                 "log": {"file": os.path.join(work, "log")}}))
            for account in (bob, dave):
                f.write("\n[[imap]]\n" + h.toml_dump({"x": account}).split("\n", 1)[1])
        rc, out, err = h.run([h.BIN, "learn-imap", "-c", config], timeout=120)
        self.assertEqual(rc, 1, out + err)  # dave's NoSuchFolder
        self.assertIn("bob Junk: 5 new\n", out)
        self.assertIn("dave Junk: 2 new\n", out)
        self.assertIn("total: 7 new\n", out)
        self.assertIn("dave NoSuchFolder", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        rc, out, err = h.run([h.BIN, "learn-imap", "-c", config], timeout=120)
        self.assertIn("bob Junk: 0 new\n", out)
        self.assertIn("total: 0 new\n", out)
        # The 7 messages are in the Bayes database as spam: learning them again changes nothing.
        learned = os.path.join(work, "again")
        os.makedirs(learned)
        for i, raw in enumerate(self.spam[20:27]):
            with open(os.path.join(learned, f"m{i}"), "wb") as f:
                f.write(raw)
        rc, out, err = h.run([h.BIN, "learn", "--spam", learned, "-c", config], timeout=120)
        self.assertEqual(rc, 0, err)
        self.assertIn("7 messages read as spam: 0 learned, 0 moved from ham, 7 already learned", out)
        self.assertIn("7 spam, 0 ham learned", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
