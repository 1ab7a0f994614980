#!/usr/bin/python3
"""The nftables ban export through the real daemon, inside a network namespace this test
creates (issue: "Test it inside a network namespace that the test creates").

What it tests (docs/reputation.md, "nftables"; DESIGN §3.3 [ips]):
  - `spamward serve` with `[ips] export = "all"` and `nft_table = "inet spamward_test"`
    creates the table and the sets banned4 (ipv4_addr) and banned6 (ipv6_addr) with
    flags interval,timeout;
  - a client that hammers through the policy protocol (greylisting "always", the same triplet
    retried before min_delay) is banned, answered `450 4.7.1`, and its address appears in
    banned4 (192.0.2.66) or banned6 (2001:db8:66::1) with an element timeout equal to the
    remaining ban (ban_base 2m: between 1 and 120 s, and within a few seconds of the ban's
    end as `spamward ip` shows it);
  - `spamward allow add ADDRESS` (another process) lifts the ban, and the element leaves the
    set within a few seconds while the other client's element stays;
  - `spamward config check` refuses a malformed table spec with exit code 2.

How: run normally (by ctest), the script creates the namespace spamward-nft-PID, brings
`lo` up in it and runs itself again inside it (`ip netns exec NAME python3 THIS --inside`,
same environment), then deletes the namespace, also when the test fails or is interrupted.
Everything nftables-related happens inside the namespace, which starts with an empty ruleset:
the host's ruleset is never touched (the inner run refuses to start outside a namespace, and
the outer run checks afterwards that no table of this test appeared on the host).
It needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2 and nft; without them it FAILS
with a message saying so, it never skips.
"""

import calendar
import json
import os
import re
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness as h  # noqa: E402

NETNS_PREFIX = "spamward-nft-"
NETNS_ENV = "SPAMWARD_NFT_TEST_NETNS"  # the namespace the inner run must find itself in
HOST_NS_ENV = "SPAMWARD_NFT_TEST_HOST_NS"  # the outer run's namespace, which it must not be in
TABLE_FAMILY, TABLE_NAME = "inet", "spamward_test"
TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

V4_BOT = "192.0.2.66"
V6_BOT = "2001:db8:66::1"
HAMMERING = 3
BAN_SECONDS = 120  # ban_base = "2m": the first offence


# --------------------------------------------------------------------------------------
# outside: create the namespace, run the tests in it, delete it


def _ip(*args, timeout=30):
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout,
                          errors="replace")


