"""A private Dovecot IMAP server on loopback, for the IMAP learning tests (Python 3 stdlib only).

    from dovecot import Dovecot, corpus_messages
    dv = Dovecot(tmp, users={"alice": "pw1"})
    dv.add_messages("alice", "Junk", [b"From: a@b\\r\\n\\r\\nhi\\r\\n"], flags="S")  # before or after start
    dv.start()           # returns once the IMAPS port greets (or raises, with the log)
    ... imaps://127.0.0.1:{dv.imaps_port}, ca_file = dv.cert_path ...
    dv.flags("alice", "Junk")        # {uid: "\\Seen ..."} through doveadm (changes nothing)
    dv.status("alice", "Junk")       # {"messages": 1, "uidnext": 2, "uidvalidity": ...}
    dv.rebuild_folder("alice", "Junk")   # new UIDVALIDITY, UIDs renumbered (as after a restore)
    dv.stop()

- Everything lives under <tmp>/<name>: its own config (nothing reads /etc/dovecot), base_dir,
  state_dir, log, TLS material (a self-signed EC certificate made with openssl, SAN IP:127.0.0.1
  and DNS:localhost; it is its own CA, so clients trust it with ca_file = cert_path), a
  passwd-file with the test accounts (PLAIN passwords), and one Maildir per user.
- Two listeners on free loopback ports: .imaps_port (implicit TLS) and .imap_port (STARTTLS
  offered). Note: Dovecot counts a loopback client as secured, so plaintext LOGIN on .imap_port
  works too; a client test of "STARTTLS required" must set that on the client side.
- As root, mail files belong to MAIL_UID (5000, no /etc/passwd entry needed) and the login and
  internal services run as Debian's dovenull/dovecot users. As another user everything runs as
  that user (no root needed): default_login_user/default_internal_user set to it and chroot off.
- Folders: "INBOX" is ~/Maildir itself, folder "A/B" is ~/Maildir/.A.B (Maildir++, separator
  "/"); names with non-ASCII are stored in modified UTF-7 (Dovecot's default).
- add_messages() writes files straight into the folder's cur/ (through tmp/ and rename), with
  file names whose leading timestamps increase, so UIDs follow the order given. Files dropped
  while the server runs get UIDs at the folder's next sync (SELECT, EXAMINE, STATUS, doveadm).
- Registered with harness's cleanup, like every server there: stopped at exit even when a test
  fails. The master runs in its own session; stop() waits until no process of that session is
  left, and never kills by name (other instances may run).
Facts and pitfalls: /work/shared/notes/dovecot-test-instance.md.
"""

import os
import pwd
import grp
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import time

import harness as h

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
MAIL_UID = 5000  # as root: owner of the Maildirs (any non-zero uid works, no passwd entry)

CORPUS_DIR = os.environ.get("SPAMWARD_CORPUS_DIR") or os.path.abspath(
    os.path.join(h.SOURCE_DIR, "..", "shared", "corpus"))


def corpus_messages(label, count, skip=0):
    """The first `count` messages (bytes) of the shared corpus archive `label` ("ham" or
    "spam"), after skipping `skip`, read straight from <corpus>/<label>.tar.gz: nothing is
    unpacked anywhere. Raises FileNotFoundError when the corpus is not there."""
    path = os.path.join(CORPUS_DIR, f"{label}.tar.gz")
    out = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if not member.isfile():
                continue
            if skip:
                skip -= 1
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            out.append(f.read())
            if len(out) >= count:
                break
    return out


