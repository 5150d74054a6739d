"""Bodies stream both ways with backpressure: big uploads and downloads go
through with the right bytes while the gateway's memory stays bounded.

RSS bounds are for the sanitizer build (ASan's shadow and quarantine count
in VmRSS); the baseline is printed as a [measure] line."""

import hashlib
import os
import shutil
import subprocess
import time

import fxtest
from fxtest import build_request

MiB = 1 << 20
RSS_LIMIT_KIB = 96 * 1024


class StreamingTest(fxtest.FxTestCase):
    def baseline(self, gw, port_warm):
        """RSS after a warm-up request, when the gateway is idle."""
        r = fxtest.fetch(gw.port, "POST", port_warm, body=b"w" * 4096)
        self.assertEqual(r.status, 200, repr(r))
        time.sleep(0.2)
        return gw.rss_kib()

    def test_1gib_upload_content_length(self):
        sink = self.sink()
        gw = self.gateway(self.config([sink.address], limits={"max_body_bytes": "2GiB"}))
        base = self.baseline(gw, "/warmup")
        fxtest.measure("upload 1GiB: gateway VmRSS baseline", f"{base / 1024:.1f} MiB")

        total = 1 << 30
        c = self.client(gw.port, timeout=120)
        sampler = fxtest.RssSampler(gw.pid)
        try:
            c.send(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: %d\r\n\r\n" % total)
            block = bytearray(os.urandom(MiB))
            h = hashlib.sha256()
            t0 = time.monotonic()
            for i in range(total // MiB):
                block[:8] = i.to_bytes(8, "big")
                h.update(block)
                c.send(block)
            r = c.read_response(timeout=120)
            elapsed = time.monotonic() - t0
            time.sleep(0.3)
            sampler.sample()
        finally:
            peak = sampler.stop()
        fxtest.measure("upload 1GiB: duration", f"{elapsed:.1f} s ({total / MiB / elapsed:.0f} MiB/s)")
        fxtest.measure("upload 1GiB: gateway VmRSS peak", f"{peak / 1024:.1f} MiB "
                       f"({sampler.samples} samples)")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json(), {"bytes": total, "sha256": h.hexdigest()})
        self.assertEqual(len(sink.requests), 2)  # the warm-up, then the upload
        self.assertEqual(sink.requests[1]["body_len"], total)
        self.assertLess(peak, RSS_LIMIT_KIB, f"gateway RSS peaked at {peak} KiB (baseline {base} KiB)")

    def test_chunked_upload_reencoded(self):
        sink = self.sink()
        gw = self.gateway(self.config([sink.address], limits={"max_body_bytes": "64MiB"}))
        data = os.urandom(6 * MiB + 12345)
        sizes = [1, 7, 4096, 65536, MiB + 3, 13, 300000, 2, 777777]
        c = self.client(gw.port, timeout=30)
        c.send(b"PUT /chunked HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        body = fxtest.chunked(data, sizes)
        for i in range(0, len(body), 100000):  # arbitrary cuts, not aligned with chunks
            c.send(body[i:i + 100000])
        r = c.read_response(timeout=30)
        self.assertEqual(r.status, 200, repr(r))
        want = hashlib.sha256(data).hexdigest()
        self.assertEqual(r.json(), {"bytes": len(data), "sha256": want})
        req = sink.requests[0]
        self.assertTrue(req["chunked"], f"upstream framing: {req['head']!r}")
        self.assertIsNone(fxtest.hget(req["headers"], "content-length"), req["head"])
        self.assertEqual(fxtest.hall(req["headers"], "transfer-encoding"), ["chunked"])

    def curl_sha(self, port, target):
        out = os.path.join(self.tmp, "download.bin")
        p = subprocess.run(["curl", "-sS", "--max-time", "60", "-o", out, "-w", "%{http_code} %{size_download}",
                            f"http://127.0.0.1:{port}{target}"], capture_output=True, text=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr)
        code, size = p.stdout.split()
        h = hashlib.sha256()
        with open(out, "rb") as f:
            while True:
                b = f.read(4 * MiB)
                if not b:
                    break
                h.update(b)
        os.unlink(out)
        return int(code), int(size), h.hexdigest()

    def download(self, target):
        self.assertTrue(shutil.which("curl"), "curl is required")
        mono = self.monolith()
        gw = self.gateway(self.config([mono.address]))
        t0 = time.monotonic()
        via = self.curl_sha(gw.port, target)
        fxtest.measure(f"curl via gateway {target}", f"{time.monotonic() - t0:.2f} s")
        direct = self.curl_sha(mono.port, target)
        self.assertEqual(via[:2], (200, 64 * MiB))
        self.assertEqual(via, direct, "bytes through the gateway differ from the monolith's")

    def test_64mib_download_content_length(self):
        self.download("/_test/bytes/67108864")

    def test_64mib_download_chunked(self):
        self.download("/_test/chunked/67108864")

    def test_slow_reader_does_not_buffer_response(self):
        """A client that reads 1 MiB and stalls: the gateway must stop reading
        from the upstream (backpressure), not buffer the 512 MiB response."""
        total = 512 * MiB
        up = self.bulk(total)
        cfg = self.config([up.address], upstream={"timeout": "30s"})
        gw = self.gateway(cfg)
        base = gw.rss_kib()
        fxtest.measure("slow reader: gateway VmRSS baseline", f"{base / 1024:.1f} MiB")
        c = self.client(gw.port, timeout=60, rcvbuf=64 * 1024)
        c.send(build_request("GET", "/big"))
        first, headers, _ = c.read_head()
        self.assertIn(" 200 ", first + " ")
        self.assertEqual(fxtest.hget(headers, "content-length"), str(total))
        sampler = fxtest.RssSampler(gw.pid)
        got = [0]

        def count(b):
            got[0] += len(b)

        try:
            c.stream_body(MiB, count)
            time.sleep(2.0)  # unthrottled, the upstream would send everything in this time
            stalled_rss = sampler.sample()
            stalled_sent = up.sent
            c.stream_body(total - MiB, count, timeout=120)
        finally:
            peak = sampler.stop()
        fxtest.measure("slow reader: upstream bytes sent while the client stalled", f"{stalled_sent / MiB:.0f} MiB")
        fxtest.measure("slow reader: gateway VmRSS while stalled / peak",
                       f"{stalled_rss / 1024:.1f} / {peak / 1024:.1f} MiB")
        self.assertEqual(got[0], total)
        self.assertLess(stalled_sent, 64 * MiB, "the gateway kept reading from the upstream")
        self.assertLess(peak, RSS_LIMIT_KIB, f"gateway RSS peaked at {peak} KiB (baseline {base} KiB)")
