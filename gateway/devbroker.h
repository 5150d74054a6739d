/*
 * devbroker.h — a Kafka-protocol broker for development and tests:
 * librdkafka's mock cluster (rdkafka_mock.h) in this process. It keeps its
 * log in memory (about 5 MiB per partition), ignores acks, and checks
 * sequence numbers only for transactional producers: it is for trying
 * ficus out and for tests, never for production (events.brokers names a
 * real Kafka cluster there).
 *
 * Used two ways: `brokers: embedded` in the gateway (events.c starts one
 * next to the producer), and `ficus devbroker` (fx_devbroker_main) standing
 * alone, for script/server and for tests that need the broker to outlive or
 * misbehave under a gateway. The mock cluster picks its own ports; the
 * bootstrap address is printed and, with --bootstrap-file, written to a file
 * (atomically: a temp file renamed) so scripts can find it.
 *
 * Fault injection, for tests (standalone: commands on stdin, one per line,
 * each answered with one line "ok ..." or "error: ..." on stdout; SIGUSR1 =
 * down, SIGUSR2 = up):
 *   down                     every broker stops answering (connections refused/closed)
 *   up                       and back
 *   topic-error TOPIC ERR    metadata for TOPIC carries ERR (a Kafka error name like
 *                            TOPIC_AUTHORIZATION_FAILED, or NONE to clear): producers fail
 *                            with it or time out, see below
 *   request-errors API N ERR the next N requests of API (Produce, Metadata, ...) fail with ERR
 *   create TOPIC [PARTITIONS] create a topic (PARTITIONS defaults to the broker's count)
 *   bootstrap                prints the bootstrap address
 * Blank lines and lines starting with '#' on stdin get no answer.
 *
 * Partition counts: librdkafka 2.0's mock gives a topic that a client
 * auto-creates (a producer's metadata request for an unknown topic) 4
 * partitions, and has no setting for that. The broker's `partitions` count
 * applies to topics created through this API before any client asks for
 * them: `create TOPIC`, --topic NAME, fx_devbroker_create_topic(), and
 * `topic-error TOPIC NONE` or a missing-topic error on a new topic.
 *
 * topic-error: the mock reports a topic error in Metadata responses only,
 * never in Produce responses, and what a librdkafka 2.0 producer makes of
 * it depends on the error and on the topic (test_devbroker.py checks each):
 *   UNKNOWN_TOPIC_OR_PART, TOPIC_EXCEPTION: the topic is missing; messages
 *     fail with the error once topic.metadata.propagation.max.ms (default
 *     30 s) has passed since the producer first used the topic. NONE clears.
 *   any other error (TOPIC_AUTHORIZATION_FAILED, ...) on a topic that does
 *     not exist yet: the topic is created without partitions, so producers
 *     fail their messages with the error at once. It stays without
 *     partitions: the mock cannot add any, so NONE is refused for it. Set
 *     such errors before any client touches the topic (a producer's
 *     metadata request auto-creates it with partitions).
 *   any other error on a topic that exists: it keeps its partitions, and
 *     producers hold the messages until message.timeout.ms (_MSG_TIMED_OUT).
 *     NONE clears.
 * A producer that already has the topic's metadata sees a new error at its
 * next metadata refresh. A named error in Produce responses (every topic):
 * request-errors Produce N ERR.
 *
 * down keeps the in-memory log: after up, offsets continue and everything
 * produced before the outage can still be read.
 */
#ifndef FX_DEVBROKER_H
#define FX_DEVBROKER_H

#include <stddef.h>

typedef struct fx_devbroker fx_devbroker;

/* Starts a mock cluster of `brokers` brokers (1..3); `partitions` (1..64) is
 * the count of topics created through this API without one (topics a client
 * auto-creates get the mock's 4, see above). NULL with err set on failure.
 * Calls from any thread are safe; the cluster runs on librdkafka's threads. */
fx_devbroker *fx_devbroker_start(int brokers, int partitions, char *err, size_t errlen);
/* "127.0.0.1:PORT[,127.0.0.1:PORT...]" (owned by the broker). */
const char *fx_devbroker_bootstraps(const fx_devbroker *b);
/*
 * One fault-injection command (the list above) from a line without its
 * newline. Writes the one-line answer (without newline) to reply. 0 when
 * the command was carried out, -1 otherwise (reply says why).
 */
int fx_devbroker_command(fx_devbroker *b, const char *line, char *reply, size_t replylen);
/*
 * Creates TOPIC with `partitions` partitions (0: the broker's count). -1 with err set when
 * the name is not a legal Kafka topic name or the topic exists (a client's metadata request
 * creates it with 4 partitions: create topics before producing to them).
 */
int fx_devbroker_create_topic(fx_devbroker *b, const char *topic, int partitions, char *err, size_t errlen);
/* Stops the cluster (its log is lost) and frees b; NULL is a no-op. */
void fx_devbroker_stop(fx_devbroker *b);

/* `ficus devbroker [--brokers N] [--partitions N] [--topic NAME[:N]]... [--bootstrap-file FILE]`:
 * prints "devbroker: bootstrap ADDR" when ready, runs until SIGTERM/SIGINT (exit 0, the
 * bootstrap file removed); EOF on stdin does not stop it. Exit code 2 for a usage error, 1
 * when the cluster does not start. argv[0] is "devbroker". */
int fx_devbroker_main(int argc, char **argv);

#endif
