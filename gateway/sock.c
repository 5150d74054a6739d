/*
 * sock.c — non-blocking socket + buffers on an event_base (see sock.h).
 *
 *   fx_sock_new / fx_sock_connect   wrap a socket, arm reading
 *   on_readable                     one readv of up to 64 KiB into `in`, then on_read;
 *                                   0 bytes → FX_SOCK_EOF, error → FX_SOCK_ERROR
 *   fx_sock_flush                   write now; arm EPOLLOUT only for what is left
 *   on_writable                     finish a connect, write the rest, on_drain
 *   TLS                             fx_sock_tls, tls_handshake, tls_read, tls_write_some:
 *                                   the same events and buffers over SSL_read/SSL_write
 *
 * Failures found inside fx_sock_flush are reported from the loop (via an
 * activated write event), never by calling back into the owner from the
 * middle of its own code.
 */
#include "sock.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "clock.h"
#include "tls.h"

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);
static void tls_handshake(fx_sock *s);
static void tls_read(fx_sock *s, int kicked);
static int tls_write_some(fx_sock *s);

static fx_sock *sock_wrap(struct event_base *base, int fd)
{
    fx_sock *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->fd = fd;
    s->base = base;
    s->in = evbuffer_new();
    s->out = evbuffer_new();
    s->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, s);
    s->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
    if (!s->in || !s->out || !s->rev || !s->wev) {
        s->fd = -1; /* the caller still owns fd */
        fx_sock_free(s);
        return NULL;
    }
    return s;
}

fx_sock *fx_sock_new(struct event_base *base, int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fx_sock *s = sock_wrap(base, fd);
    if (s)
        fx_sock_read_enable(s);
    return s;
}

fx_sock *fx_sock_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                         int *err)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = connect(fd, sa, len);
    if (rc < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return NULL;
    }
    fx_sock *s = sock_wrap(base, fd);
    if (!s) {
        *err = ENOMEM;
        close(fd);
        return NULL;
    }
    /* writability tells us the connect finished (or failed); reading waits for it */
    s->connecting = rc < 0;
    if (s->connecting) {
        event_add(s->wev, NULL);
        s->writing = 1;
    } else {
        fx_sock_read_enable(s);
        s->kicked = 0;
    }
    return s;
}

