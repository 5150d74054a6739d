"""`workers: N`: N worker threads serve one port."""

import threading
import time

import fxtest
from fxtest import build_request


def settled_threads(gw, want, timeout=3.0):
    """The gateway's thread count once it reaches `want` (listeners may be
    open, and probes accepted into the backlog, a moment before the worker
    threads exist) or when `timeout` runs out."""
    deadline = time.monotonic() + timeout
    n = gw.threads()
    while n < want and time.monotonic() < deadline:
        time.sleep(0.02)
        n = gw.threads()
    return n


class WorkersTest(fxtest.FxTestCase):
    def test_two_workers_serve_100_concurrent_connections(self):
        up = self.recording(name="up")
        gw = self.gateway(self.config([up.address], workers=2))
        tasks = settled_threads(gw, 3)
        fxtest.measure("threads with workers: 2", tasks)
        self.assertGreaterEqual(tasks, 3, "expected the main thread plus 2 workers")

        clients = [self.client(gw.port, timeout=15) for _ in range(100)]  # all open at once
        results = [None] * len(clients)

        def run(i):
            try:
                clients[i].send(build_request("GET", f"/w/{i}"))
                r = clients[i].read_response(timeout=15)
                results[i] = r.status
            except Exception as e:
                results[i] = repr(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [200] * len(clients), [r for r in results if r != 200][:5])
        self.assertEqual(sorted(q["target"] for q in up.requests), sorted(f"/w/{i}" for i in range(100)))

    def test_one_worker_has_fewer_threads(self):
        """Control for the thread count: `workers: 1` runs fewer threads than `workers: 2`."""
        up = self.recording(name="up")
        one = self.gateway(self.config([up.address], workers=1), name="one")
        two = self.gateway(self.config([up.address], workers=2), name="two")
        n_two = settled_threads(two, 3)
        time.sleep(0.2)
        n_one = one.threads()
        self.assertLess(n_one, n_two)