def _reap_stale_namespaces():
    """Deletes namespaces of earlier runs of this test that were killed before cleaning up
    (spamward-nft-PID whose PID is gone). Only our own prefix is ever touched."""
    p = _ip("netns", "list")
    if p.returncode != 0:
        return
    for line in p.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(re.escape(NETNS_PREFIX) + r"(\d+)", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _ip("netns", "delete", name)


def _host_has_table():
    """Read-only: does the host (this, the outer, namespace) have our test table?"""
    try:
        p = subprocess.run(["nft", "list", "table", TABLE_FAMILY, TABLE_NAME],
                           capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        return False
    return p.returncode == 0


def run_in_namespace():
    name = f"{NETNS_PREFIX}{os.getpid()}"
    try:
        _reap_stale_namespaces()
        p = _ip("netns", "add", name)
    except FileNotFoundError:
        print("FAIL: test_nft_export needs iproute2 (`ip`) to create a network namespace; "
              "scripts/install-deps installs it.", file=sys.stderr)
        return 1
    if p.returncode != 0:
        print(f"FAIL: cannot create the network namespace {name} (`ip netns add` exited with "
              f"{p.returncode}: {p.stderr.strip()}). This test needs root (CAP_SYS_ADMIN and "
              f"CAP_NET_ADMIN); it does not skip.", file=sys.stderr)
        return 1
    host_had_table = _host_has_table()
    child = None
    rc = 1
    try:
        p = _ip("-n", name, "link", "set", "lo", "up")
        if p.returncode != 0:
            print(f"FAIL: cannot bring lo up in {name}: {p.stderr.strip()}", file=sys.stderr)
            return 1
        env = dict(os.environ)
        env[NETNS_ENV] = name
        env[HOST_NS_ENV] = os.readlink("/proc/self/ns/net")
        child = subprocess.Popen(["ip", "netns", "exec", name, PYTHON, os.path.abspath(__file__),
                                  "--inside", *sys.argv[1:]], env=env)
        rc = child.wait()
    finally:
        # Also on SIGTERM/SIGINT (the harness turns them into SystemExit) and on errors.
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the inner harness stops its spamward
            try:
                child.wait(20)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
        p = _ip("netns", "delete", name)
        if p.returncode != 0:
            print(f"FAIL: cannot delete the network namespace {name}: {p.stderr.strip()}",
                  file=sys.stderr)
            rc = rc or 1
    if not host_had_table and _host_has_table():
        print(f"FAIL: table {TABLE} appeared in the host's ruleset; it must only exist inside "
              f"the namespace (remove it with `nft delete table {TABLE}`)", file=sys.stderr)
        rc = rc or 1
    return rc


def check_inside_namespace():
    """The inner run must never reach the host's ruleset: refuse to run outside the namespace
    the outer run created."""
    want = os.environ.get(NETNS_ENV)
    if not want:
        sys.exit(f"FAIL: --inside is only for the re-execution inside the namespace ({NETNS_ENV} "
                 f"unset); run {os.path.basename(__file__)} without it")
    same_as_host = os.readlink("/proc/self/ns/net") == os.environ.get(HOST_NS_ENV)
    p = _ip("netns", "identify", str(os.getpid()))
    if same_as_host or p.stdout.strip() != want:
        sys.exit(f"FAIL: not inside the network namespace {want} (identify: "
                 f"{p.stdout.strip()!r}); refusing to touch this ruleset")


# --------------------------------------------------------------------------------------
# inside: the tests


def set_elements(set_name):
    """{element: (timeout, expires)} of one set of the test table (seconds; None when the
    element has none), or None when the set does not exist (yet)."""
    rc, out, err = h.run(["nft", "-j", "list", "set", TABLE_FAMILY, TABLE_NAME, set_name])
    if rc != 0:
        return None
    found = None
    for obj in json.loads(out)["nftables"]:
        if "set" in obj:
            found = obj["set"]
    if found is None:
        return None
    elements = {}
    for e in found.get("elem", []):
        timeout = expires = None
        if isinstance(e, dict) and "elem" in e:
            timeout, expires = e["elem"].get("timeout"), e["elem"].get("expires")
            e = e["elem"]["val"]
        if isinstance(e, dict) and "prefix" in e:
            e = f'{e["prefix"]["addr"]}/{e["prefix"]["len"]}'
        elif isinstance(e, dict) and "range" in e:
            e = "-".join(e["range"])
        elements[e] = (timeout, expires)
    return elements


def set_info(set_name):
    rc, out, err = h.run(["nft", "-j", "list", "set", TABLE_FAMILY, TABLE_NAME, set_name])
    if rc != 0:
        raise AssertionError(f"nft list set {TABLE} {set_name} failed ({rc}): {err}")
    return next(obj["set"] for obj in json.loads(out)["nftables"] if "set" in obj)


class NftablesExport(h.IntegrationCase):
    def settings(self):
        return {
            "ips": {"export": "all", "nft_table": TABLE,
                    "blocklist_file": os.path.join(self.tmp, "spamward", "banned.txt")},
            "greylist": {"mode": "always", "min_delay": "1m", "max_wait": "5m",
                         "hammering": HAMMERING},
            "reputation": {"ban_base": "2m"},
        }

    def rcpt(self, sw, client):
        return sw.policy(h.policy_attrs(
            client_address=client, sender="win@lottery.example",
            recipient="f@local.example.test", helo_name="mx.example.net",
            client_name="mx.example.net", reverse_client_name="mx.example.net"))["action"]

    def hammer(self, sw, client):
        """Retries one triplet at once until the answer is the ban; returns the answers."""
        answers = []
        for _ in range(HAMMERING + 5):
            answers.append(self.rcpt(sw, client))
            if answers[-1].startswith("450 4.7.1"):
                break
            self.assertTrue(answers[-1].startswith("DEFER_IF_PERMIT"), answers)
        self.assertTrue(answers[-1].startswith("450 4.7.1"), f"{client} never banned: {answers}")
        # The first request and `hammering` early retries; the retry after that meets the ban.
        self.assertEqual(len(answers), HAMMERING + 2, answers)
        return answers

    def ban_left(self, sw, client):
        """Seconds until the ban of `client` ends, from `spamward ip` (None if not shown)."""
        rc, out, err = sw.cli("ip", client)
        self.assertEqual(rc, 0, err)
        m = re.search(r"ban: \S+ until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
        if not m:
            return None
        return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")) - time.time()

    def assert_element(self, sw, set_name, client):
        def present():
            elements = set_elements(set_name)
            return elements if elements and client in elements else None

        elements = h.wait_until(present, 5)
        self.assertIsNotNone(elements, f"{client} never appeared in {set_name}: "
                                       f"{set_elements(set_name)}")
        timeout, expires = elements[client]
        self.assertIsNotNone(timeout, f"{client} in {set_name} has no timeout: {elements}")
        self.assertIsNotNone(expires, f"{client} in {set_name} has no expiry: {elements}")
        self.assertTrue(1 <= timeout <= BAN_SECONDS, elements)
        self.assertTrue(1 <= expires <= timeout, elements)
        left = self.ban_left(sw, client)
        self.assertIsNotNone(left, f"`spamward ip {client}` shows no ban")
        # The ban's end is shown to the second, the element counts whole seconds down.
        self.assertLessEqual(abs(expires - left), 3,
                             f"{client}: element expires in {expires}s, the ban ends in {left:.1f}s")

    def test_bans_reach_the_sets_and_lifting_removes_them(self):
        sw = self.spamward(self.settings())
        # The first export at start creates the table and both (empty) sets.
        self.assertIsNotNone(h.wait_until(lambda: set_elements("banned4") == {} and
                                          set_elements("banned6") == {}, 5),
                             f"sets not created: {h.run(['nft', 'list', 'ruleset'])[1]}")
        for set_name, addr_type in (("banned4", "ipv4_addr"), ("banned6", "ipv6_addr")):
            info = set_info(set_name)
            self.assertEqual(info["type"], addr_type, info)
            self.assertEqual(sorted(info.get("flags", [])), ["interval", "timeout"], info)

        self.hammer(sw, V4_BOT)
        self.assert_element(sw, "banned4", V4_BOT)
        self.hammer(sw, V6_BOT)
        self.assert_element(sw, "banned6", V6_BOT)
        self.assertEqual(list(set_elements("banned4")), [V4_BOT])
        self.assertEqual(list(set_elements("banned6")), [V6_BOT])

        # The admin lifts the IPv4 ban from another process: its element goes, the IPv6 stays.
        rc, out, err = sw.cli("allow", "add", V4_BOT)
        self.assertEqual(rc, 0, err)
        self.assertIn("lifted 1 ban", out)
        self.assertIsNotNone(h.wait_until(lambda: set_elements("banned4") == {}, 5),
                             f"{V4_BOT} still in banned4: {set_elements('banned4')}")
        self.assertEqual(list(set_elements("banned6")), [V6_BOT])
        rc, out, err = sw.cli("allow", "add", V6_BOT)
        self.assertEqual(rc, 0, err)
        self.assertIn("lifted 1 ban", out)
        self.assertIsNotNone(h.wait_until(lambda: set_elements("banned6") == {}, 5),
                             f"{V6_BOT} still in banned6: {set_elements('banned6')}")
        self.assertEqual(sw.metric("spamward_ips_export_failures_total", 'target="nftables"'), 0.0)

    def test_config_check_refuses_a_bad_table_spec(self):
        sw = self.spamward(self.settings(), start=False)
        rc, out, err = sw.cli("config", "check")
        self.assertEqual(rc, 0, f"the good config is refused: {out}{err}")
        for bad in ("inet bad-name!", "arp spamward", "inet spamward extra"):
            with self.subTest(nft_table=bad):
                settings = self.settings()
                settings["ips"]["nft_table"] = bad
                sw.write_config(sw.config_text(settings))
                rc, out, err = sw.cli("config", "check")
                self.assertEqual(rc, 2, f"nft_table = {bad!r} accepted: {out}{err}")
                self.assertIn("nft_table", err)


if __name__ == "__main__":
    if "--inside" in sys.argv[1:]:
        sys.argv.remove("--inside")
        check_inside_namespace()
        h.main()
    else:
        sys.exit(run_in_namespace())