void fx_sock_free(fx_sock *s)
{
    if (!s)
        return;
    if (s->rev)
        event_free(s->rev);
    if (s->wev)
        event_free(s->wev);
    if (s->in)
        evbuffer_free(s->in);
    if (s->out)
        evbuffer_free(s->out);
    if (s->ssl) {
        if (!s->tls_hs && !s->failed && !s->abortive && s->fd >= 0)
            SSL_shutdown(s->ssl); /* close_notify, if the kernel takes it now; never waits */
        SSL_free(s->ssl);
        ERR_clear_error();
    }
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

int fx_sock_tls(fx_sock *s, SSL *ssl, int server)
{
    if (!ssl)
        return -1;
    if (SSL_set_fd(ssl, s->fd) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    s->ssl = ssl;
    s->tls_server = server ? 1 : 0;
    /* a server waits for the ClientHello (reading is armed); a client starts after its TCP connect */
    s->tls_hs = 1;
    /* connected already: start from the loop, once the owner has set its callbacks */
    if (!server && !s->connecting)
        event_active(s->wev, EV_WRITE, 0);
    return 0;
}

void fx_sock_setcb(fx_sock *s, fx_sock_cb on_read, fx_sock_cb on_drain, fx_sock_event_cb on_event,
                   void *arg)
{
    s->on_read = on_read;
    s->on_drain = on_drain;
    s->on_event = on_event;
    s->arg = arg;
}

static void arm_read(fx_sock *s)
{
    if (s->read_timeout_ms) {
        struct timeval tv = fx_ms_tv(s->read_timeout_ms);
        event_add(s->rev, &tv);
    } else {
        /* event_add(ev, NULL) keeps a timeout set earlier: remove it explicitly */
        event_add(s->rev, NULL);
        event_remove_timer(s->rev);
    }
}

void fx_sock_read_enable(fx_sock *s)
{
    if (s->reading || s->eof || s->failed || s->connecting)
        return;
    s->reading = 1;
    arm_read(s);
    /* plaintext OpenSSL decrypted before reading was paused: the socket may never be readable again */
    if (s->ssl && !s->tls_hs && (SSL_has_pending(s->ssl) || s->tls_err_due))
        event_active(s->rev, EV_READ, 0);
}

void fx_sock_read_disable(fx_sock *s)
{
    if (!s->reading)
        return;
    s->reading = 0;
    event_del(s->rev);
}

void fx_sock_set_read_timeout(fx_sock *s, uint64_t ms)
{
    if (s->read_timeout_ms == ms)
        return;
    s->read_timeout_ms = ms;
    if (s->reading)
        arm_read(s);
}

void fx_sock_kick(fx_sock *s)
{
    s->kicked = 1;
    event_active(s->rev, EV_READ, 0);
}

static void report(fx_sock *s, int what)
{
    if (s->on_event)
        s->on_event(s, what, s->arg);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    fx_sock *s = arg;
    if (what & EV_TIMEOUT) {
        report(s, FX_SOCK_TIMEOUT);
        return;
    }
    int kicked = s->kicked;
    s->kicked = 0;
    if (s->ssl && s->tls_hs && !s->failed) {
        tls_handshake(s);
        return;
    }
    if (!s->reading || s->eof || s->failed) {
        /* a kick while paused or after EOF: just let the owner look at what it has */
        if (kicked && s->on_read)
            s->on_read(s, s->arg);
        return;
    }
    if (s->ssl) {
        tls_read(s, kicked);
        return;
    }
    struct evbuffer_iovec vec[2];
    int nv = evbuffer_reserve_space(s->in, FX_SOCK_READ_CHUNK, vec, 2);
    if (nv <= 0) {
        s->error = ENOMEM;
        s->failed = 1;
        fx_sock_read_disable(s);
        report(s, FX_SOCK_ERROR);
        return;
    }
    struct iovec iov[2];
    for (int i = 0; i < nv; i++) {
        iov[i].iov_base = vec[i].iov_base;
        iov[i].iov_len = vec[i].iov_len;
    }
    ssize_t n = readv(s->fd, iov, nv);
    if (n > 0) {
        size_t left = (size_t)n;
        for (int i = 0; i < nv; i++) {
            size_t take = left < vec[i].iov_len ? left : vec[i].iov_len;
            vec[i].iov_len = take;
            left -= take;
        }
        evbuffer_commit_space(s->in, vec, nv);
        if (s->on_read)
            s->on_read(s, s->arg);
        return;
    }
    evbuffer_commit_space(s->in, vec, 0);
    if (n == 0) {
        s->eof = 1;
        fx_sock_read_disable(s); /* level-triggered: EOF would fire forever */
        report(s, FX_SOCK_EOF);
        return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        if (kicked && s->on_read)
            s->on_read(s, s->arg);
        return;
    }
    s->error = errno;
    s->failed = 1;
    fx_sock_read_disable(s);
    report(s, FX_SOCK_ERROR);
}

/* Writes what the kernel takes. 1 when `out` is empty, 0 when some is left, -1 on error. */
static int write_some(fx_sock *s)
{
    if (s->ssl)
        return tls_write_some(s);
    while (evbuffer_get_length(s->out) > 0) {
        int n = evbuffer_write(s->out, s->fd);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        s->error = n < 0 ? errno : EPIPE;
        return -1;
    }
    return 1;
}

int fx_sock_flush(fx_sock *s)
{
    if (s->failed)
        return -1;
    if (s->connecting || s->writing || s->tls_hs)
        return 0; /* the write event (or the end of the handshake) will carry on */
    int r = write_some(s);
    if (r == 0) {
        event_add(s->wev, NULL);
        s->writing = 1;
        return 0;
    }
    if (r < 0) {
        s->failed = 1;
        fx_sock_read_disable(s);
        /* report from the loop: the owner is in the middle of something */
        event_active(s->wev, EV_WRITE, 0);
        return -1;
    }
    return 0;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    fx_sock *s = arg;
    if (s->failed) {
        if (s->writing) {
            event_del(s->wev);
            s->writing = 0;
        }
        report(s, FX_SOCK_ERROR);
        return;
    }
    if (s->connecting) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err == EINPROGRESS)
            return;
        s->connecting = 0;
        if (err) {
            s->error = err;
            s->failed = 1;
            event_del(s->wev);
            s->writing = 0;
            report(s, FX_SOCK_ERROR);
            return;
        }
        fx_sock_read_enable(s);
        if (s->ssl) {
            /* TCP is up; CONNECTED waits for the handshake */
            tls_handshake(s);
            return;
        }
        report(s, FX_SOCK_CONNECTED);
        /* the owner may have freed nothing here: CONNECTED never frees (sock.h) */
    }
    if (s->ssl && s->tls_hs) {
        tls_handshake(s);
        return;
    }
    if (s->ssl && s->tls_rw) {
        /* an SSL_read that had to write (a post-handshake message) can go on now */
        s->tls_rw = 0;
        if (!evbuffer_get_length(s->out)) {
            event_del(s->wev);
            s->writing = 0;
        }
        if (s->reading) {
            arm_read(s);
            event_active(s->rev, EV_READ, 0);
        }
        if (!s->writing)
            return;
    }
    int r = write_some(s);
    if (r < 0) {
        s->failed = 1;
        event_del(s->wev);
        s->writing = 0;
        fx_sock_read_disable(s);
        report(s, FX_SOCK_ERROR);
        return;
    }
    if (r > 0) {
        event_del(s->wev);
        s->writing = 0;
    }
    if (evbuffer_get_length(s->out) <= s->low_water && s->on_drain)
        s->on_drain(s, s->arg);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

/* The TLS layer failed: remember why, stop both directions; the caller reports. */
static void tls_fail(fx_sock *s, int err, int saved_errno)
{
    errno = saved_errno;
    if (!s->tls_error[0]) {
        char why[sizeof(s->tls_error)];
        if (err == SSL_ERROR_SYSCALL && errno && !ERR_peek_error())
            snprintf(s->tls_error, sizeof(s->tls_error), "%s", strerror(errno));
        else
            snprintf(s->tls_error, sizeof(s->tls_error), "%s", fx_tls_reason(s->ssl, why, sizeof(why)));
    }
    ERR_clear_error();
    s->error = err == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
    s->failed = 1;
    fx_sock_read_disable(s);
    if (s->writing) {
        event_del(s->wev);
        s->writing = 0;
    }
}

static void tls_handshake(fx_sock *s)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_do_handshake(s->ssl);
    int saved_errno = errno;
    if (r == 1) {
        s->tls_hs = 0;
        if (s->writing) {
            event_del(s->wev);
            s->writing = 0;
        }
        if (!s->tls_server)
            report(s, FX_SOCK_CONNECTED); /* never frees (sock.h); the owner may queue its request */
        if (evbuffer_get_length(s->out) && fx_sock_flush(s) < 0)
            return; /* reported from the loop */
        /* the peer's first record may have come with the end of the handshake */
        if (s->reading && SSL_has_pending(s->ssl))
            event_active(s->rev, EV_READ, 0);
        return;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        if (s->writing) {
            event_del(s->wev);
            s->writing = 0;
        }
        if (!s->reading)
            s->reading = 1;
        arm_read(s); /* (again: WANT_WRITE below took it off) */
        return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        /* only writability helps now: a readable socket would wake us to the same answer, forever */
        if (s->reading)
            event_del(s->rev);
        if (!s->writing) {
            event_add(s->wev, NULL);
            s->writing = 1;
        }
        return;
    }
    /* a client that closes (or resets) before finishing is an end, not a TLS error worth a reason */
    int gone = e == SSL_ERROR_ZERO_RETURN || /* an EOF, with SSL_OP_IGNORE_UNEXPECTED_EOF */
               (e == SSL_ERROR_SYSCALL && !ERR_peek_error() &&
                (!saved_errno || saved_errno == ECONNRESET || saved_errno == EPIPE)) ||
               (e == SSL_ERROR_SSL && ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING);
    if (gone && s->tls_server) {
        ERR_clear_error();
        s->eof = 1;
        fx_sock_read_disable(s);
        if (s->writing) {
            event_del(s->wev);
            s->writing = 0;
        }
        report(s, FX_SOCK_EOF);
        return;
    }
    if (gone)
        snprintf(s->tls_error, sizeof(s->tls_error), "the peer closed the connection during the TLS handshake");
    tls_fail(s, e, saved_errno);
    report(s, FX_SOCK_ERROR);
}

