/*
 * test_tls.c — Check suite "tls" for gateway/tls.c and the TLS paths of gateway/sock.c.
 *
 *   pki              keys and certificates made with the OpenSSL API in a mkdtemp
 *                    directory once per run (main): two CAs, an EC P-256 leaf for
 *                    a.test + 127.0.0.1, an RSA 2048 leaf for b.test, a wildcard
 *                    leaf, a self-signed and an expired one; nothing is committed
 *   contexts         fx_tls_server_ctx / fx_tls_client_ctx from hand-built confs:
 *                    good pairs, and err.where for each kind of bad input
 *   pair             a listener on 127.0.0.1:0, a client fx_sock_connect'ed to it and
 *                    the accepted fx_sock, both on one event_base; run_until() spins
 *                    the loop under a deadline timer, so a bug fails instead of hanging
 *   connections      handshake ordering (CONNECTED after it, early bytes held back),
 *                    4 MiB both ways with pauses, plaintext buffered in OpenSSL while
 *                    the socket is idle, close_notify, verification failures, SNI,
 *                    versions, session resumption, a TCP peer that leaves mid-handshake
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "sock.h"
#include "tls.h"
#include "testcert.h"
#include "tmpdir.h"

/* ---- pki ------------------------------------------------------------------------------------ */

#define DAY (24L * 3600L)

static char dir[256];
/* file paths, filled once by make_pki() before any test forks */
static char ca_pem[320], ca2_pem[320], empty_pem[320];
static char a_pem[320], a_key[320];      /* EC, CA-signed: DNS:a.test, IP:127.0.0.1 */
static char b_pem[320], b_key[320];      /* RSA 2048, CA-signed: DNS:b.test */
static char w_pem[320], w_key[320];      /* EC, CA-signed: DNS:*.w.test */
static char self_pem[320], self_key[320]; /* EC, self-signed: DNS:self.test */
static char old_pem[320], old_key[320];  /* EC, CA-signed, expired yesterday: DNS:a.test, IP:127.0.0.1 */

static void set_path(char *out, const char *name)
{
    snprintf(out, 320, "%s/%s", dir, name);
}

/* A leaf: key file + certificate file. */
static int make_leaf(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *cakey, const char *san, long from, long to,
                     long serial, char *pem, const char *pem_name, char *keyf, const char *key_name)
{
    set_path(pem, pem_name);
    set_path(keyf, key_name);
    X509 *x = fx_test_cert(key, cn, ca, cakey, san, 0, from, to, serial);
    int rc = x && fx_test_write_pem(pem, 0600, x, NULL) == 0 && fx_test_write_pem(keyf, 0600, NULL, key) == 0
                 ? 0
                 : -1;
    X509_free(x);
    return rc;
}

static int make_pki(void)
{
    EVP_PKEY *cak = EVP_EC_gen("P-256"), *ca2k = EVP_EC_gen("P-256"), *ak = EVP_EC_gen("P-256");
    EVP_PKEY *bk = EVP_RSA_gen(2048), *wk = EVP_EC_gen("P-256"), *sk = EVP_EC_gen("P-256");
    EVP_PKEY *ok = EVP_EC_gen("P-256");
    X509 *ca = NULL, *ca2 = NULL;
    int rc = -1;
    if (!cak || !ca2k || !ak || !bk || !wk || !sk || !ok)
        goto out;
    ca = fx_test_cert(cak, "ficus test CA", NULL, NULL, NULL, 1, -DAY, 30 * DAY, 1);
    ca2 = fx_test_cert(ca2k, "ficus other CA", NULL, NULL, NULL, 1, -DAY, 30 * DAY, 2);
    set_path(ca_pem, "ca.pem");
    set_path(ca2_pem, "ca2.pem");
    set_path(empty_pem, "empty.pem");
    FILE *f = fopen(empty_pem, "w");
    if (!ca || !ca2 || !f || fx_test_write_pem(ca_pem, 0600, ca, NULL) || fx_test_write_pem(ca2_pem, 0600, ca2, NULL))
        goto out;
    fputs("# a PEM file without any certificate in it\n", f);
    fclose(f);
    if (make_leaf(ak, "a.test", ca, cak, "DNS:a.test,IP:127.0.0.1", -DAY, 30 * DAY, 10, a_pem, "a.pem", a_key,
                  "a.key") ||
        make_leaf(bk, "b.test", ca, cak, "DNS:b.test", -DAY, 30 * DAY, 11, b_pem, "b.pem", b_key, "b.key") ||
        make_leaf(wk, "*.w.test", ca, cak, "DNS:*.w.test", -DAY, 30 * DAY, 12, w_pem, "w.pem", w_key, "w.key") ||
        make_leaf(sk, "self.test", NULL, NULL, "DNS:self.test", -DAY, 30 * DAY, 13, self_pem, "self.pem", self_key,
                  "self.key") ||
        make_leaf(ok, "a.test", ca, cak, "DNS:a.test,IP:127.0.0.1", -2 * DAY, -DAY, 14, old_pem, "old.pem", old_key,
                  "old.key"))
        goto out;
    rc = 0;
out:
    X509_free(ca);
    X509_free(ca2);
    EVP_PKEY *keys[] = {cak, ca2k, ak, bk, wk, sk, ok};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        EVP_PKEY_free(keys[i]);
    return rc;
}

/* ---- conf builders -------------------------------------------------------------------------- */

static fx_tls_server_conf server_conf(const char *cert, const char *key)
{
    return (fx_tls_server_conf){.cert = (char *)cert, .key = (char *)key, .min_version = TLS1_2_VERSION,
                                .session_tickets = 1};
}

