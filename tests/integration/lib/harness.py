"""Integration-test harness: real servers on loopback, Python 3 standard library only.

Pieces:
- free_port(), make_tempdir(): unique resources, so ctest can run scripts in parallel;
- Spamward: a `spamward serve` with its own config (listeners on free ports, store and log
  in a temp dir, DNS pointed at a closed loopback port so nothing leaves the machine);
- Postfix: a private instance as /work/shared/notes/postfix-test-instance.md describes it
  (own config, queue and data dirs, loopback only, delivers into Maildirs only);
- swaks(): the SMTP client, with XCLIENT to present any client address;
- policy_request() / PolicyConnection: the Postfix policy protocol, by hand;
- IntegrationCase: a unittest.TestCase that prints the logs of its servers when a test
  fails and stops every process it started, even when the test fails.

Every process started here is registered and stopped at exit (atexit, and SIGTERM/SIGINT
are turned into a normal exit), so a failing test leaves nothing running.
"""

import atexit
import errno
import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("SPAMWARD_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", "..", ".."))
BIN = os.environ.get("SPAMWARD_BIN") or os.path.join(SOURCE_DIR, "build", "spamward")
SHIPPED_CONFIG = os.path.join(SOURCE_DIR, "config", "spamward.toml")

KEEP_TMP = bool(os.environ.get("SPAMWARD_KEEP_TMP"))

# --------------------------------------------------------------------------------------
# process registry: everything started here is stopped at exit

_live = []  # objects with a _cleanup() method, in start order
_live_lock = threading.Lock()


def _register(obj):
    with _live_lock:
        if obj not in _live:
            _live.append(obj)


def _unregister(obj):
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


def terminate(proc, timeout):
    """SIGTERM, then SIGKILL after `timeout` seconds. True when it exited on SIGTERM."""
    if proc.poll() is not None:
        return True
    proc.terminate()
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return False


class ChildServer:
    """A helper server a test started (unbound, redis, ...): stop() sends SIGTERM, then SIGKILL,
    and diagnostics() shows the tail of its output. Subclasses set `proc`, `output_path` and
    `label`; `_before_terminate()` may prepare the process (e.g. resume a paused one)."""

    label = "server"
    proc = None
    output_path = None

    def _before_terminate(self):
        pass

    def stop(self, timeout=5.0):
        """Stops it (SIGTERM, then SIGKILL). Safe when not running."""
        if self.proc is not None and self.proc.poll() is None:
            self._before_terminate()
            terminate(self.proc, timeout)
        _unregister(self)

    def _cleanup(self):
        self.stop()

    def output(self):
        return tail(self.output_path)

    def diagnostics(self):
        return f"==== {self!r}\n---- {self.label} output (tail):\n{self.output()}"


def cleanup_all():
    """Stops every registered process (newest first). Safe to call more than once."""
    while True:
        with _live_lock:
            if not _live:
                return
            obj = _live.pop()
        try:
            obj._cleanup()
        except Exception as e:  # cleanup must go on
            print(f"harness: cleanup of {obj!r} failed: {e}", file=sys.stderr)


atexit.register(cleanup_all)


def _exit_on_signal(signum, _frame):
    # A normal exit runs atexit, which stops Postfix and spamward.
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_sig, _exit_on_signal)
    except (ValueError, OSError):
        pass

# --------------------------------------------------------------------------------------
# small utilities

_handed_out = set()


