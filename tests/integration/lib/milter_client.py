"""A milter client (the MTA side of the milter protocol), by hand: for what miltertest cannot
send (raw over-limit frames, SMFIC_QUIT_NC) and for tests that drive the milter from Python.
It honours the SMFIP_NR_* steps spamward asks for: no reply is read for those commands, as
Postfix and miltertest do."""

import socket
import struct


class Milter:
    """The MTA side of the milter protocol, by hand."""

    # SMFIP_NR_* bits per command: spamward asks for no reply to these (an MTA then takes
    # CONTINUE without reading, as Postfix and miltertest do).
    NO_REPLY = {b"C": 0x1000, b"H": 0x2000, b"U": 0x20000, b"L": 0x80, b"N": 0x40000}

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.protocol = 0  # the filter's protocol bits from its OPTNEG reply

    def send(self, cmd, data=b""):
        self.sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def reply(self):
        while True:
            if len(self.buf) >= 4:
                (n,) = struct.unpack(">I", self.buf[:4])
                if len(self.buf) >= 4 + n:
                    frame, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
                    return frame[:1], frame[1:]
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by spamward (pending {self.buf[:50]!r})")
            self.buf += chunk

    def command(self, cmd, data=b""):
        self.send(cmd, data)
        if self.protocol & self.NO_REPLY.get(cmd, 0):
            return b"c", b""
        code, data = self.reply()
        if cmd == b"O" and code == b"O" and len(data) >= 12:
            (self.protocol,) = struct.unpack(">I", data[8:12])
        return code, data

    def negotiate(self):
        return self.command(b"O", struct.pack(">III", 6, 0x1FF, 0x1FFFFF))

    def connect(self, address, host=None):
        host = host or f"[{address}]"
        return self.command(b"C", host.encode() + b"\0" + b"4" + struct.pack(">H", 40000)
                            + address.encode() + b"\0")

    def eom(self):
        self.send(b"E")
        out = []
        while True:
            code, data = self.reply()
            out.append((code, data))
            if code in (b"a", b"c", b"r", b"t", b"y", b"d"):
                return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
