"""WebSocket (Upgrade) requests are tunnelled after 101, both directions,
until either side closes."""

import base64
import os
import socket
import time

import fxtest
from fxtest import ws_accept, ws_frame, ws_read_frame


class WebSocketTest(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.ws_echo()
        self.gw = self.gateway(self.config([self.up.address]))

    def handshake(self):
        c = self.client(self.gw.port, timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(("GET /ws/chat HTTP/1.1\r\nHost: collab.test\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        r = c.read_response()
        self.assertEqual(r.status, 101, repr(r))
        self.assertEqual(r.header("sec-websocket-accept"), ws_accept(key))
        self.assertEqual((r.header("upgrade") or "").lower(), "websocket")
        self.assertIn("upgrade", (r.header("connection") or "").lower())
        hs = self.up.handshakes[0]
        self.assertEqual(fxtest.hget(hs["headers"], "sec-websocket-key"), key)
        return c

    def test_text_frames_echoed(self):
        c = self.handshake()
        msgs = [b"hello", "gr\u00fc\u00dfe aus ficus".encode(), b"x" * 300]
        for m in msgs:
            c.send(ws_frame(1, m))
        for m in msgs:
            f = c.read_ws_frame()
            self.assertIsNotNone(f, "tunnel closed")
            fin, opcode, payload, masked = f
            self.assertEqual((fin, opcode, payload, masked), (True, 1, m, False))
        self.assertEqual([fr[0] for fr in self.up.frames], [1, 1, 1])
        self.assertTrue(all(fr[2] for fr in self.up.frames), "client frames arrived unmasked")

    def test_1mib_binary_frame_echoed(self):
        c = self.handshake()
        payload = os.urandom(1 << 20)
        c.send(ws_frame(2, payload))
        f = c.read_ws_frame(20)
        self.assertIsNotNone(f, "tunnel closed")
        self.assertEqual(f[1], 2)
        self.assertEqual(len(f[2]), len(payload))
        self.assertEqual(f[2], payload)

    def test_client_close_frame_closes_both(self):
        c = self.handshake()
        c.send(ws_frame(8, b"\x03\xe8bye"))
        f = c.read_ws_frame()
        self.assertIsNotNone(f)
        self.assertEqual(f[1], 8)
        self.assertTrue(self.up.got_close_frame.wait(3))
        self.assertTrue(c.wait_closed(3), "client side stayed open after the upstream closed")

    def test_client_disconnect_closes_upstream(self):
        c = self.handshake()
        c.send(ws_frame(1, b"ping"))
        self.assertEqual(c.read_ws_frame()[2], b"ping")
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        self.assertTrue(self.up.saw_eof.wait(3), "upstream side stayed open after the client left")

    def test_upstream_disconnect_closes_client(self):
        c = self.handshake()
        c.send(ws_frame(1, b"ping"))
        self.assertEqual(c.read_ws_frame()[2], b"ping")
        self.up.close_connections()
        self.assertTrue(c.wait_closed(3), "client side stayed open after the upstream left")


class WebSocketIdleTest(fxtest.FxTestCase):
    """A tunnel is not an HTTP exchange: the upstream's response timeout must
    stop counting once the 101 has been forwarded (a quiet WebSocket is fine)."""

    def test_quiet_tunnel_outlives_response_timeout(self):
        up = self.ws_echo()
        gw = self.gateway(self.config([up.address], upstream={"timeout": "300ms"},
                                      limits={"idle_timeout": "10s"}))
        c = self.client(gw.port, timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(("GET /ws HTTP/1.1\r\nHost: collab.test\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        self.assertEqual(c.read_response().status, 101)
        time.sleep(1.0)  # more than three response timeouts of silence
        c.send(ws_frame(1, b"still here"))
        deadline = time.monotonic() + 5

        def read_exact(n):
            while len(c.buf) < n:
                if not c._fill(deadline, "a websocket frame"):
                    return None
            return c._take(n)

        f = ws_read_frame(read_exact)
        self.assertIsNotNone(f, "the tunnel was closed while quiet")
        self.assertEqual(f[2], b"still here")