def free_port(kind=socket.SOCK_STREAM):
    """A loopback port that is free now (TCP by default, UDP with kind=SOCK_DGRAM).

    Never hands out the same port twice in one process. Between processes the kernel's
    ephemeral allocation makes a clash unlikely; the TCP port is also checked for UDP use
    and vice versa, so one number serves either purpose."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _handed_out:
            continue
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port")


def make_tempdir(prefix="spamward-it-"):
    """A fresh temp dir, mode 0755 (Postfix's master dies in a 0700 parent), removed at exit
    unless SPAMWARD_KEEP_TMP is set."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    if not KEEP_TMP:
        atexit.register(shutil.rmtree, path, True)
    return path


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns a true value (returned) or timeout passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def port_accepts(port, host="127.0.0.1", timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def raise_nofile(want=8192):
    """Raises this process's soft RLIMIT_NOFILE (children inherit it); returns the new soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_server(owner, name, argv, cwd, output_path, ready, timeout, not_ready):
    """Starts a fixture server (stdout and stderr into output_path, its own session), registers
    `owner` for cleanup, and polls ready() every 50 ms. Returns the Popen once ready(); raises
    RuntimeError with the server's output when it exits first, or after `timeout` seconds
    (then owner.stop() is called first; `not_ready` says what it failed to do)."""
    with open(output_path, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True)
    owner.proc = proc
    _register(owner)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _unregister(owner)
            raise RuntimeError(f"{name} exited with {proc.returncode} during start-up:\n"
                               + owner.output())
        if ready():
            return proc
        if time.monotonic() > deadline:
            owner.stop()
            raise RuntimeError(f"{name} did not {not_ready} within {timeout}s:\n" + owner.output())
        time.sleep(0.05)


def _read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tail(path, lines=60):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})\n"


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string for everything we write
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


def toml_dump(sections):
    """{"table": {"key": value}} -> TOML text (one level of tables is all our configs need)."""
    out = []
    for table, keys in sections.items():
        out.append(f"[{table}]")
        for k, v in keys.items():
            out.append(f"{k} = {toml_value(v)}")
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Postfix policy protocol

# The attributes Postfix 3.7.11 sends at RCPT, as captured from the test instance.
BASE_POLICY_ATTRS = {
    "request": "smtpd_access_policy",
    "protocol_state": "RCPT",
    "protocol_name": "ESMTP",
    "client_address": "192.0.2.10",
    "client_name": "mx.example.net",
    "client_port": "40000",
    "reverse_client_name": "mx.example.net",
    "server_address": "127.0.0.1",
    "server_port": "25",
    "helo_name": "mx.example.net",
    "sender": "alice@example.net",
    "recipient": "bob@local.example.test",
    "recipient_count": "0",
    "queue_id": "",
    "instance": "1a2b.5f3c2e1d.9e8f.0",
    "size": "0",
    "etrn_domain": "",
    "stress": "",
    "sasl_method": "",
    "sasl_username": "",
    "sasl_sender": "",
    "ccert_subject": "",
    "ccert_issuer": "",
    "ccert_fingerprint": "",
    "ccert_pubkey_fingerprint": "",
    "encryption_protocol": "",
    "encryption_cipher": "",
    "encryption_keysize": "0",
    "policy_context": "",
}

_instance_counter = [0]


def policy_attrs(**overrides):
    """A full RCPT-stage request; each call gets a fresh `instance` unless given."""
    _instance_counter[0] += 1
    attrs = dict(BASE_POLICY_ATTRS)
    attrs["instance"] = f"{os.getpid():x}.{int(time.time()):x}.{_instance_counter[0]:x}.0"
    attrs.update(overrides)
    return attrs


def encode_request(attrs):
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


def parse_reply(raw):
    """b"action=DUNNO\\n\\n" -> {"action": "DUNNO"}"""
    reply = {}
    for line in raw.decode("utf-8", "replace").split("\n"):
        if not line:
            continue
        k, _, v = line.partition("=")
        reply[k] = v
    return reply


class PolicyConnection:
    """One persistent policy connection (Postfix reuses them for many requests)."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def request(self, attrs, timeout=10.0):
        self.sock.settimeout(timeout)
        self.sock.sendall(encode_request(attrs))
        return self.read_reply(timeout)

    def read_reply(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete policy reply within {timeout}s (got {self.buf[:200]!r})")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"policy server closed the connection (got {self.buf[:200]!r})")
            self.buf += chunk
        raw, _, self.buf = self.buf.partition(b"\n\n")
        return parse_reply(raw + b"\n")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def policy_request(port, attrs=None, timeout=10.0, **overrides):
    """Sends one request on a new connection and returns the reply attributes."""
    if attrs is None:
        attrs = policy_attrs(**overrides)
    with PolicyConnection(port, timeout=timeout) as c:
        return c.request(attrs, timeout=timeout)


def wait_closed(sock, timeout):
    """Reads and discards until the peer closes (True) or timeout passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except OSError as e:  # reset counts as closed
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                return True
            raise


# --------------------------------------------------------------------------------------
# HTTP

def http_get(port, path, timeout=10.0, host="127.0.0.1"):
    """(status, body text, headers dict)"""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace"), dict(r.getheaders())
    finally:
        conn.close()


def metric_samples(text, name):
    """Prometheus text -> {labels: value} for the samples of metric `name`, e.g.
    metric_samples(body, "spamward_decisions_total") -> {'action="accept"': 3.0}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^" + re.escape(name) + r"(?:\{(.*)\})?\s+(\S+)", line)
        if m:
            out[m.group(1) or ""] = float(m.group(2))
    return out


# --------------------------------------------------------------------------------------
# spamward


class Spamward:
    """A `spamward serve` under test.

    The config has the policy and HTTP listeners on free loopback ports (no milter, no
    spamd), the LMDB store and the log file in its own dir, DNS pointed at a closed
    loopback UDP port (answers fail fast; nothing leaves the machine), greylisting off and
    `[network] trusted = []` so loopback and XCLIENT'd clients are checked. `overrides`
    ({"table": {"key": value}}) change or add keys.
    """

    def __init__(self, tmp, overrides=None, name="spamward"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.policy_port = free_port()
        self.http_port = free_port()
        self.dns_port = free_port(socket.SOCK_DGRAM)
        self.config_path = os.path.join(self.dir, "spamward.toml")
        self.log_path = os.path.join(self.dir, "spamward.log")
        self.store_path = os.path.join(self.dir, "store")
        self.output_path = os.path.join(self.dir, "serve.out")  # serve's own stdout+stderr
        self.proc = None
        self.starts = 0
        self.write_config(self.config_text(overrides))

    def __repr__(self):
        return f"Spamward(policy={self.policy_port}, http={self.http_port}, dir={self.dir})"

    # config ------------------------------------------------------------------------------
    def settings(self, overrides=None):
        s = {
            "listen": {
                "policy": f"127.0.0.1:{self.policy_port}",
                "http": f"127.0.0.1:{self.http_port}",
            },
            "store": {"backend": "lmdb", "path": self.store_path},
            "log": {"format": "text", "file": self.log_path},
            "dns": {"servers": [f"127.0.0.1@{self.dns_port}"], "timeout_ms": 300},
            "engine": {"stage_deadline_ms": 1000},
            "network": {"trusted": []},
            "greylist": {"mode": "off"},
            "ips": {"blocklist_file": os.path.join(self.dir, "banned.txt")},
        }
        for table, keys in (overrides or {}).items():
            s.setdefault(table, {}).update(keys)
        return s

    def config_text(self, overrides=None):
        return "# written by tests/integration/lib/harness.py\n" + toml_dump(self.settings(overrides))

    def write_config(self, text):
        tmp = self.config_path + ".new"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config_path)  # the daemon never reads half a file

    # process -----------------------------------------------------------------------------
    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=20.0):
        """Starts serve and waits until the policy and HTTP ports accept connections."""
        assert not self.alive(), "already running"
        out = open(self.output_path, "ab")
        out.write(f"--- start #{self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
        out.flush()
        self.proc = subprocess.Popen(
            [BIN, "serve", "-c", self.config_path],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=self.dir, start_new_session=True,
        )
        out.close()
        self.starts += 1
        _register(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"spamward serve exited with {self.proc.returncode} during start-up:\n"
                    + tail(self.output_path) + tail(self.log_path))
            if port_accepts(self.policy_port) and port_accepts(self.http_port):
                return self
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(f"spamward serve did not listen on {self.policy_port} and "
                                   f"{self.http_port} within {timeout}s:\n" + tail(self.output_path)
                                   + tail(self.log_path))
            time.sleep(0.05)

    def stop(self, timeout=10.0):
        """SIGTERM (drain); SIGKILL after `timeout`. Returns the exit code (None if not running)."""
        if self.proc is None:
            return None
        if not terminate(self.proc, timeout):
            _unregister(self)
            raise RuntimeError(f"spamward did not exit within {timeout}s of SIGTERM (killed)")
        _unregister(self)
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        _unregister(self)

    def _cleanup(self):
        if self.alive():
            try:
                self.stop(timeout=5)
            except Exception:
                self.kill9()

    def reload(self, new_toml=None):
        """Rewrites the config (when new_toml is given: text, or an overrides dict) and sends SIGHUP."""
        if new_toml is not None:
            if isinstance(new_toml, dict):
                new_toml = self.config_text(new_toml)
            self.write_config(new_toml)
        assert self.alive(), "spamward is not running"
        self.proc.send_signal(signal.SIGHUP)

    # clients -----------------------------------------------------------------------------
    def cli(self, *args, timeout=30.0, input=None, config=True):
        """Runs `spamward ARGS -c CONFIG`; returns (rc, stdout, stderr)."""
        argv = [BIN, *args] + (["-c", self.config_path] if config else [])
        return run(argv, timeout=timeout, input=input, cwd=self.dir)

    def policy(self, attrs=None, timeout=10.0, **overrides):
        return policy_request(self.policy_port, attrs, timeout=timeout, **overrides)

    def wait_action(self, want, timeout=3.0, **overrides):
        """Sends requests until the reply's action starts with `want`; returns the last reply."""
        last = {}

        def probe():
            nonlocal last
            last = self.policy(**overrides)
            return last.get("action", "").startswith(want)

        if wait_until(probe, timeout, interval=0.1):
            return last
        raise AssertionError(f"policy action never became {want!r} within {timeout}s; last reply {last}")

    def http_get(self, path, timeout=10.0):
        return http_get(self.http_port, path, timeout=timeout)

    def metric(self, name, labels=""):
        """The value of one sample from /metrics (None when absent)."""
        status, body, _ = self.http_get("/metrics")
        if status != 200:
            raise AssertionError(f"/metrics answered {status}")
        return metric_samples(body, name).get(labels)

    # log ---------------------------------------------------------------------------------
    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except OSError:
            return 0

    def log_text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, predicate, since=0, timeout=3.0):
        """Polls the log until a line satisfies predicate(line); returns that line or None.
        predicate may be a regex string (searched, case-insensitive)."""
        if isinstance(predicate, str):
            rx = re.compile(predicate, re.I)
            predicate = lambda line: rx.search(line)  # noqa: E731

        def probe():
            for line in self.log_text(since).splitlines():
                if predicate(line):
                    return line
            return None

        return wait_until(probe, timeout, interval=0.1)

    def diagnostics(self):
        return (f"==== {self!r}\n---- serve output (tail):\n{tail(self.output_path)}"
                f"---- log (tail):\n{tail(self.log_path)}")


def run(argv, timeout=30.0, input=None, cwd=None, env=None):
    """(rc, stdout, stderr) of a command; text mode."""
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout,
                       cwd=cwd, env=env, errors="replace")
    return p.returncode, p.stdout, p.stderr


# --------------------------------------------------------------------------------------
# Postfix

MASTER_CF = """\
{port}       inet       n  -  n  -     -  smtpd
pickup     unix       n  -  n  60    1  pickup
cleanup    unix       n  -  n  -     0  cleanup
qmgr       unix       n  -  n  300   1  qmgr
rewrite    unix       -  -  n  -     -  trivial-rewrite
bounce     unix       -  -  n  -     0  bounce
defer      unix       -  -  n  -     0  bounce
trace      unix       -  -  n  -     0  bounce
verify     unix       -  -  n  -     1  verify
flush      unix       n  -  n  1000? 0  flush
proxymap   unix       -  -  n  -     -  proxymap
proxywrite unix       -  -  n  -     1  proxymap
showq      unix       n  -  n  -     -  showq
error      unix       -  -  n  -     -  error
retry      unix       -  -  n  -     -  error
discard    unix       -  -  n  -     -  discard
anvil      unix       -  -  n  -     1  anvil
scache     unix       -  -  n  -     1  scache
postlog    unix-dgram n  -  n  -     1  postlogd
virtual    unix       -  n  n  -     -  virtual
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
syslog_name = postfix-test
myhostname = mx.example.test
mydomain = example.test
myorigin = $myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relayhost =
relay_domains =
mynetworks = 127.0.0.0/8 [::1]/128
inet_interfaces = 127.0.0.1
inet_protocols = ipv4, ipv6
default_transport = error:outbound delivery disabled (test instance)
relay_transport = error:relay disabled (test instance)
local_transport = error:local delivery disabled (test instance)
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:{policy_port}
smtpd_policy_service_timeout = {policy_timeout}
smtpd_milters =
non_smtpd_milters =
virtual_mailbox_domains = local.example.test
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = texthash:{root}/etc/vmailbox
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_authorized_xclient_hosts = 127.0.0.0/8 [::1]/128
smtpd_peername_lookup = no
local_header_rewrite_clients =
append_dot_mydomain = no
biff = no
"""

VMAILBOX = """\
bob@local.example.test   local.example.test/bob/
@local.example.test      local.example.test/catchall/
"""

QUEUE_DIRS_PRIVATE = ["active", "bounce", "corrupt", "defer", "deferred", "flush", "hold",
                      "incoming", "private", "saved", "trace"]


class Postfix:
    """A private Postfix 3.7 on 127.0.0.1:smtp_port whose RCPT restrictions end with
    check_policy_service inet:127.0.0.1:policy_port. Mail for @local.example.test goes to
    Maildirs under <root>/mail/local.example.test/<user>/ (bob, else catchall)."""

    DOMAIN = "local.example.test"

    def __init__(self, tmp, policy_port, name="postfix", policy_timeout="3s", extra_main_cf=""):
        self.root = os.path.join(tmp, name)
        self.etc = os.path.join(self.root, "etc")
        self.spool = os.path.join(self.root, "spool")
        self.data = os.path.join(self.root, "data")
        self.mail = os.path.join(self.root, "mail")
        self.maillog = os.path.join(self.root, "maillog")
        self.smtp_port = free_port()
        self.policy_port = policy_port
        self.running = False
        pf = pwd.getpwnam("postfix")
        self.uid, self.gid = pf.pw_uid, pf.pw_gid
        postdrop = grp.getgrnam("postdrop").gr_gid

        for d in (self.root, self.etc, self.spool):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        os.makedirs(self.data, exist_ok=True)
        os.chown(self.data, self.uid, 0)
        os.chmod(self.data, 0o700)
        os.makedirs(self.mail, exist_ok=True)
        os.chown(self.mail, self.uid, self.gid)
        # Pre-created queue dirs: otherwise the first start runs post-install (~1.5 s).
        for d in QUEUE_DIRS_PRIVATE:
            self._mkdir(os.path.join(self.spool, d), self.uid, 0, 0o700)
        self._mkdir(os.path.join(self.spool, "maildrop"), self.uid, postdrop, 0o730)
        self._mkdir(os.path.join(self.spool, "public"), self.uid, postdrop, 0o710)
        self._mkdir(os.path.join(self.spool, "pid"), 0, 0, 0o755)

        self._write(os.path.join(self.etc, "main.cf"),
                    MAIN_CF.format(root=self.root, policy_port=policy_port, uid=self.uid,
                                   gid=self.gid, policy_timeout=policy_timeout) + extra_main_cf)
        self._write(os.path.join(self.etc, "master.cf"), MASTER_CF.format(port=self.smtp_port))
        self._write(os.path.join(self.etc, "vmailbox"), VMAILBOX)
        # Hot config files cost ~1.5 s per postfix command: backdate them.
        past = time.time() - 10
        for f in ("main.cf", "master.cf", "vmailbox"):
            os.utime(os.path.join(self.etc, f), (past, past))

    def __repr__(self):
        return f"Postfix(smtp={self.smtp_port}, policy={self.policy_port}, root={self.root})"

    @staticmethod
    def _mkdir(path, uid, gid, mode):
        os.makedirs(path, exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)

    @staticmethod
    def _write(path, text):
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)

    def _postfix(self, *args, timeout=30):
        return run(["postfix", "-c", self.etc, *args], timeout=timeout)

    def start(self):
        _register(self)
        # Under heavy load (two parallel builds and ctest -j2) a fresh master has been seen,
        # rarely, to accept connections without ever logging "daemon started" or spawning an
        # smtpd: the client then waits for a greeting that never comes, and `postfix stop`
        # times out. That is Postfix's start-up, not what the tests examine: such an instance
        # is killed and started once more.
        for attempt in (1, 2):
            rc, out, err = self._postfix("start")
            if rc != 0:
                self._cleanup()
                raise RuntimeError(f"postfix start failed ({rc}): {out}{err}\n{tail(self.maillog)}")
            self.running = True
            if not wait_until(lambda: port_accepts(self.smtp_port), 10):
                raise RuntimeError(
                    f"postfix does not listen on {self.smtp_port}:\n{tail(self.maillog)}")
            if self._greets(timeout=10):
                return self
            print(f"postfix on {self.smtp_port} accepts but does not greet (attempt {attempt});"
                  f" killing it:\n{tail(self.maillog)}", file=sys.stderr)
            self._kill_all()
        raise RuntimeError(f"postfix on {self.smtp_port} never greets:\n{tail(self.maillog)}")

    def _greets(self, timeout):
        """True when the master logged its start and an smtpd answers 220."""
        if not wait_until(lambda: "daemon started" in _read_text(self.maillog), timeout):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.smtp_port), timeout=timeout) as s:
                s.settimeout(timeout)
                greeting = s.recv(512)
                s.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220")
        except OSError:
            return False

    def _kill_all(self):
        for pid in self.processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.processes(), 5)
        pid_file = os.path.join(self.spool, "pid", "master.pid")
        if os.path.exists(pid_file):
            os.unlink(pid_file)
        self.running = False

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def processes(self):
        """PIDs of every process of this instance (MAIL_CONFIG=<etc> in their environment)."""
        marker = f"MAIL_CONFIG={self.etc}".encode()
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if marker in env:
                pids.append(int(entry))
        return pids

    def stop(self):
        """postfix stop, then make sure no process of the instance is left. Returns the
        PIDs that had to be killed (should be empty)."""
        if self.running or self.master_pid():
            self._postfix("stop")
        self.running = False
        left = []
        if not wait_until(lambda: not self.processes(), 5):
            left = self.processes()
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        _unregister(self)
        return left

    def _cleanup(self):
        self.stop()

    # queue and mailboxes ----------------------------------------------------------------
    def queue(self):
        """Queue IDs shown by `postqueue -p` (empty list when the queue is empty)."""
        rc, out, err = run(["postqueue", "-c", self.etc, "-p"], timeout=30)
        if rc != 0:
            raise RuntimeError(f"postqueue -p failed ({rc}): {out}{err}")
        if "Mail queue is empty" in out:
            return []
        ids = []
        for line in out.splitlines():
            m = re.match(r"^([0-9A-Za-z]{5,})[*!]?\s+\d+\s", line)
            if m:
                ids.append(m.group(1))
        if not ids:
            raise RuntimeError(f"cannot parse postqueue -p output: {out!r}")
        return ids

    def maildir(self, user="bob"):
        return os.path.join(self.mail, self.DOMAIN, user)

    def messages(self, user="bob"):
        """Contents of every delivered message of `user` (new/ and cur/), oldest first."""
        found = []
        for sub in ("new", "cur"):
            d = os.path.join(self.maildir(user), sub)
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for n in names:
                p = os.path.join(d, n)
                try:
                    with open(p, "rb") as f:
                        found.append((os.path.getmtime(p), f.read().decode("utf-8", "replace")))
                except FileNotFoundError:
                    pass
        return [text for _, text in sorted(found)]

    def wait_message(self, token, user="bob", timeout=10.0):
        """Polls the Maildir for a message containing `token`; returns its text or None."""
        def probe():
            for m in self.messages(user):
                if token in m:
                    return m
            return None

        return wait_until(probe, timeout)

    def count_messages(self, token, user="bob"):
        return sum(1 for m in self.messages(user) if token in m)

    def diagnostics(self):
        return f"==== {self!r}\n---- maillog (tail):\n{tail(self.maillog)}"