def mutf7_encode(name):
    """Modified UTF-7 of a folder name (RFC 3501 5.1.3), as Dovecot names it on disk."""
    out, buf = [], []

    def flush():
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            import base64
            b = base64.b64encode(raw).decode().rstrip("=").replace("/", ",")
            out.append("&" + b + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


CONF = """\
# written by tests/integration/lib/dovecot.py
instance_name = {instance}
base_dir = {run}
state_dir = {state}
log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_dh = <{dh}
auth_mechanisms = plain login
disable_plaintext_auth = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
{login_chroot}}}
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{chroot}}}
{extra_services}{extra}
"""

NON_ROOT = """\
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
service ipc {{
  chroot =
}}
service old-stats {{
  chroot =
}}
"""


class Dovecot:
    def __init__(self, tmp, users=None, name="dovecot", extra_conf=""):
        # A short path: base_dir holds unix sockets (108-byte limit).
        self.root = os.path.join(tmp, name)
        self.run_dir = os.path.join(self.root, "r")
        self.state_dir = os.path.join(self.root, "s")
        self.home_root = os.path.join(self.root, "home")
        self.conf_path = os.path.join(self.root, "dovecot.conf")
        self.log_path = os.path.join(self.root, "dovecot.log")
        self.output_path = os.path.join(self.root, "dovecot.out")
        self.passwd_path = os.path.join(self.root, "passwd")
        self.cert_path = os.path.join(self.root, "cert.pem")
        self.key_path = os.path.join(self.root, "key.pem")
        self.dh_path = os.path.join(self.root, "dh.pem")
        self.imap_port = h.free_port()
        self.imaps_port = h.free_port()
        self.users = dict(users or {"alice": "pw1"})
        self.proc = None
        self._counter = 0
        self.root_mode = os.geteuid() == 0
        if self.root_mode:
            self.uid = self.gid = MAIL_UID
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()

        for d in (self.root, self.run_dir, self.state_dir, self.home_root):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)  # auth runs as another user: it must reach the passwd-file
        self._make_tls()
        for user in self.users:
            self._make_home(user)
        self._write_passwd()
        self._write_conf(extra_conf)

    def __repr__(self):
        return f"Dovecot(imaps={self.imaps_port}, imap={self.imap_port}, root={self.root})"

    # set-up ------------------------------------------------------------------------------
    def _make_tls(self):
        rc, out, err = h.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                              "ec_paramgen_curve:prime256v1", "-nodes", "-days", "7",
                              "-subj", "/CN=dovecot-test",
                              "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                              "-keyout", self.key_path, "-out", self.cert_path], timeout=60)
        if rc != 0:
            raise RuntimeError(f"openssl req failed ({rc}): {out}{err}")
        # A named group: instant (openssl dhparam searches for primes and is slow).
        rc, out, err = h.run([OPENSSL, "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                              "group:ffdhe2048", "-out", self.dh_path], timeout=60)
        if rc != 0:
            raise RuntimeError(f"openssl genpkey failed ({rc}): {out}{err}")
        for p in (self.cert_path, self.dh_path):
            os.chmod(p, 0o644)
        os.chmod(self.key_path, 0o600)  # read by the master (root or us) only

    def home(self, user):
        return os.path.join(self.home_root, user)

    def _make_home(self, user):
        for d in (self.home(user), os.path.join(self.home(user), "Maildir")):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
            os.chown(d, self.uid, self.gid)
        for sub in ("cur", "new", "tmp"):
            self._mkdir_owned(os.path.join(self.home(user), "Maildir", sub))

    def _mkdir_owned(self, path):
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o700)
        os.chown(path, self.uid, self.gid)

    def _write_passwd(self):
        lines = []
        for user, password in self.users.items():
            if ":" in user + password or "\n" in user + password:
                raise ValueError("no ':' or newline in test users and passwords")
            lines.append(f"{user}:{{PLAIN}}{password}:{self.uid}:{self.gid}::{self.home(user)}::\n")
        with open(self.passwd_path, "w") as f:
            f.writelines(lines)
        os.chmod(self.passwd_path, 0o644)

    def _write_conf(self, extra):
        if self.root_mode:
            non_root = ""
            chroot = ""
        else:
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            non_root = NON_ROOT.format(user=user, group=group)
            chroot = "  chroot =\n"
        text = CONF.format(instance=f"swtest-{os.getpid()}-{self.imaps_port}", run=self.run_dir,
                           state=self.state_dir, log=self.log_path, cert=self.cert_path,
                           key=self.key_path, dh=self.dh_path, passwd=self.passwd_path,
                           uid=self.uid, gid=self.gid, imap_port=self.imap_port,
                           imaps_port=self.imaps_port, login_chroot=chroot, chroot=chroot,
                           extra_services=non_root, extra=extra)
        with open(self.conf_path, "w") as f:
            f.write(text)
        os.chmod(self.conf_path, 0o644)

    # folders and messages ----------------------------------------------------------------
    def folder_path(self, user, folder):
        """The Maildir++ directory of `folder` ("INBOX", "Junk", "A/B", "Ümlaut")."""
        base = os.path.join(self.home(user), "Maildir")
        if folder.upper() == "INBOX":
            return base
        return os.path.join(base, "." + mutf7_encode(folder).replace("/", "."))

    def create_folder(self, user, folder):
        path = self.folder_path(user, folder)
        if not os.path.isdir(path):
            self._mkdir_owned(path)
            for sub in ("cur", "new", "tmp"):
                self._mkdir_owned(os.path.join(path, sub))
            marker = os.path.join(path, "maildirfolder")
            open(marker, "w").close()
            os.chown(marker, self.uid, self.gid)
        return path

    def add_messages(self, user, folder, messages, flags=""):
        """Writes each message (bytes) as a file into the folder's cur/ with Maildir `flags`
        ("S" seen, "F" flagged, ...; "" unread). UIDs are assigned at the next sync in the
        order given. Returns the file paths."""
        path = self.create_folder(user, folder)
        paths = []
        base = int(time.time()) - 100000  # older than anything Dovecot names itself
        for raw in messages:
            self._counter += 1
            unique = f"M{self._counter}P{os.getpid()}"
            name = f"{base + self._counter}.{unique}.swtest:2,{flags}"
            tmp = os.path.join(path, "tmp", name)
            with open(tmp, "wb") as f:
                f.write(raw)
            os.chown(tmp, self.uid, self.gid)
            os.chmod(tmp, 0o600)
            final = os.path.join(path, "cur", name)
            os.rename(tmp, final)
            paths.append(final)
        return paths

    def rebuild_folder(self, user, folder):
        """Deletes the folder's dovecot-uidlist and index files: Dovecot then rebuilds it with
        a new UIDVALIDITY and UIDs renumbered from 1 (what a restore or a server move does).
        Makes sure the UIDVALIDITY really changed; returns the new one."""
        before = self.status(user, folder)["uidvalidity"]
        path = self.folder_path(user, folder)
        for n in os.listdir(path):
            if n == "dovecot-uidlist" or n.startswith("dovecot.index"):
                os.remove(os.path.join(path, n))
        after = self.status(user, folder)["uidvalidity"]
        if after == before:  # rebuilt within the same second: force a different number
            self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(before + 7), folder)
            after = self.status(user, folder)["uidvalidity"]
        if after == before:
            raise RuntimeError(f"UIDVALIDITY of {user}/{folder} did not change")
        return after

    # doveadm (as root it switches to the mail uid itself) ---------------------------------
    def doveadm(self, *args, timeout=30):
        rc, out, err = h.run([DOVEADM, "-c", self.conf_path, *args], timeout=timeout)
        if rc != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({rc}): {out}{err}")
        return out

    def status(self, user, folder):
        """{"messages": n, "uidnext": n, "uidvalidity": n} (this syncs the folder)."""
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", user,
                           "messages uidnext uidvalidity", folder)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}

    def flags(self, user, folder):
        """{uid: "flag flag"} of every message, as Dovecot reports them (read-only)."""
        out = self.doveadm("-f", "flow", "fetch", "-u", user, "uid flags", "mailbox", folder, "all")
        result = {}
        for line in out.splitlines():
            m = re.match(r"uid=(\d+) flags=(.*)$", line.strip())
            if m:
                result[int(m.group(1))] = m.group(2).strip()
        return result

    def append(self, user, folder, raw):
        """Saves one message through Dovecot (doveadm save): UID = UIDNEXT at once."""
        p = subprocess.run([DOVEADM, "-c", self.conf_path, "save", "-u", user, "-m", folder],
                           input=raw, capture_output=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError(f"doveadm save failed ({p.returncode}): {p.stdout!r}{p.stderr!r}")

    # process -----------------------------------------------------------------------------
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=20.0):
        """Starts the master in the foreground (its own session) and waits for the IMAPS greeting."""
        assert not self.alive(), "already running"
        rc, out, err = h.run([DOVECOT, "-c", self.conf_path, "-n"], timeout=30)
        if rc != 0:
            raise RuntimeError(f"dovecot config check failed ({rc}): {out}{err}")
        h.start_server(self, "dovecot", [DOVECOT, "-c", self.conf_path, "-F"], self.root,
                       self.output_path, self._greets, timeout, "greet")
        return self

    def _greets(self):
        ctx = ssl.create_default_context(cafile=self.cert_path)
        try:
            with socket.create_connection(("127.0.0.1", self.imaps_port), timeout=1) as s:
                with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                    return t.recv(200).startswith(b"* OK")
        except (OSError, ssl.SSLError):
            return False

    def _session_pids(self):
        """PIDs of every process of the master's session (children included)."""
        if self.proc is None:
            return []
        sid = self.proc.pid
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            # pid (comm) state ppid pgrp session ...; comm may hold spaces: split after ')'.
            fields = stat[stat.rfind(")") + 2:].split()
            if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
        return pids

    def stop(self, timeout=10.0):
        """SIGTERM to the master; waits for it and for every process of its session
        (SIGKILL to what is left after `timeout`). Safe when not running."""
        if self.proc is not None:
            h.terminate(self.proc, timeout)
        if self.proc is not None and not h.wait_until(lambda: not self._session_pids(), 5):
            for pid in self._session_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        h._unregister(self)

    def _cleanup(self):
        self.stop()

    def output(self):
        return h.tail(self.output_path) + h.tail(self.log_path)

    def diagnostics(self):
        return f"==== {self!r}\n---- dovecot output and log (tail):\n{self.output()}"