static SSL_CTX *server_ctx_ok(const fx_tls_server_conf *t)
{
    fx_tls_error err;
    SSL_CTX *ctx = fx_tls_server_ctx(t, &err);
    ck_assert_msg(ctx != NULL, "server ctx: %s: %s", err.where, err.msg);
    return ctx;
}

static SSL_CTX *client_ctx_ok(const fx_tls_client_conf *t)
{
    fx_tls_error err;
    SSL_CTX *ctx = fx_tls_client_ctx(t, &err);
    ck_assert_msg(ctx != NULL, "client ctx: %s: %s", err.where, err.msg);
    return ctx;
}

/* ---- contexts ------------------------------------------------------------------------------- */

START_TEST(test_ctx_good)
{
    fx_tls_server_conf ec = server_conf(a_pem, a_key), rsa = server_conf(b_pem, b_key);
    SSL_CTX *c1 = server_ctx_ok(&ec), *c2 = server_ctx_ok(&rsa);
    SSL_CTX_free(c1);
    SSL_CTX_free(c2);
    fx_tls_client_conf with_ca = {.verify = 1, .ca = ca_pem};
    fx_tls_client_conf no_verify = {.verify = 0};
    fx_tls_client_conf mtls = {.verify = 1, .ca = ca_pem, .client_cert = a_pem, .client_key = a_key};
    SSL_CTX *c3 = client_ctx_ok(&with_ca), *c4 = client_ctx_ok(&no_verify), *c5 = client_ctx_ok(&mtls);
    ck_assert_int_eq(SSL_CTX_get_verify_mode(c3), SSL_VERIFY_PEER);
    ck_assert_int_eq(SSL_CTX_get_verify_mode(c4), SSL_VERIFY_NONE);
    ck_assert_ptr_nonnull(SSL_CTX_get0_certificate(c5));
    SSL_CTX_free(c3);
    SSL_CTX_free(c4);
    SSL_CTX_free(c5);
}
END_TEST

typedef struct bad_server_case {
    const char *name;
    const char *cert, *key;
    const char *ciphers, *ciphersuites;
    int sni;                   /* 1: certificates[0] is {b, a.key}; 2: [0] good, [1] a missing cert */
    const char *where;
    const char *in_msg;        /* a piece of err.msg (the file or value it names) */
} bad_server_case;

static const bad_server_case bad_server[] = {
    {"key of another certificate", a_pem, b_key, NULL, NULL, 0, "key", b_key},
    {"missing certificate file", "/nonexistent/ficus/cert.pem", a_key, NULL, NULL, 0, "cert", "/nonexistent/ficus"},
    {"missing key file", a_pem, "/nonexistent/ficus/key.pem", NULL, NULL, 0, "key", "/nonexistent/ficus"},
    {"key file given as cert", a_key, a_key, NULL, NULL, 0, "cert", a_key},
    {"unknown cipher list", a_pem, a_key, "NO-SUCH-CIPHER:ALSO-NOT", NULL, 0, "ciphers", "NO-SUCH-CIPHER"},
    {"unknown TLS 1.3 suites", a_pem, a_key, NULL, "TLS_NO_SUCH_SUITE", 0, "ciphersuites", "TLS_NO_SUCH_SUITE"},
    {"SNI key of another certificate", a_pem, a_key, NULL, NULL, 1, "certificates[0].key", a_key},
    {"SNI certificate missing", a_pem, a_key, NULL, NULL, 2, "certificates[1].cert", "/nonexistent/ficus"},
};

START_TEST(test_ctx_bad_server)
{
    const bad_server_case *c = &bad_server[_i];
    fx_tls_server_conf t = server_conf(c->cert, c->key);
    t.ciphers = (char *)c->ciphers;
    t.ciphersuites = (char *)c->ciphersuites;
    char *names0[] = {(char *)"b.test"}, *names1[] = {(char *)"c.test"};
    fx_tls_cert_conf certs[2] = {
        {.cert = b_pem, .key = c->sni == 1 ? a_key : b_key, .server_names = names0, .nserver_names = 1},
        {.cert = (char *)"/nonexistent/ficus/c.pem", .key = a_key, .server_names = names1, .nserver_names = 1},
    };
    if (c->sni) {
        t.certs = certs;
        t.ncerts = (size_t)c->sni;
    }
    fx_tls_error err;
    memset(&err, 0x5a, sizeof(err));
    SSL_CTX *ctx = fx_tls_server_ctx(&t, &err);
    ck_assert_msg(ctx == NULL, "%s: a context was built", c->name);
    ck_assert_msg(!strcmp(err.where, c->where), "%s: where '%s', want '%s' (%s)", c->name, err.where, c->where,
                  err.msg);
    ck_assert_msg(strstr(err.msg, c->in_msg) != NULL, "%s: message '%s' does not name '%s'", c->name, err.msg,
                  c->in_msg);
    /* the error queue is left clean for the next connection on this thread */
    ck_assert_uint_eq(ERR_peek_error(), 0);
}
END_TEST

typedef struct bad_client_case {
    const char *name;
    fx_tls_client_conf t;
    const char *where;
} bad_client_case;

static const bad_client_case bad_client[] = {
    {"CA file without certificates", {.verify = 1, .ca = empty_pem}, "ca"},
    {"missing CA file", {.verify = 1, .ca = (char *)"/nonexistent/ficus/ca.pem"}, "ca"},
    {"missing client certificate",
     {.verify = 1, .ca = ca_pem, .client_cert = (char *)"/nonexistent/x.pem", .client_key = a_key}, "client_cert"},
    {"client key of another certificate",
     {.verify = 1, .ca = ca_pem, .client_cert = a_pem, .client_key = b_key}, "client_key"},
};

