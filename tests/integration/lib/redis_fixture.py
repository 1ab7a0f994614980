"""A private redis-server on loopback for the Redis store backend (Python 3 stdlib only).

    from redis_fixture import RedisServer
    redis = RedisServer(tmp)
    redis.start()          # returns once it answers PING (or raises, with its output)
    ... [store] backend = "redis", url = redis.url ...
    redis.kill()           # SIGKILL, as a crash would; start() again on the same port is allowed
    redis.pause(); redis.resume()   # SIGSTOP / SIGCONT: a stalled server
    redis.command("DBSIZE")         # one command, its reply decoded (str, int, list, None)

- No persistence (--save '' --appendonly no): a restart comes back empty, which is what a
  test of "Redis went away" needs; the data dir is its own under tmp.
- Registered with harness's cleanup, like every server there: stopped at exit even when a
  test fails. .output() returns its log (for diagnostics()).
"""

import os
import signal
import socket
import subprocess

import harness as h

REDIS_SERVER = "/usr/bin/redis-server"


def _encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


class _Reply:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f"bad reply line {line!r}")


class RedisServer(h.ChildServer):
    label = "redis"

    def __init__(self, tmp, name="redis"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.port = h.free_port()
        self.output_path = os.path.join(self.dir, "redis.out")
        self.proc = None

    def __repr__(self):
        return f"RedisServer(port={self.port}, dir={self.dir})"

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def command(self, *args, timeout=5.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(_encode(args))
            return _Reply(s).read()

    def _answers(self):
        try:
            return self.command("PING", timeout=0.5) == "PONG"
        except OSError:
            return False

    def start(self, timeout=10.0):
        assert not self.alive(), "already running"
        argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        h.start_server(self, "redis-server", argv, self.dir, self.output_path, self._answers,
                       timeout, "answer PING")
        return self

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(5)
        h._unregister(self)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def _before_terminate(self):
        self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
