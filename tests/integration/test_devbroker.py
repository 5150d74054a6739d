"""`ficus devbroker`: librdkafka's mock cluster as a standalone Kafka broker
for dev and tests (gateway/devbroker.c), driven with kcat: produce/consume
with keys and headers, partition counts, down/up by command and by signal
(the log survives), topic and request error injection, the command
protocol, usage errors, SIGTERM/SIGINT and EOF on stdin."""

import os
import signal
import socket
import subprocess
import time

import fxtest
from fxtest import DevBroker, kcat_consume, kcat_metadata, kcat_produce

# fail fast instead of librdkafka's 5-minute default when the broker is meant to be away
SHORT = {"message.timeout.ms": "1500"}


def connect_refused(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


class DevBrokerTest(fxtest.FxTestCase):
    def broker(self, *args, name="devbroker"):
        return DevBroker(self, self.tmp, name=name, args=args)

    def produce_ok(self, db, topic, messages, **kw):
        p = kcat_produce(db.bootstrap, topic, messages, **kw)
        self.assertEqual(p.returncode, 0, f"kcat produce to {topic}: {p.stderr}")

    def partitions(self, db, topic):
        md = kcat_metadata(db.bootstrap, topic)
        self.assertIsNotNone(md, f"kcat -L -t {topic} failed")
        (t,) = [t for t in md["topics"] if t["topic"] == topic]
        return t

    def test_keys_values_headers_and_partition_stability(self):
        db = self.broker()
        self.assertRegex(db.bootstrap, r"^127\.0\.0\.1:\d+$")
        keys = [f"entity-{i}" for i in range(8)]
        first = [(k, f"{k}/v{n}") for n in range(3) for k in keys]
        self.produce_ok(db, "orders", first, headers=[("content-type", "application/cloudevents+json"),
                                                      ("ce-id", "abc")])
        # a second producer process, binary values, other headers: the same key -> the same partition
        self.produce_ok(db, "orders", [(k, b"\x00\xff" + k.encode()) for k in keys], headers=[("h", "2")])

        msgs = kcat_consume(db.bootstrap, "orders", 32)
        self.assertEqual(len(msgs), 32, msgs)
        by_key = {}
        for m in msgs:
            by_key.setdefault(m["key"], []).append(m)
        self.assertEqual(sorted(by_key), sorted(keys))
        used = set()
        for k in keys:
            ms = sorted(by_key[k], key=lambda m: m["offset"])
            self.assertEqual(len({m["partition"] for m in ms}), 1, f"{k} spread over partitions: {ms}")
            used.add(ms[0]["partition"])
            self.assertEqual([m["value"] for m in ms],
                             [f"{k}/v{n}".encode() for n in range(3)] + [b"\x00\xff" + k.encode()])
            for m in ms[:3]:
                self.assertEqual(m["headers"], [("content-type", "application/cloudevents+json"), ("ce-id", "abc")])
            self.assertEqual(ms[3]["headers"], [("h", "2")])
        self.assertGreater(len(used), 1, "8 keys all in one partition: keys are not partitioning")
        # offsets are dense per partition, from 0
        for p in used:
            offs = sorted(m["offset"] for m in msgs if m["partition"] == p)
            self.assertEqual(offs, list(range(len(offs))), f"partition {p}")
        # auto-created: the mock's fixed count
        self.assertEqual(len(self.partitions(db, "orders")["partitions"]), 4)

    def test_partition_counts(self):
        db = self.broker("--partitions", "3", "--topic", "pre", "--topic", "pre5:5")
        self.assertEqual(len(self.partitions(db, "pre")["partitions"]), 3)
        self.assertEqual(len(self.partitions(db, "pre5")["partitions"]), 5)
        self.assertEqual(db.command("create t-default"), "ok created t-default with 3 partitions")
        self.assertEqual(db.command("create t.seven 7"), "ok created t.seven with 7 partitions")
        self.assertEqual(len(self.partitions(db, "t-default")["partitions"]), 3)
        self.assertEqual(len(self.partitions(db, "t.seven")["partitions"]), 7)
        self.assertRegex(db.command("create t.seven 2"), r"^error: .*already exists")
        # a client's metadata request auto-creates with librdkafka's mock default, whatever --partitions says
        self.produce_ok(db, "auto", [("k", "v")])
        self.assertEqual(len(self.partitions(db, "auto")["partitions"]), 4)
        self.produce_ok(db, "t.seven", [(f"k{i}", "v") for i in range(40)])
        self.assertEqual({m["partition"] for m in kcat_consume(db.bootstrap, "t.seven", 40)} - set(range(7)), set())

    def test_down_and_up_keep_the_log(self):
        db = self.broker()
        self.produce_ok(db, "log", [("a", "before-1"), ("a", "before-2")])
        before = kcat_consume(db.bootstrap, "log", 2)
        self.assertEqual([m["value"] for m in before], [b"before-1", b"before-2"])
        part = before[0]["partition"]

        self.assertEqual(db.down(), "ok down (1 broker)")
        self.assertTrue(connect_refused(db.ports[0]), "the port still accepts connections while down")
        t0 = time.monotonic()
        p = kcat_produce(db.bootstrap, "log", [("a", "during")], config=SHORT, timeout=15)
        self.assertNotEqual(p.returncode, 0, f"produce succeeded while down: {p.stderr}")
        self.assertLess(time.monotonic() - t0, 14)

        self.assertEqual(db.up(), "ok up (1 broker)")
        self.produce_ok(db, "log", [("a", "after")])
        msgs = kcat_consume(db.bootstrap, "log", 3)
        self.assertEqual([(m["value"], m["partition"], m["offset"]) for m in msgs],
                         [(b"before-1", part, 0), (b"before-2", part, 1), (b"after", part, 2)])

    def test_signals_down_and_up(self):
        db = self.broker()
        self.produce_ok(db, "sig", [("k", "one")])
        db.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while not connect_refused(db.ports[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(connect_refused(db.ports[0]), "SIGUSR1 did not take the broker down")
        p = kcat_produce(db.bootstrap, "sig", [("k", "lost")], config=SHORT, timeout=15)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        db.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 5
        while connect_refused(db.ports[0]) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.produce_ok(db, "sig", [("k", "two")])
        self.assertEqual([m["value"] for m in kcat_consume(db.bootstrap, "sig", 2)], [b"one", b"two"])
        # the signals are reported on stderr, and stdout still carries only command answers
        self.assertIn("SIGUSR1: ok down", db.proc.stderr())
        self.assertIn("SIGUSR2: ok up", db.proc.stderr())
        self.assertEqual(db.command("bootstrap"), f"ok {db.bootstrap}")

    def test_three_brokers(self):
        db = self.broker("--brokers", "3")
        self.assertEqual(len(db.ports), 3, db.bootstrap)
        self.assertEqual(len(kcat_metadata(db.bootstrap)["brokers"]), 3)
        self.produce_ok(db, "multi", [(f"k{i}", f"v{i}") for i in range(20)])
        self.assertEqual(len(kcat_consume(db.bootstrap, "multi", 20)), 20)
        t0 = time.monotonic()
        self.assertEqual(db.down(), "ok down (3 brokers)")
        # one mock op per broker: each must not wait out the mock thread's 1 s poll (devbroker.c: settled)
        self.assertLess(time.monotonic() - t0, 0.9)
        for port in db.ports:
            self.assertTrue(connect_refused(port), f"broker port {port} still accepts while down")
        db.up()
        self.assertEqual(len(kcat_consume(db.bootstrap, "multi", 20)), 20)

    def test_topic_error_on_a_new_topic_fails_produce_with_its_name(self):
        db = self.broker()
        self.produce_ok(db, "healthy", [("k", "v")])
        self.assertEqual(db.command("topic-error denied topic_authorization_failed"),
                         "ok topic-error denied TOPIC_AUTHORIZATION_FAILED "
                         "(new topic without partitions: producers fail at once)")
        t0 = time.monotonic()
        p = kcat_produce(db.bootstrap, "denied", [("k", "v")], config={"message.timeout.ms": "10000"}, timeout=15)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Topic authorization failed", p.stderr)
        self.assertLess(time.monotonic() - t0, 5, "failed by timeout, not by the error")
        t = self.partitions(db, "denied")
        self.assertIn("Topic authorization failed", t.get("error", ""), t)
        self.assertEqual(t["partitions"], [])
        self.produce_ok(db, "healthy", [("k", "still fine")])
        self.assertRegex(db.command("topic-error denied NONE"), r"^error: topic-error: 'denied' was created by "
                                                                 r"topic-error without partitions")

    def test_topic_error_unknown_topic_fails_and_clears(self):
        db = self.broker("--partitions", "2")
        for topic, existed in (("gone", False), ("was-there", True)):
            if existed:
                self.produce_ok(db, topic, [("k", "before")])
            self.assertEqual(db.command(f"topic-error {topic} UNKNOWN_TOPIC_OR_PART"),
                             f"ok topic-error {topic} UNKNOWN_TOPIC_OR_PART "
                             "(producers fail once topic.metadata.propagation.max.ms has passed)")
            # librdkafka fails the messages once the topic has been missing for topic.metadata.propagation.max.ms
            p = kcat_produce(db.bootstrap, topic, [("k", "v")], timeout=15,
                             config={"message.timeout.ms": "8000", "topic.metadata.propagation.max.ms": "200"})
            self.assertNotEqual(p.returncode, 0, topic)
            self.assertIn("Unknown topic or partition", p.stderr, topic)
            self.assertEqual(db.command(f"topic-error {topic} NONE"), f"ok topic-error {topic} NONE")
            self.produce_ok(db, topic, [("k", "after")])
            want = [b"before", b"after"] if existed else [b"after"]
            self.assertEqual([m["value"] for m in kcat_consume(db.bootstrap, topic, len(want))], want, topic)
        self.assertEqual(len(self.partitions(db, "gone")["partitions"]), 2, "not created with --partitions")
        self.assertEqual(len(self.partitions(db, "was-there")["partitions"]), 4)

    def test_topic_error_on_an_existing_topic_holds_messages(self):
        db = self.broker()
        self.produce_ok(db, "busy", [("k", "before")])
        self.assertEqual(db.command("topic-error busy TOPIC_AUTHORIZATION_FAILED"),
                         "ok topic-error busy TOPIC_AUTHORIZATION_FAILED "
                         "(existing topic: producers hold their messages until message.timeout.ms)")
        t = self.partitions(db, "busy")
        self.assertIn("Topic authorization failed", t.get("error", ""), t)
        p = kcat_produce(db.bootstrap, "busy", [("k", "held")], config=SHORT, timeout=15)
        self.assertNotEqual(p.returncode, 0, p.stderr)
        self.assertIn("Message timed out", p.stderr)
        self.assertEqual(db.command("topic-error busy NONE"), "ok topic-error busy NONE")
        self.produce_ok(db, "busy", [("k", "after")])
        self.assertEqual([m["value"] for m in kcat_consume(db.bootstrap, "busy", 2)], [b"before", b"after"])

    def test_request_errors(self):
        db = self.broker()
        self.produce_ok(db, "t", [("k", "first")])
        self.assertEqual(db.command("request-errors Produce 1 TOPIC_AUTHORIZATION_FAILED"),
                         "ok the next 1 Produce request fail with TOPIC_AUTHORIZATION_FAILED")
        p = kcat_produce(db.bootstrap, "t", [("k", "refused")], config=SHORT, timeout=15)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Topic authorization failed", p.stderr)
        self.produce_ok(db, "t", [("k", "second")])
        self.assertEqual([m["value"] for m in kcat_consume(db.bootstrap, "t", 2)], [b"first", b"second"])

    def test_bad_commands(self):
        db = self.broker()
        cases = [
            ("bogus", r"^error: unknown command 'bogus'"),
            ("down now", r"^error: wrong arguments for 'down'"),
            ("create", r"^error: "),
            ("create bad/name", r"^error: create: topic 'bad/name'"),
            ("create t 0", r"^error: create: partitions '0'"),
            ("create t 65", r"^error: create: partitions '65'"),
            ("create t many", r"^error: create: partitions 'many'"),
            ("topic-error t NOT_AN_ERROR", r"^error: topic-error: unknown Kafka error 'NOT_AN_ERROR'"),
            ("topic-error t _TRANSPORT", r"^error: topic-error: unknown Kafka error"),
            ("request-errors Nope 1 NOT_LEADER_FOR_PARTITION", r"^error: request-errors: unknown API 'Nope'"),
            ("request-errors Produce 0 NOT_LEADER_FOR_PARTITION", r"^error: request-errors: count '0'"),
            ("request-errors Produce 1 NONE", r"^error: request-errors: 'NONE' is not an error a request can fail"),
            ("request-errors Produce 1 _TIMED_OUT", r"^error: request-errors: '_TIMED_OUT' is not an error"),
            ("create t 1 2", r"^error: wrong arguments for 'create'"),
            ("x" * 5000, r"^error: command longer than"),
        ]
        for line, want in cases:
            self.assertRegex(db.command(line), want, line[:40])
        # blank lines and comments get no answer: the next answer is the next command's
        db.proc.stdin.write(b"\n   \n# a comment\n")
        self.assertEqual(db.command("bootstrap"), f"ok {db.bootstrap}")
        self.assertEqual(db.command("create fine 2"), "ok created fine with 2 partitions")
        self.assertTrue(db.proc.alive())

    def test_pipelined_commands_answered_in_order(self):
        db = self.broker()
        lines = ["create p1", "create p2 2", "topic-error p3 NONE", "nonsense", "down", "up", "bootstrap"]
        t0 = time.monotonic()
        db.proc.stdin.write("".join(l + "\n" for l in lines).encode())
        db.proc.stdin.flush()
        answers = [db._line(10) for _ in lines]
        self.assertEqual(answers, ["ok created p1 with 4 partitions", "ok created p2 with 2 partitions",
                                   "ok topic-error p3 NONE", answers[3], "ok down (1 broker)", "ok up (1 broker)",
                                   f"ok {db.bootstrap}"])
        self.assertTrue(answers[3].startswith("error: unknown command 'nonsense'"), answers[3])
        self.assertLess(time.monotonic() - t0, 1.5, "back-to-back commands stalled")
        self.produce_ok(db, "p2", [("k", "v")])

    def test_usage_errors_exit_2(self):
        env = {**os.environ, **fxtest.SANITIZER_ENV}
        for args, want in [
            (["--bogus"], "unknown argument '--bogus'"),
            (["--brokers", "0"], "--brokers '0'"),
            (["--brokers", "4"], "--brokers '4'"),
            (["--partitions", "65"], "--partitions '65'"),
            (["--partitions", "x"], "--partitions 'x'"),
            (["--bootstrap-file"], "--bootstrap-file needs a value"),
            (["--topic", "bad/name"], "--topic"),
            (["--topic", "t:0"], "--topic 't:0'"),
        ]:
            p = subprocess.run([fxtest.ficus_bin(), "devbroker", *args], capture_output=True, text=True,
                               timeout=30, env=env, stdin=subprocess.DEVNULL)
            self.assertEqual(p.returncode, 2, f"{args}: {p.stderr}")
            self.assertIn(want, p.stderr, args)
            self.assertIsNone(fxtest.sanitizer_report(p.stderr), p.stderr)
            self.assertNotIn("bootstrap", p.stdout, args)
        p = subprocess.run([fxtest.ficus_bin(), "devbroker", "--help"], capture_output=True, text=True, timeout=30,
                           env=env)
        self.assertEqual(p.returncode, 0)
        self.assertIn("usage: ficus devbroker", p.stdout)
        p = subprocess.run([fxtest.ficus_bin(), "help"], capture_output=True, text=True, timeout=30, env=env)
        self.assertIn("devbroker", p.stdout)

    def test_sigterm_and_sigint_exit_0_and_remove_the_file(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            db = self.broker(name=f"db-{sig.name}")
            self.assertTrue(os.path.exists(db.bootstrap_file))
            db.expect_exit = True
            db.send_signal(sig)
            self.assertEqual(db.proc.wait(10), 0, f"{sig.name}: {db.proc.describe()}")
            self.assertFalse(os.path.exists(db.bootstrap_file), f"{sig.name}: bootstrap file left behind")
            self.assertTrue(connect_refused(db.ports[0]))
            self.assertIsNone(fxtest.sanitizer_report(db.proc.stderr()), db.proc.stderr())

    def test_stdin_at_eof_keeps_running(self):
        path = os.path.join(self.tmp, "eof.bootstrap")
        proc = fxtest.Proc([fxtest.ficus_bin(), "devbroker", "--bootstrap-file", path], self.tmp, "eof",
                           env=fxtest.SANITIZER_ENV)  # stdin is /dev/null
        self.addCleanup(proc.stop)
        deadline = time.monotonic() + 15
        while not os.path.exists(path) and proc.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        with open(path) as f:
            bootstrap = f.read().strip()
        time.sleep(0.3)
        self.assertTrue(proc.alive(), proc.describe())
        p = kcat_produce(bootstrap, "t", [("k", "v")])
        self.assertEqual(p.returncode, 0, p.stderr)
        proc.send_signal(signal.SIGUSR1)  # signals still work without stdin
        deadline = time.monotonic() + 5
        port = int(bootstrap.rsplit(":", 1)[1])
        while not connect_refused(port) and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(connect_refused(port))
        self.assertEqual(proc.stop(), 0, proc.describe())
        self.assertFalse(os.path.exists(path))
        self.assertIsNone(fxtest.sanitizer_report(proc.stderr()), proc.stderr())