START_TEST(test_ctx_bad_client)
{
    const bad_client_case *c = &bad_client[_i];
    fx_tls_error err;
    SSL_CTX *ctx = fx_tls_client_ctx(&c->t, &err);
    ck_assert_msg(ctx == NULL, "%s: a context was built", c->name);
    ck_assert_msg(!strcmp(err.where, c->where), "%s: where '%s', want '%s' (%s)", c->name, err.where, c->where,
                  err.msg);
    ck_assert_msg(err.msg[0] != '\0', "%s: no message", c->name);
}
END_TEST

/* ---- pair ----------------------------------------------------------------------------------- */

typedef struct pair pair;

typedef struct end {
    pair *p;
    fx_sock *s;
    int server;
    int events;              /* every `what` reported, OR-ed */
    int nconnected;
    int init_at_connect;     /* SSL_is_init_finished when CONNECTED was reported */
    int read_in_handshake;   /* on_read ran while the handshake was not finished */
    int close_notify;        /* a close_notify alert was received */
    struct evbuffer *got;    /* everything read (the small-message tests) */
    /* transfer */
    size_t want, nrecv, bad;
    uint64_t fnv_recv;
    unsigned seed;
    int nreads, pauses, trap_hits;
    /* pending test: the state seen at the first on_read */
    int first_seen;
    size_t first_len;
    int first_pending, first_readable;
    int first_pause;         /* 1: pause at the first on_read and resume 20 ms later */
} end;

struct pair {
    struct event_base *base;
    struct event *deadline;
    int timed_out;
    int lfd;
    char text[32];
    fx_addr addr;
    end cli, srv;
};

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    ((pair *)arg)->timed_out = 1;
}

/* Spins the loop until done(p) or ms elapsed; returns done(p). */
static int run_until(pair *p, int (*done)(pair *), int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    p->timed_out = 0;
    evtimer_add(p->deadline, &tv);
    while (!(done && done(p)) && !p->timed_out)
        event_base_loop(p->base, EVLOOP_ONCE);
    evtimer_del(p->deadline);
    return done ? done(p) : 1;
}

static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg)
{
    const unsigned char *b = buf;
    if (!write_p && content_type == SSL3_RT_ALERT && len >= 2 && b[1] == SSL_AD_CLOSE_NOTIFY)
        ((end *)arg)->close_notify = 1;
}

static void on_read_keep(fx_sock *s, void *arg)
{
    end *e = arg;
    if (!s->ssl || !SSL_is_init_finished(s->ssl) || s->tls_hs)
        e->read_in_handshake = 1;
    evbuffer_add_buffer(e->got, s->in);
}

static void on_event_rec(fx_sock *s, int what, void *arg)
{
    end *e = arg;
    e->events |= what;
    if (what & FX_SOCK_CONNECTED) {
        e->nconnected++;
        e->init_at_connect = s->ssl && SSL_is_init_finished(s->ssl);
    }
}

static int fd_readable(int fd)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & POLLIN);
}

