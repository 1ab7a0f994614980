"""A private unbound on loopback as a fixture DNS server (Python 3 stdlib only).

    from unbound import Unbound
    dns = Unbound(tmp,
                  local_zones=[("bl.example.test", "static"), ("all.example.test", "redirect")],
                  local_data=["2.0.0.127.bl.example.test. A 127.0.0.2",
                              "all.example.test. A 127.0.0.2"],
                  local_data_ptr=["192.0.2.20 host.example.test"])
    dns.start()            # returns once it answers a query (or raises, with its output)
    ... [dns] servers = [f"127.0.0.1@{dns.port}"] ...
    dns.stop()             # SIGTERM, then SIGKILL; start() again on the same port is allowed

- local_zones: (name, type) pairs, type as unbound spells it ("static", "redirect", ...).
  Declare every fixture domain: a name outside every local zone makes unbound recurse to the
  internet, which is unreachable here, so the client only times out.
  "in-addr.arpa." and "ip6.arpa." are always static (PTRs come only from local data).
- local_data: unbound `local-data` values (RRs in zone-file syntax). Written in single
  quotes, so TXT strings can be double-quoted: 'x.test. TXT "v=spf1 -all"'.
- local_data_ptr: `local-data-ptr` values ("ADDRESS NAME").
- .port: its UDP and TCP port on 127.0.0.1 (free, chosen at construction).
- Registered with harness's cleanup, like every server there: stopped at exit even when a
  test fails. .output() returns what unbound printed (for diagnostics()).
Facts and pitfalls: /work/shared/notes/unbound-test-instance.md.
"""

import os
import random
import socket
import struct
import subprocess

import harness as h

UNBOUND = "/usr/sbin/unbound"


def dns_query(port, name, qtype=1, timeout=0.5, host="127.0.0.1"):
    """One UDP query; returns (rcode, answer count) or None when nothing came back.
    qtype: 1 A, 28 AAAA, 12 PTR, 16 TXT."""
    qid = random.randrange(65536)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)  # RD set
    for label in name.rstrip(".").split("."):
        packet += bytes([len(label)]) + label.encode()
    packet += b"\x00" + struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (host, port))
            reply, _ = s.recvfrom(4096)
        except OSError:
            return None
    if len(reply) < 12:
        return None
    rid, flags, _qd, an, _ns, _ar = struct.unpack(">HHHHHH", reply[:12])
    if rid != qid:
        return None
    return flags & 0x0F, an


class Unbound(h.ChildServer):
    label = "unbound"

    def __init__(self, tmp, local_zones=(), local_data=(), local_data_ptr=(), name="unbound"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = h.free_port(socket.SOCK_DGRAM)
        self.config_path = os.path.join(self.dir, "unbound.conf")
        self.output_path = os.path.join(self.dir, "unbound.out")
        self.proc = None
        zones = [("in-addr.arpa", "static"), ("ip6.arpa", "static")] + list(local_zones)
        lines = [
            "server:",
            f"  interface: 127.0.0.1@{self.port}",
            "  do-daemonize: no",
            '  username: ""',
            '  chroot: ""',
            f'  directory: "{self.dir}"',
            '  pidfile: ""',
            "  use-syslog: no",
            "  logfile: \"\"",
            "  access-control: 127.0.0.0/8 allow",
            "  do-ip6: no",
            '  module-config: "iterator"',
            "  do-not-query-localhost: no",
        ]
        for zone, kind in zones:
            lines.append(f'  local-zone: "{zone.rstrip(".")}." {kind}')
        for rr in local_data:
            lines.append(f"  local-data: '{rr}'")
        for rr in local_data_ptr:
            lines.append(f'  local-data-ptr: "{rr}"')
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def __repr__(self):
        return f"Unbound(port={self.port}, dir={self.dir})"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout=10.0):
        """Starts unbound and polls until it answers a query for a local-zone name."""
        assert not self.alive(), "already running"
        # Any reply means it serves (the in-addr.arpa zone answers NXDOMAIN at once).
        h.start_server(self, "unbound", [UNBOUND, "-d", "-c", self.config_path], self.dir,
                       self.output_path,
                       lambda: dns_query(self.port, "1.0.0.127.in-addr.arpa", qtype=12,
                                         timeout=0.2) is not None,
                       timeout, "answer")
        return self
