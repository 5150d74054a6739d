/*
 * sock.c — non-blocking socket + buffers on an event_base (see sock.h).
 *
 *   fx_sock_new / fx_sock_connect   wrap a socket, arm reading
 *   on_readable                     one readv of up to 64 KiB into `in`, then on_read;
 *                                   0 bytes → FX_SOCK_EOF, error → FX_SOCK_ERROR
 *   fx_sock_flush                   write now; arm EPOLLOUT only for what is left
 *   on_writable                     finish a connect, write the rest, on_drain
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
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

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
    if (s->fd >= 0)
        close(s->fd);
    free(s);
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
        struct timeval tv = {(time_t)(s->read_timeout_ms / 1000),
                             (suseconds_t)((s->read_timeout_ms % 1000) * 1000)};
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
    if (!s->reading || s->eof || s->failed) {
        /* a kick while paused or after EOF: just let the owner look at what it has */
        if (kicked && s->on_read)
            s->on_read(s, s->arg);
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
    if (s->connecting || s->writing)
        return 0; /* the write event will carry on */
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
        report(s, FX_SOCK_CONNECTED);
        /* the owner may have freed nothing here: CONNECTED never frees (sock.h) */
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