def swaks(port, to, from_="alice@example.net", client_addr=None, client_name="mx.example.net",
          helo="mx.example.net", local_interface=None, headers=(), body=None, timeout=60):
    """Sends one mail through 127.0.0.1:port with swaks; returns (exit code, transcript).

    client_addr: present this client address with XCLIENT (NAME and HELO too, as the
    Postfix notes advise; EHLO repeats the HELO name so it is not overwritten).
    local_interface: bind the connection to this 127.x.y.z source address instead."""
    argv = ["swaks", "--server", f"127.0.0.1:{port}", "--to", to, "--from", from_,
            "--helo", helo, "--timeout", "30"]
    if client_addr:
        argv += ["--xclient-addr", client_addr, "--xclient-name", client_name,
                 "--xclient-helo", helo]
    if local_interface:
        argv += ["--local-interface", local_interface]
    for h in headers:
        argv += ["--header", h]
    if body is not None:
        argv += ["--body", body]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, errors="replace",
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def smtp_replies(transcript, code_prefix=""):
    """Server reply lines ("<- 250 ...", "<** 554 ...") from a swaks transcript."""
    out = []
    for line in transcript.splitlines():
        m = re.match(r"^\s*<[-*~]+\s+(\d{3}[ -].*)$", line)
        if m and m.group(1).startswith(code_prefix):
            out.append(m.group(1))
    return out


