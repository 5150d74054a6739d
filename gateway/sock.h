/*
 * sock.h — a non-blocking TCP socket with an input and an output buffer,
 * driven by the worker's event_base. The proxy's only I/O primitive.
 *
 * Why not libevent's socket bufferevent: it defers every write to the next
 * loop turn (arming EPOLLOUT, waiting, writing, disarming: two epoll_ctl
 * calls and an extra epoll_wait per write), and it reads at most 4 KiB per
 * call after an ioctl(FIONREAD). Here a write is attempted at once
 * (fx_sock_flush) and EPOLLOUT is armed only when the kernel pushes back;
 * reads take up to FX_SOCK_READ_CHUNK bytes in one readv and no ioctl; the
 * read event stays armed for the socket's life unless the owner pauses it.
 *
 * TLS (fx_sock_tls): the same interface over an SSL. `in` holds plaintext
 * read with SSL_read, `out` plaintext written with SSL_write; the handshake
 * runs first, driven by the same two events, and nothing is read or written
 * for the owner until it is done. An outgoing connection reports
 * FX_SOCK_CONNECTED only once its handshake is complete; a failed handshake
 * is FX_SOCK_ERROR with error EPROTO and the reason in tls_error. Bytes that
 * OpenSSL has decrypted but we have not taken yet re-activate the read event,
 * so level-triggered readiness never misses them.
 *
 * Ownership: the owner holds the fx_sock and frees it with fx_sock_free;
 * callbacks never free it themselves. Callbacks run only from the event
 * loop, never from inside fx_sock_flush, so an owner can flush while it
 * holds its own state half-updated.
 */
#ifndef FX_SOCK_H
#define FX_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;
struct event;
struct evbuffer;
struct ssl_st;

#define FX_SOCK_READ_CHUNK (64 * 1024)

enum {
    FX_SOCK_EOF = 1 << 0,        /* the peer closed its side (read returned 0) */
    FX_SOCK_ERROR = 1 << 1,      /* read/write/connect failed; errno-style code in s->error */
    FX_SOCK_CONNECTED = 1 << 2,  /* an outgoing connect completed */
    FX_SOCK_TIMEOUT = 1 << 3,    /* the read timeout expired */
};

typedef struct fx_sock fx_sock;
typedef void (*fx_sock_cb)(fx_sock *s, void *arg);
typedef void (*fx_sock_event_cb)(fx_sock *s, int what, void *arg);

struct fx_sock {
    int fd;
    struct event_base *base;
    struct event *rev;           /* EV_READ | EV_PERSIST, with the optional read timeout */
    struct event *wev;           /* EV_WRITE | EV_PERSIST, armed only while output is pending */
    struct evbuffer *in;
    struct evbuffer *out;
    fx_sock_cb on_read;          /* new bytes in `in` (or a kick) */
    fx_sock_cb on_drain;         /* `out` fell to `low_water` or below after being blocked */
    fx_sock_event_cb on_event;
    void *arg;
    size_t low_water;
    uint64_t read_timeout_ms;    /* 0 = none */
    int error;                   /* errno of the failure reported with FX_SOCK_ERROR */
    unsigned reading : 1;        /* rev is armed */
    unsigned writing : 1;        /* wev is armed */
    unsigned connecting : 1;
    unsigned eof : 1;
    unsigned failed : 1;
    unsigned kicked : 1;
    unsigned abortive : 1;       /* set by the owner: close without TLS close_notify (a failure, not an end) */
    /* TLS (NULL ssl: plain TCP) */
    struct ssl_st *ssl;
    unsigned tls_hs : 1;         /* handshake in progress: no application bytes either way */
    unsigned tls_rw : 1;         /* SSL_read wants to write: finish it when writable */
    unsigned tls_server : 1;     /* accepted (else connected: CONNECTED waits for the handshake) */
    unsigned tls_err_due : 1;    /* a TLS error came after some bytes: reported on the next turn */
    unsigned tls_wlen;           /* length of an SSL_write to repeat after WANT_WRITE (0: none) */
    char tls_error[128];         /* why the TLS layer failed ("" when it did not) */
};

/* Wraps an accepted, connected socket (made non-blocking here). NULL on ENOMEM. */
fx_sock *fx_sock_new(struct event_base *base, int fd);
/* Starts a non-blocking connect; completion is reported as FX_SOCK_CONNECTED or FX_SOCK_ERROR. */
fx_sock *fx_sock_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                         int *err);
void fx_sock_free(fx_sock *s);
/*
 * Puts TLS on s (which takes ownership of ssl, set up for its side by tls.c):
 * for an accepted socket the handshake starts with the client's first bytes;
 * for one being connected it starts when the TCP connect completes. 0, or -1
 * (ssl freed) when the SSL cannot be bound to the socket.
 */
int fx_sock_tls(fx_sock *s, struct ssl_st *ssl, int server);

void fx_sock_setcb(fx_sock *s, fx_sock_cb on_read, fx_sock_cb on_drain, fx_sock_event_cb on_event,
                   void *arg);
/* Arms or disarms reading (a paused socket keeps its bytes in the kernel: backpressure). */
void fx_sock_read_enable(fx_sock *s);
void fx_sock_read_disable(fx_sock *s);
/* Timeout for "no bytes read for this long" while reading is armed; 0 removes it. */
void fx_sock_set_read_timeout(fx_sock *s, uint64_t ms);
/* Runs on_read from the loop soon, even if no new byte arrives (pipelined input). */
void fx_sock_kick(fx_sock *s);

/*
 * Writes as much of `out` as the kernel takes now; arms EPOLLOUT for the
 * rest. Returns 0, or -1 when the socket failed (s->error set; the failure
 * is also reported to on_event from the loop).
 */
int fx_sock_flush(fx_sock *s);

static inline size_t fx_sock_pending(const fx_sock *s);

#include <event2/buffer.h>

static inline size_t fx_sock_pending(const fx_sock *s)
{
    return evbuffer_get_length(s->out);
}

/*
 * Hands the first n bytes of src to fn, piece by piece as they lie in its
 * chains, without consuming or copying them (a body being captured while it
 * is forwarded). fn returns 0 to go on, anything else to stop early.
 */
static inline void fx_evbuffer_peek_each(struct evbuffer *src, size_t n, int (*fn)(void *arg, const char *p, size_t len),
                                         void *arg)
{
    struct evbuffer_ptr pos;
    evbuffer_ptr_set(src, &pos, 0, EVBUFFER_PTR_SET);
    while (n) {
        struct evbuffer_iovec v[4];
        int nv = evbuffer_peek(src, (ev_ssize_t)n, &pos, v, 4);
        if (nv <= 0)
            return;
        if (nv > 4)
            nv = 4;
        for (int i = 0; i < nv && n; i++) {
            size_t k = v[i].iov_len < n ? v[i].iov_len : n;
            if (fn(arg, v[i].iov_base, k))
                return;
            n -= k;
            evbuffer_ptr_set(src, &pos, k, EVBUFFER_PTR_ADD);
        }
    }
}

#endif