/* The loop, a listener and the plain TCP halves: the client connecting, the server accepted. */
static void pair_tcp(pair *p)
{
    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    ck_assert_ptr_nonnull(p->base);
    p->deadline = evtimer_new(p->base, on_deadline, p);
    p->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(p->lfd, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    ck_assert_int_eq(bind(p->lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    ck_assert_int_eq(listen(p->lfd, 4), 0);
    ck_assert_int_eq(getsockname(p->lfd, (struct sockaddr *)&sin, &len), 0);
    snprintf(p->text, sizeof(p->text), "127.0.0.1:%u", ntohs(sin.sin_port));
    p->addr.text = p->text;
    memcpy(&p->addr.sa, &sin, sizeof(sin));
    p->addr.salen = sizeof(sin);

    end *ends[2] = {&p->cli, &p->srv};
    for (int i = 0; i < 2; i++) {
        ends[i]->p = p;
        ends[i]->server = i;
        ends[i]->got = evbuffer_new();
    }
    int err = 0;
    p->cli.s = fx_sock_connect(p->base, (struct sockaddr *)&p->addr.sa, p->addr.salen, &err);
    ck_assert_msg(p->cli.s != NULL, "connect: %s", strerror(err));
    struct pollfd pfd = {.fd = p->lfd, .events = POLLIN};
    ck_assert_msg(poll(&pfd, 1, 5000) == 1, "the loopback connect was not accepted within 5 s");
    int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    p->srv.s = fx_sock_new(p->base, fd);
    ck_assert_ptr_nonnull(p->srv.s);
    fx_sock_setcb(p->cli.s, on_read_keep, NULL, on_event_rec, &p->cli);
    fx_sock_setcb(p->srv.s, on_read_keep, NULL, on_event_rec, &p->srv);
}

/* TLS on both halves; sess (may be NULL) is offered for resumption. */
static void pair_tls(pair *p, SSL_CTX *sctx, SSL_CTX *cctx, const fx_tls_client_conf *cconf, SSL_SESSION *sess)
{
    SSL *ss = fx_tls_server_ssl(sctx);
    ck_assert_ptr_nonnull(ss);
    SSL_set_msg_callback(ss, on_msg);
    SSL_set_msg_callback_arg(ss, &p->srv);
    ck_assert_int_eq(fx_sock_tls(p->srv.s, ss, 1), 0);
    SSL *cs = fx_tls_client_ssl(cctx, cconf, &p->addr);
    ck_assert_ptr_nonnull(cs);
    SSL_set_msg_callback(cs, on_msg);
    SSL_set_msg_callback_arg(cs, &p->cli);
    if (sess)
        ck_assert_int_eq(SSL_set_session(cs, sess), 1);
    ck_assert_int_eq(fx_sock_tls(p->cli.s, cs, 0), 0);
}

static void pair_open(pair *p, SSL_CTX *sctx, SSL_CTX *cctx, const fx_tls_client_conf *cconf, SSL_SESSION *sess)
{
    pair_tcp(p);
    pair_tls(p, sctx, cctx, cconf, sess);
}

static void pair_close(pair *p)
{
    fx_sock_free(p->cli.s);
    fx_sock_free(p->srv.s);
    evbuffer_free(p->cli.got);
    evbuffer_free(p->srv.got);
    if (p->lfd >= 0)
        close(p->lfd);
    event_free(p->deadline);
    event_base_free(p->base);
}

#define BAD (FX_SOCK_ERROR | FX_SOCK_EOF | FX_SOCK_TIMEOUT)

/* The client connected (or failed) and the server finished its handshake (or failed). */
static int both_settled(pair *p)
{
    int c = p->cli.events & (BAD | FX_SOCK_CONNECTED);
    int s = (p->srv.events & BAD) || !p->srv.s->tls_hs;
    return c && s;
}

/* Both sides failed or ended. */
static int both_failed(pair *p)
{
    return (p->cli.events & BAD) && (p->srv.events & BAD);
}

static void send_str(fx_sock *s, const char *str)
{
    ck_assert_int_eq(evbuffer_add(s->out, str, strlen(str)), 0);
    ck_assert_int_eq(fx_sock_flush(s), 0);
}

static int got_is(end *e, const char *want)
{
    size_t n = strlen(want);
    if (evbuffer_get_length(e->got) != n)
        return 0;
    return !memcmp(evbuffer_pullup(e->got, (ev_ssize_t)n), want, n);
}

static int ping_pong_done(pair *p)
{
    return (p->cli.events & BAD) || (p->srv.events & BAD) ||
           (evbuffer_get_length(p->cli.got) >= 4 && evbuffer_get_length(p->srv.got) >= 4);
}

static fx_tls_client_conf client_conf(void)
{
    /* no server_name: the target 127.0.0.1 is checked against the certificate's IP SANs */
    return (fx_tls_client_conf){.verify = 1, .ca = ca_pem};
}

/* A handshake between ctxs that must succeed, with "ping" / "pong" exchanged; the pair stays open. */
static void connect_ok(pair *p, SSL_CTX *sctx, SSL_CTX *cctx, const fx_tls_client_conf *cconf, SSL_SESSION *sess)
{
    pair_open(p, sctx, cctx, cconf, sess);
    send_str(p->cli.s, "ping");
    send_str(p->srv.s, "pong");
    ck_assert_msg(run_until(p, ping_pong_done, 10000), "no exchange within 10 s (client events %d, server %d)",
                  p->cli.events, p->srv.events);
    ck_assert_msg(!(p->cli.events & BAD), "client: events %d, error %d, tls_error '%s'", p->cli.events,
                  p->cli.s->error, p->cli.s->tls_error);
    ck_assert_msg(!(p->srv.events & BAD), "server: events %d, error %d, tls_error '%s'", p->srv.events,
                  p->srv.s->error, p->srv.s->tls_error);
    ck_assert(got_is(&p->srv, "ping"));
    ck_assert(got_is(&p->cli, "pong"));
}

/* ---- handshake ordering --------------------------------------------------------------------- */

START_TEST(test_handshake_order)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    pair_open(&p, sctx, cctx, &ct, NULL);
    ck_assert_str_eq(fx_tls_version(p.cli.s->ssl), "-");
    ck_assert_str_eq(fx_tls_cipher(p.cli.s->ssl), "-");
    ck_assert_str_eq(fx_tls_version(p.srv.s->ssl), "-");
    ck_assert_str_eq(fx_tls_cipher(p.srv.s->ssl), "-");
    ck_assert_str_eq(fx_tls_version(NULL), "-");
    ck_assert_str_eq(fx_tls_cipher(NULL), "-");
    /* written before any handshake byte moved: held back, not sent in the clear nor lost */
    send_str(p.cli.s, "ping");
    send_str(p.srv.s, "pong");
    ck_assert_uint_eq(fx_sock_pending(p.cli.s), 4);
    ck_assert_uint_eq(fx_sock_pending(p.srv.s), 4);
    ck_assert_int_eq(p.cli.nconnected, 0);
    ck_assert(run_until(&p, ping_pong_done, 10000));
    ck_assert_msg(!(p.cli.events & BAD) && !(p.srv.events & BAD), "events %d/%d: '%s' / '%s'", p.cli.events,
                  p.srv.events, p.cli.s->tls_error, p.srv.s->tls_error);
    ck_assert_int_eq(p.cli.nconnected, 1);
    ck_assert_msg(p.cli.init_at_connect, "CONNECTED was reported before the handshake was complete");
    ck_assert_int_eq(p.srv.nconnected, 0);
    ck_assert_int_eq(p.cli.read_in_handshake, 0);
    ck_assert_int_eq(p.srv.read_in_handshake, 0);
    ck_assert(got_is(&p.srv, "ping"));
    ck_assert(got_is(&p.cli, "pong"));
    ck_assert_str_eq(p.cli.s->tls_error, "");
    ck_assert_str_eq(fx_tls_version(p.cli.s->ssl), "TLSv1.3");
    ck_assert_str_eq(fx_tls_version(p.srv.s->ssl), "TLSv1.3");
    ck_assert_str_eq(fx_tls_cipher(p.cli.s->ssl), fx_tls_cipher(p.srv.s->ssl));
    ck_assert_msg(!strncmp(fx_tls_cipher(p.cli.s->ssl), "TLS_", 4), "cipher '%s'", fx_tls_cipher(p.cli.s->ssl));
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* A TLS 1.2 client: the names OpenSSL gives TLS 1.2 (an ECDHE suite with the EC certificate, RSA with RSA). */
START_TEST(test_version_tls12)
{
    const char *certs[2][3] = {{a_pem, a_key, "ECDHE-ECDSA-"}, {b_pem, b_key, "ECDHE-RSA-"}};
    fx_tls_server_conf st = server_conf(certs[_i][0], certs[_i][1]);
    fx_tls_client_conf ct = {.verify = 1, .ca = ca_pem, .server_name = (char *)(_i ? "b.test" : "a.test")};
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    pair p;
    connect_ok(&p, sctx, cctx, &ct, NULL);
    ck_assert_str_eq(fx_tls_version(p.cli.s->ssl), "TLSv1.2");
    ck_assert_str_eq(fx_tls_version(p.srv.s->ssl), "TLSv1.2");
    ck_assert_msg(!strncmp(fx_tls_cipher(p.srv.s->ssl), certs[_i][2], strlen(certs[_i][2])), "cipher '%s'",
                  fx_tls_cipher(p.srv.s->ssl));
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- bulk transfer -------------------------------------------------------------------------- */

#define XFER (4u << 20)

static unsigned char pattern(unsigned seed, size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    return (unsigned char)(x >> 24);
}

static uint64_t fnv(uint64_t h, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

#define FNV0 1469598103934665603ull

static void resume_later(evutil_socket_t fd, short what, void *arg)
{
    end *e = arg;
    fx_sock_read_enable(e->s);
}

/* Checks every byte against the pattern; pauses often, and always when OpenSSL still holds plaintext. */
static void on_read_xfer(fx_sock *s, void *arg)
{
    end *e = arg;
    size_t n = evbuffer_get_length(s->in);
    if (n) {
        const unsigned char *d = evbuffer_pullup(s->in, (ev_ssize_t)n);
        for (size_t i = 0; i < n; i++)
            if (d[i] != pattern(e->seed, e->nrecv + i))
                e->bad++;
        e->fnv_recv = fnv(e->fnv_recv, d, n);
        e->nrecv += n;
        evbuffer_drain(s->in, n);
    }
    e->nreads++;
    int pending = SSL_has_pending(s->ssl);
    if (e->nrecv < e->want && (pending || e->nreads % 3 == 0)) {
        fx_sock_read_disable(s);
        e->pauses++;
        if (pending && !fd_readable(s->fd))
            e->trap_hits++;
        struct timeval tv = {0, 1000};
        event_base_once(e->p->base, -1, EV_TIMEOUT, resume_later, e, &tv);
    }
}

static int xfer_done(pair *p)
{
    return (p->cli.events & BAD) || (p->srv.events & BAD) ||
           (p->cli.nrecv >= p->cli.want && p->srv.nrecv >= p->srv.want && !fx_sock_pending(p->cli.s) &&
            !fx_sock_pending(p->srv.s));
}

static uint64_t queue_pattern(fx_sock *s, unsigned seed, size_t n)
{
    unsigned char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(seed, i);
    uint64_t h = fnv(FNV0, buf, n);
    ck_assert_int_eq(evbuffer_add(s->out, buf, n), 0);
    free(buf);
    return h;
}

START_TEST(test_transfer_4mib_both_ways)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    pair_open(&p, sctx, cctx, &ct, NULL);
    end *ends[2] = {&p.cli, &p.srv};
    uint64_t sent[2];
    for (int i = 0; i < 2; i++) {
        fx_sock_setcb(ends[i]->s, on_read_xfer, NULL, on_event_rec, ends[i]);
        ends[i]->want = XFER;
        ends[i]->fnv_recv = FNV0;
        ends[i]->seed = i ? 0x5e5e5e5e : 0xc1c1c1c1; /* what this end receives */
    }
    /* the client sends the server's seed, the server the client's; queued before the handshake */
    sent[0] = queue_pattern(p.cli.s, p.srv.seed, XFER);
    sent[1] = queue_pattern(p.srv.s, p.cli.seed, XFER);
    ck_assert_int_eq(fx_sock_flush(p.cli.s), 0);
    ck_assert_int_eq(fx_sock_flush(p.srv.s), 0);
    ck_assert_msg(run_until(&p, xfer_done, 60000), "transfer stalled: client got %zu, server got %zu of %u",
                  p.cli.nrecv, p.srv.nrecv, XFER);
    ck_assert_msg(!(p.cli.events & BAD) && !(p.srv.events & BAD), "events %d/%d: '%s' / '%s'", p.cli.events,
                  p.srv.events, p.cli.s->tls_error, p.srv.s->tls_error);
    ck_assert_uint_eq(p.cli.nrecv, XFER);
    ck_assert_uint_eq(p.srv.nrecv, XFER);
    ck_assert_uint_eq(p.cli.bad, 0);
    ck_assert_uint_eq(p.srv.bad, 0);
    ck_assert(p.srv.fnv_recv == sent[0]);
    ck_assert(p.cli.fnv_recv == sent[1]);
    ck_assert_int_gt(p.cli.pauses + p.srv.pauses, 0);
    if (getenv("FX_TEST_VERBOSE"))
        fprintf(stderr, "transfer: %d + %d pauses, %d + %d with plaintext pending and an idle socket\n",
                p.cli.pauses, p.srv.pauses, p.cli.trap_hits, p.srv.trap_hits);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- plaintext held by OpenSSL while the socket is idle ------------------------------------- */

static void on_read_first_pause(fx_sock *s, void *arg)
{
    end *e = arg;
    size_t n = evbuffer_get_length(s->in);
    e->nrecv += n;
    evbuffer_drain(s->in, n);
    if (!e->first_seen) {
        e->first_seen = 1;
        e->first_len = n;
        e->first_pending = SSL_has_pending(s->ssl);
        e->first_readable = fd_readable(s->fd);
        if (e->first_pause) {
            fx_sock_read_disable(s);
            struct timeval tv = {0, 20000};
            event_base_once(e->p->base, -1, EV_TIMEOUT, resume_later, e, &tv);
        }
    }
}

static int client_drained(pair *p)
{
    return (p->cli.events & BAD) || !fx_sock_pending(p->cli.s);
}

static int server_got_all(pair *p)
{
    return (p->srv.events & BAD) || p->srv.nrecv >= p->srv.want;
}

/*
 * The server reads at most FX_SOCK_READ_CHUNK per turn. The client sends a
 * little more than that while the server is paused, so every byte is in the
 * server's kernel buffer; the first turn takes the chunk, and OpenSSL's
 * read-ahead has pulled the tail from the kernel with it. The owner pauses
 * there and resumes later (loop 0), or just returns (loop 1): no byte will
 * ever make the socket readable again, so only fx_sock_read_enable (0) or
 * tls_read (1) seeing SSL_has_pending can deliver the tail.
 *
 * OpenSSL 3.0's read-ahead fills a buffer of one maximal record (16712 bytes)
 * and then reads the rest of a record exactly, so whether a tail is left in
 * it depends on record sizes; a larger read buffer on the server makes its
 * first read take everything, which makes the scenario certain. sock.c cannot
 * tell the difference: it sees OpenSSL holding plaintext either way.
 */
START_TEST(test_pending_plaintext_idle_socket)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    SSL_CTX_set_default_read_buffer_len(sctx, 4 * FX_SOCK_READ_CHUNK);
    pair p;
    pair_open(&p, sctx, cctx, &ct, NULL);
    ck_assert(run_until(&p, both_settled, 10000));
    ck_assert_int_eq(p.cli.events, FX_SOCK_CONNECTED);
    fx_sock_read_disable(p.srv.s);
    fx_sock_setcb(p.srv.s, on_read_first_pause, NULL, on_event_rec, &p.srv);
    p.srv.want = FX_SOCK_READ_CHUNK + 100;
    p.srv.first_pause = _i == 0;
    queue_pattern(p.cli.s, 0, p.srv.want);
    ck_assert_int_eq(fx_sock_flush(p.cli.s), 0);
    ck_assert(run_until(&p, client_drained, 10000));
    run_until(&p, NULL, 100); /* let loopback deliver it all */
    ck_assert_int_eq(p.srv.nrecv, 0);
    fx_sock_read_enable(p.srv.s);
    ck_assert_msg(run_until(&p, server_got_all, 5000), "server got %zu of %zu (first turn: %zu bytes, pending %d, "
                  "socket readable %d)", p.srv.nrecv, p.srv.want, p.srv.first_len, p.srv.first_pending,
                  p.srv.first_readable);
    ck_assert_uint_eq(p.srv.nrecv, p.srv.want);
    /* the precondition: otherwise this test did not exercise the trap */
    ck_assert_uint_eq(p.srv.first_len, FX_SOCK_READ_CHUNK);
    ck_assert_msg(p.srv.first_pending && !p.srv.first_readable,
                  "scenario not reached: pending %d, socket readable %d", p.srv.first_pending,
                  p.srv.first_readable);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- close_notify --------------------------------------------------------------------------- */

static int cli_ended(pair *p)
{
    return p->cli.events & BAD;
}

static int srv_ended(pair *p)
{
    return p->srv.events & BAD;
}

START_TEST(test_close_notify)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    connect_ok(&p, sctx, cctx, &ct, NULL);
    end *closer = _i ? &p.cli : &p.srv, *other = _i ? &p.srv : &p.cli;
    fx_sock_free(closer->s);
    closer->s = NULL;
    ck_assert(run_until(&p, _i ? srv_ended : cli_ended, 5000));
    ck_assert_msg(other->events == (FX_SOCK_EOF | (_i ? 0 : FX_SOCK_CONNECTED)), "events %d, tls_error '%s'",
                  other->events, other->s->tls_error);
    ck_assert_msg(other->close_notify, "EOF without a close_notify alert");
    ck_assert_str_eq(other->s->tls_error, "");
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- verification failures ------------------------------------------------------------------ */

typedef struct verify_case {
    const char *name;
    const char *cert, *key;      /* the server's */
    const char *ca;              /* the client's */
    const char *server_name;     /* NULL: the target address */
    const char *reason;          /* in the client's tls_error */
} verify_case;

START_TEST(test_verify_fails)
{
    const verify_case cases[] = {
        {"wrong CA", a_pem, a_key, ca2_pem, NULL, "certificate verify failed"},
        {"hostname mismatch", a_pem, a_key, ca_pem, "other.test", "hostname mismatch"},
        {"IP address mismatch", b_pem, b_key, ca_pem, NULL, "IP address mismatch"},
        {"wildcard covers one label only", w_pem, w_key, ca_pem, "x.y.w.test", "hostname mismatch"},
        {"expired", old_pem, old_key, ca_pem, NULL, "certificate has expired"},
        {"self-signed", self_pem, self_key, ca_pem, "self.test", "self-signed certificate"},
    };
    const verify_case *c = &cases[_i];
    fx_tls_server_conf st = server_conf(c->cert, c->key);
    fx_tls_client_conf ct = {.verify = 1, .ca = (char *)c->ca, .server_name = (char *)c->server_name};
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    pair_open(&p, sctx, cctx, &ct, NULL);
    send_str(p.cli.s, "ping");
    ck_assert_msg(run_until(&p, both_failed, 10000), "%s: events %d/%d", c->name, p.cli.events, p.srv.events);
    ck_assert_msg(p.cli.events == FX_SOCK_ERROR, "%s: client events %d", c->name, p.cli.events);
    ck_assert_int_eq(p.cli.nconnected, 0);
    ck_assert_int_eq(p.cli.s->error, EPROTO);
    ck_assert_msg(strstr(p.cli.s->tls_error, c->reason) != NULL, "%s: tls_error '%s', want '%s'", c->name,
                  p.cli.s->tls_error, c->reason);
    /* the server never hands the owner a byte of a connection that failed its handshake */
    ck_assert_uint_eq(evbuffer_get_length(p.srv.got), 0);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* The same certificates are accepted with verify: false. */
START_TEST(test_verify_off)
{
    const char *certs[3][2] = {{self_pem, self_key}, {old_pem, old_key}, {b_pem, b_key}};
    fx_tls_server_conf st = server_conf(certs[_i][0], certs[_i][1]);
    fx_tls_client_conf ct = {.verify = 0, .server_name = (char *)"nobody.test"};
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    connect_ok(&p, sctx, cctx, &ct, NULL);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- SNI ------------------------------------------------------------------------------------ */

typedef struct sni_case {
    const char *server_name;
    int verify;
    const char *want_cn;
} sni_case;

static const sni_case sni_cases[] = {
    {"b.test", 1, "b.test"},
    {"B.Test", 1, "b.test"},
    {"a.test", 1, "a.test"},
    {"x.w.test", 1, "*.w.test"},
    {"deep.x.w.test", 0, "a.test"}, /* the wildcard covers one label: the default */
    {"unknown.test", 0, "a.test"},
};

START_TEST(test_sni)
{
    const sni_case *c = &sni_cases[_i];
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    char *bn[] = {(char *)"b.test"}, *wn[] = {(char *)"*.w.test"};
    fx_tls_cert_conf certs[] = {
        {.cert = b_pem, .key = b_key, .server_names = bn, .nserver_names = 1},
        {.cert = w_pem, .key = w_key, .server_names = wn, .nserver_names = 1},
    };
    st.certs = certs;
    st.ncerts = 2;
    fx_tls_client_conf ct = {.verify = c->verify, .ca = ca_pem, .server_name = (char *)c->server_name};
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    pair p;
    connect_ok(&p, sctx, cctx, &ct, NULL);
    X509 *peer = SSL_get0_peer_certificate(p.cli.s->ssl);
    ck_assert_ptr_nonnull(peer);
    char cn[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof(cn));
    ck_assert_msg(!strcmp(cn, c->want_cn), "SNI '%s': got the certificate of '%s', want '%s'", c->server_name, cn,
                  c->want_cn);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- versions ------------------------------------------------------------------------------- */

START_TEST(test_min_version_refused)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    st.min_version = TLS1_3_VERSION;
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    pair p;
    pair_open(&p, sctx, cctx, &ct, NULL);
    send_str(p.cli.s, "ping");
    ck_assert_msg(run_until(&p, both_failed, 10000), "events %d/%d", p.cli.events, p.srv.events);
    ck_assert_int_eq(p.cli.events, FX_SOCK_ERROR);
    ck_assert_int_eq(p.srv.events, FX_SOCK_ERROR);
    ck_assert_int_eq(p.cli.s->error, EPROTO);
    ck_assert_int_eq(p.srv.s->error, EPROTO);
    ck_assert_msg(strstr(p.srv.s->tls_error, "unsupported protocol") != NULL, "server: '%s'", p.srv.s->tls_error);
    ck_assert_msg(strstr(p.cli.s->tls_error, "protocol version") != NULL, "client: '%s'", p.cli.s->tls_error);
    ck_assert_uint_eq(evbuffer_get_length(p.srv.got), 0);
    pair_close(&p);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- session resumption --------------------------------------------------------------------- */

START_TEST(test_resumption)
{
    int tls13 = _i & 1, tickets = !(_i & 2);
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    st.session_tickets = tickets;
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *sctx = server_ctx_ok(&st), *cctx = client_ctx_ok(&ct);
    if (!tls13)
        SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    pair p;
    /* the exchange makes the client read past the TLS 1.3 NewSessionTicket */
    connect_ok(&p, sctx, cctx, &ct, NULL);
    ck_assert_int_eq(SSL_session_reused(p.cli.s->ssl), 0);
    SSL_SESSION *sess = SSL_get1_session(p.cli.s->ssl);
    ck_assert_ptr_nonnull(sess);
    ck_assert_int_eq(SSL_SESSION_is_resumable(sess), tickets);
    pair_close(&p);

    connect_ok(&p, sctx, cctx, &ct, sess);
    ck_assert_msg(SSL_session_reused(p.cli.s->ssl) == tickets, "%s, tickets %s: reused %d",
                  tls13 ? "TLS 1.3" : "TLS 1.2", tickets ? "on" : "off", SSL_session_reused(p.cli.s->ssl));
    ck_assert_int_eq(SSL_session_reused(p.srv.s->ssl), tickets);
    ck_assert_str_eq(fx_tls_version(p.cli.s->ssl), tls13 ? "TLSv1.3" : "TLSv1.2");
    pair_close(&p);
    SSL_SESSION_free(sess);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}
END_TEST

/* ---- peers that do not finish the handshake ------------------------------------------------- */

/* A TCP client that connects and closes without a ClientHello (a port probe) ends the server's
 * connection: FX_SOCK_EOF, as tls_handshake's comment promises, not a TLS error to log. */
START_TEST(test_server_peer_leaves_before_hello)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    SSL_CTX *sctx = server_ctx_ok(&st);
    pair p;
    pair_tcp(&p);
    ck_assert_int_eq(fx_sock_tls(p.srv.s, fx_tls_server_ssl(sctx), 1), 0);
    fx_sock_free(p.cli.s); /* plain TCP: just a FIN */
    p.cli.s = NULL;
    ck_assert(run_until(&p, srv_ended, 5000));
    ck_assert_msg(p.srv.events == FX_SOCK_EOF, "server events %d, error %d, tls_error '%s'", p.srv.events,
                  p.srv.s->error, p.srv.s->tls_error);
    pair_close(&p);
    SSL_CTX_free(sctx);
}
END_TEST

/* A server that closes during the client's handshake: the client's connect failed (EPROTO, a reason). */
START_TEST(test_client_server_leaves)
{
    fx_tls_client_conf ct = client_conf();
    SSL_CTX *cctx = client_ctx_ok(&ct);
    pair p;
    pair_tcp(&p);
    SSL *cs = fx_tls_client_ssl(cctx, &ct, &p.addr);
    ck_assert_int_eq(fx_sock_tls(p.cli.s, cs, 0), 0);
    fx_sock_free(p.srv.s);
    p.srv.s = NULL;
    ck_assert(run_until(&p, cli_ended, 5000));
    ck_assert_int_eq(p.cli.events, FX_SOCK_ERROR);
    ck_assert_int_eq(p.cli.nconnected, 0);
    ck_assert_msg(p.cli.s->error == EPROTO || p.cli.s->error == ECONNRESET, "error %d", p.cli.s->error);
    ck_assert_msg(p.cli.s->tls_error[0] != '\0', "no reason");
    pair_close(&p);
    SSL_CTX_free(cctx);
}
END_TEST

/* limits.header_timeout covers the handshake: a client that sends nothing times out. */
START_TEST(test_handshake_read_timeout)
{
    fx_tls_server_conf st = server_conf(a_pem, a_key);
    SSL_CTX *sctx = server_ctx_ok(&st);
    pair p;
    pair_tcp(&p);
    fx_sock_set_read_timeout(p.srv.s, 100);
    ck_assert_int_eq(fx_sock_tls(p.srv.s, fx_tls_server_ssl(sctx), 1), 0);
    ck_assert(run_until(&p, srv_ended, 5000));
    ck_assert_int_eq(p.srv.events, FX_SOCK_TIMEOUT);
    pair_close(&p);
    SSL_CTX_free(sctx);
}
END_TEST

/* ---- suite ---------------------------------------------------------------------------------- */

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *ctx = tcase_create("contexts");
    tcase_add_test(ctx, test_ctx_good);
    tcase_add_loop_test(ctx, test_ctx_bad_server, 0, (int)(sizeof(bad_server) / sizeof(bad_server[0])));
    tcase_add_loop_test(ctx, test_ctx_bad_client, 0, (int)(sizeof(bad_client) / sizeof(bad_client[0])));
    suite_add_tcase(s, ctx);

    TCase *conn = tcase_create("connections");
    tcase_set_timeout(conn, 90);
    tcase_add_test(conn, test_handshake_order);
    tcase_add_loop_test(conn, test_version_tls12, 0, 2);
    tcase_add_test(conn, test_transfer_4mib_both_ways);
    tcase_add_loop_test(conn, test_pending_plaintext_idle_socket, 0, 2);
    tcase_add_loop_test(conn, test_close_notify, 0, 2);
    tcase_add_loop_test(conn, test_verify_fails, 0, 6);
    tcase_add_loop_test(conn, test_verify_off, 0, 3);
    tcase_add_loop_test(conn, test_sni, 0, (int)(sizeof(sni_cases) / sizeof(sni_cases[0])));
    tcase_add_test(conn, test_min_version_refused);
    tcase_add_loop_test(conn, test_resumption, 0, 4);
    tcase_add_test(conn, test_server_peer_leaves_before_hello);
    tcase_add_test(conn, test_client_server_leaves);
    tcase_add_test(conn, test_handshake_read_timeout);
    suite_add_tcase(s, conn);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as main.c: a write to a closed peer is an error code, not a death */
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof(dir), "%s/fx_tls_test.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "test_tls: mkdtemp %s: %s\n", dir, strerror(errno));
        return EXIT_FAILURE;
    }
    if (make_pki() < 0) {
        fprintf(stderr, "test_tls: cannot make the test certificates in %s\n", dir);
        ERR_print_errors_fp(stderr);
        fx_test_rm_rf(dir);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(tls_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    fx_test_rm_rf(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
