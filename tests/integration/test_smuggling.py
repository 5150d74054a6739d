"""Request smuggling and malformed requests: rejected at the edge, never forwarded.

Contract for every case in CASES: the gateway answers the expected status
(400, or 414/431/405 where noted) with a problem+json body, closes the
connection after the response, and the upstream (a RecordingUpstream) never
sees a connection. Each case then sends a valid control request through the
same gateway and asserts that one *does* reach the upstream, so the silence
assertion is known to be able to fail.
"""

import time

import fxtest

MAX_HEADER = 8192
MAX_URI = 2048
HOST = b"Host: front.test\r\n"


def post(headers, body=b"", version=b"HTTP/1.1", host=HOST):
    """POST / with the given raw header lines (bytes, each ending in CRLF) and body."""
    return b"POST /submit " + version + b"\r\n" + host + headers + b"\r\n" + body


def get(extra=b"", line=b"GET /x HTTP/1.1"):
    return line + b"\r\n" + HOST + extra + b"\r\n"


CHUNKED = b"Transfer-Encoding: chunked\r\n"

# (name, raw request bytes, expected status[, {"shut_wr": True}])
CASES = [
    # Content-Length / Transfer-Encoding conflicts
    ("cl_and_te", post(b"Content-Length: 5\r\n" + CHUNKED, b"0\r\n\r\n"), 400),
    ("te_and_cl", post(CHUNKED + b"Content-Length: 5\r\n", b"0\r\n\r\n"), 400),
    ("cl_duplicate_identical", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400),
    ("cl_differing", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    ("cl_comma_list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    ("cl_plus_sign", post(b"Content-Length: +5\r\n", b"hello"), 400),
    ("cl_minus_sign", post(b"Content-Length: -5\r\n", b"hello"), 400),
    ("cl_inner_space", post(b"Content-Length: 1 0\r\n", b"helloworld"), 400),
    ("cl_hex", post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    ("cl_trailing_garbage", post(b"Content-Length: 5a\r\n", b"hello"), 400),
    ("cl_empty", post(b"Content-Length: \r\n", b""), 400),
    ("cl_obs_fold", post(b"Content-Length:\r\n 5\r\n", b"hello"), 400),
    # Transfer-Encoding other than a single final chunked
    ("te_gzip", post(b"Transfer-Encoding: gzip\r\n", b"hello"), 400),
    ("te_chunked_gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", b"0\r\n\r\n"), 400),
    ("te_gzip_chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_identity", post(b"Transfer-Encoding: identity\r\n", b"hello"), 400),
    ("te_chunked_identity", post(b"Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"), 400),
    ("te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 400),
    ("te_chunkedx", post(b"Transfer-Encoding: chunkedx\r\n", b"0\r\n\r\n"), 400),
    ("te_chunked_param", post(b"Transfer-Encoding: chunked;x=1\r\n", b"0\r\n\r\n"), 400),
    ("te_chunked_twice", post(CHUNKED + CHUNKED, b"0\r\n\r\n"), 400),
    ("te_space_before_colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_tab_before_colon", post(b"Transfer-Encoding\t: chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_obs_fold", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400),
    ("te_http10", post(CHUNKED, b"5\r\nhello\r\n0\r\n\r\n", version=b"HTTP/1.0"), 400),
    # obs-fold and line endings
    ("obs_fold_space", get(b"X-Folded: a\r\n b\r\n"), 400),
    ("obs_fold_tab", get(b"X-Folded: a\r\n\tb\r\n"), 400),
    ("bare_lf_request_line", b"GET /x HTTP/1.1\n" + HOST + b"\r\n", 400),
    ("bare_lf_header", b"GET /x HTTP/1.1\r\nHost: front.test\nX-A: 1\r\n\r\n", 400),
    ("bare_lf_final_line", b"GET /x HTTP/1.1\r\n" + HOST + b"\n", 400),
    ("bare_lf_everywhere", b"GET /x HTTP/1.1\nHost: front.test\n\n", 400),
    ("bare_cr_request_line", b"GET /x HTTP/1.1\r" + HOST + b"\r\n", 400),
    ("bare_cr_between_headers", get(b"X-A: 1\rX-B: 2\r\n"), 400),
    # chunked body framing
    ("chunk_size_negative", post(CHUNKED, b"-1\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_0x_prefix", post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_overflow", post(CHUNKED, b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_not_hex", post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_empty", post(CHUNKED, b"\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_data_missing_crlf", post(CHUNKED, b"5\r\nhelloXX0\r\n\r\n"), 400),
    ("chunk_ext_ctl_char", post(CHUNKED, b"5;ext=\x01\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_size_bare_lf", post(CHUNKED, b"5\nhello\r\n0\r\n\r\n"), 400),
    # header syntax
    ("nul_in_header_value", get(b"X-A: a\x00b\r\n"), 400),
    ("cr_in_header_value", get(b"X-A: a\rb\r\n"), 400),
    ("space_in_header_name", get(b"X Foo: bar\r\n"), 400),
    ("empty_header_name", get(b": x\r\n"), 400),
    ("header_without_colon", get(b"XFoo\r\n"), 400),
    # Host
    ("missing_host_http11", b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n", 400),
    ("duplicate_host_identical", get(b"Host: front.test\r\n"), 400),
    ("duplicate_host_differing", get(b"Host: other.test\r\n"), 400),
    ("host_with_space", b"GET /x HTTP/1.1\r\nHost: front test\r\n\r\n", 400),
    ("absolute_form_without_host", b"GET http://front.test/x HTTP/1.1\r\n\r\n", 400),
    # request line
    ("http09_request_line", b"GET /\r\n\r\n", 400),
    ("version_http20", get(line=b"GET /x HTTP/2.0"), 400),
    ("version_http12", get(line=b"GET /x HTTP/1.2"), 400),
    ("version_lowercase", get(line=b"GET /x http/1.1"), 400),
    ("method_bad_chars", get(line=b"G@T /x HTTP/1.1"), 400),
    ("missing_sp_after_method", get(line=b"GET/x HTTP/1.1"), 400),
    ("extra_sp_after_method", get(line=b"GET  /x HTTP/1.1"), 400),
    ("extra_sp_after_version", get(line=b"GET /x HTTP/1.1 "), 400),
    ("target_without_slash", get(line=b"GET x HTTP/1.1"), 400),
    ("asterisk_target_for_get", get(line=b"GET * HTTP/1.1"), 400),
    ("ctl_in_target", get(line=b"GET /a\x01b HTTP/1.1"), 400),
    ("nul_in_target", get(line=b"GET /a\x00b HTTP/1.1"), 400),
    ("request_line_then_close", b"GET /x HTTP/1.1", 400, {"shut_wr": True}),
    # limits and methods the gateway does not proxy
    ("oversized_target", get(line=b"GET /" + b"a" * (MAX_URI + 500) + b" HTTP/1.1"), 414),
    ("oversized_headers", get(b"X-Big-1: " + b"b" * 5000 + b"\r\nX-Big-2: " + b"c" * 5000 + b"\r\n"), 431),
    ("method_connect", b"CONNECT front.test:443 HTTP/1.1\r\nHost: front.test:443\r\n\r\n", 405),
    ("method_trace", get(line=b"TRACE /x HTTP/1.1"), 405),
]


class SmugglingTest(fxtest.FxTestCase):
    """Generated: one test_<name> per entry of CASES."""

    def start(self):
        up = self.recording(name="upstream")
        gw = self.gateway(self.config([up.address],
                                      limits={"max_header_bytes": MAX_HEADER, "max_uri_bytes": MAX_URI}))
        return up, gw

    def run_case(self, raw, status, shut_wr=False):
        up, gw = self.start()
        c = self.client(gw.port)
        c.send(raw)
        if shut_wr:
            c.shutdown_write()
        resp = c.read_response(timeout=5)
        self.assertProblem(resp, status, f"sent {raw[:120]!r}")
        self.assertTrue(c.wait_closed(3), f"connection still open after {status}; sent {raw[:120]!r}")
        time.sleep(0.1)  # anything forwarded asynchronously would have connected by now
        raw_up = up.raw_all()
        self.assertEqual(up.connections, 0,
                         f"upstream got {up.connections} connection(s) for a rejected request "
                         f"({len(raw_up)} bytes: {raw_up[:300]!r})")
        # control: a valid request through the same gateway does reach the upstream
        ok = fxtest.fetch(gw.port, "GET", "/control")
        self.assertEqual(ok.status, 200, repr(ok))
        self.assertEqual(ok.body, b"upstream")
        self.assertEqual(up.connections, 1)
        self.assertEqual([r["target"] for r in up.requests], ["/control"])

    def test_absolute_form_authority_replaces_host(self):
        """RFC 9112 §3.2.2: the target's authority wins over Host (a case that must pass)."""
        up, gw = self.start()
        c = self.client(gw.port)
        c.send(b"GET http://authority.test/abs?q=1 HTTP/1.1\r\nHost: front.test\r\n\r\n")
        resp = c.read_response()
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(len(up.requests), 1)
        req = up.requests[0]
        self.assertEqual(fxtest.hall(req["headers"], "host"), ["authority.test"], req["head"])
        self.assertTrue(req["target"].endswith("/abs?q=1"), req["target"])

    def test_valid_chunked_request_is_forwarded(self):
        """Control: a correct chunked POST goes through with its body intact."""
        up, gw = self.start()
        c = self.client(gw.port)
        c.send(post(CHUNKED, b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"))
        resp = c.read_response()
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(up.requests[0]["body"], b"hello world")


def _make(raw, status, opts):
    def test(self):
        self.run_case(raw, status, **opts)
    return test


for _case in CASES:
    _name, _raw, _status = _case[:3]
    _opts = _case[3] if len(_case) > 3 else {}
    _fn = _make(_raw, _status, _opts)
    _fn.__name__ = f"test_{_name}"
    setattr(SmugglingTest, _fn.__name__, _fn)
assert len(CASES) >= 45 and len({c[0] for c in CASES}) == len(CASES)