# --------------------------------------------------------------------------------------
# unittest glue


class IntegrationCase(unittest.TestCase):
    """Base class: self.tmp is a fresh 0755 dir per test; servers made with self.spamward()
    and self.postfix() are stopped after the test, and their logs printed when it fails."""

    def setUp(self):
        self.tmp = make_tempdir()
        self._servers = []
        self.addCleanup(self._finish)

    def spamward(self, overrides=None, start=True, name="spamward"):
        sw = Spamward(self.tmp, overrides, name=name)
        self._servers.append(sw)
        if start:
            sw.start()
        return sw

    def postfix(self, policy_port, **kw):
        pf = Postfix(self.tmp, policy_port, **kw)
        self._servers.append(pf)
        pf.start()
        return pf

    def _failed(self):
        """True when this test (or one of its subtests) has failed so far. (Inside a cleanup
        unittest's _Outcome.success is reset, so look at the recorded failures instead.)"""
        result = getattr(getattr(self, "_outcome", None), "result", None)
        if result is None:
            return False
        for test, _ in list(getattr(result, "failures", [])) + list(getattr(result, "errors", [])):
            if test is self or getattr(test, "test_case", None) is self:
                return True
        return False

    def _finish(self):
        if self._failed():
            for s in self._servers:
                print("\n" + s.diagnostics(), file=sys.stderr)
        for s in reversed(self._servers):
            s._cleanup()


def main():
    if not os.access(BIN, os.X_OK):
        print(f"spamward binary not found or not executable: {BIN} (set SPAMWARD_BIN)", file=sys.stderr)
        sys.exit(1)
    unittest.main(verbosity=2)