/* Up to FX_SOCK_READ_CHUNK bytes of plaintext per turn, then on_read. A terminal
 * condition met after some bytes is reported on the next turn (on_read may free s). */
static void tls_read(fx_sock *s, int kicked)
{
    if (s->tls_err_due) {
        /* OpenSSL would not say it again (a second SSL_read after an unexpected EOF looks clean) */
        s->tls_err_due = 0;
        tls_fail(s, SSL_ERROR_SSL, 0);
        report(s, FX_SOCK_ERROR);
        return;
    }
    size_t got = 0;
    int end = 0; /* 1: EOF, 2: error */
    int err = 0, saved_errno = 0;
    while (got < FX_SOCK_READ_CHUNK) {
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(s->in, 16384, &v, 1) < 1) {
            s->error = ENOMEM;
            s->failed = 1;
            fx_sock_read_disable(s);
            report(s, FX_SOCK_ERROR);
            return;
        }
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(s->ssl, v.iov_base, (int)(v.iov_len > 16384 ? 16384 : v.iov_len));
        saved_errno = errno;
        if (n > 0) {
            v.iov_len = (size_t)n;
            evbuffer_commit_space(s->in, &v, 1);
            got += (size_t)n;
            continue;
        }
        evbuffer_commit_space(s->in, &v, 0);
        err = SSL_get_error(s->ssl, n);
        if (err == SSL_ERROR_WANT_READ)
            break;
        if (err == SSL_ERROR_WANT_WRITE) {
            /* reads wait for writability (on_writable re-arms them): no spinning on a readable socket */
            s->tls_rw = 1;
            if (s->reading)
                event_del(s->rev);
            if (!s->writing) {
                event_add(s->wev, NULL);
                s->writing = 1;
            }
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && !saved_errno && !ERR_peek_error()))
            end = 1;
        else
            end = 2;
        break;
    }
    if (got) {
        if (end == 2) {
            char why[sizeof(s->tls_error)];
            if (!s->tls_error[0])
                snprintf(s->tls_error, sizeof(s->tls_error), "%s", fx_tls_reason(s->ssl, why, sizeof(why)));
            s->tls_err_due = 1;
        }
        if (end || SSL_has_pending(s->ssl))
            event_active(s->rev, EV_READ, 0); /* the rest (or the end) next turn */
        if (s->on_read)
            s->on_read(s, s->arg);
        return;
    }
    if (end == 1) {
        s->eof = 1;
        fx_sock_read_disable(s);
        report(s, FX_SOCK_EOF);
        return;
    }
    if (end == 2) {
        tls_fail(s, err, saved_errno);
        report(s, FX_SOCK_ERROR);
        return;
    }
    if (kicked && s->on_read)
        s->on_read(s, s->arg);
}

/* write_some over SSL_write: records of up to 16 KiB, each from contiguous bytes. */
static int tls_write_some(fx_sock *s)
{
    size_t len;
    while ((len = evbuffer_get_length(s->out)) > 0) {
        size_t n = len < 16384 ? len : 16384;
        if (n < s->tls_wlen)
            n = s->tls_wlen; /* a repeated write is never shorter (`out` only grows at its end) */
        unsigned char *p = evbuffer_pullup(s->out, (ev_ssize_t)n);
        if (!p) {
            s->error = ENOMEM;
            return -1;
        }
        ERR_clear_error();
        errno = 0;
        int r = SSL_write(s->ssl, p, (int)n);
        int saved_errno = errno;
        if (r > 0) {
            evbuffer_drain(s->out, (size_t)r);
            s->tls_wlen = 0;
            continue;
        }
        int e = SSL_get_error(s->ssl, r);
        if (e == SSL_ERROR_WANT_WRITE) {
            s->tls_wlen = (unsigned)n;
            return 0;
        }
        /* WANT_READ would mean renegotiation, which is off on both sides: a failure like any other */
        tls_fail(s, e, saved_errno);
        s->failed = 0; /* the callers of write_some set it and report */
        return -1;
    }
    return 1;
}
