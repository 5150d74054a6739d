/*
 * proxy.h — one client connection and the requests on it: read a head,
 * route it, forward it upstream, stream the body both ways, answer, log.
 *
 * All functions run on the connection's worker thread.
 */
#ifndef FX_PROXY_H
#define FX_PROXY_H

#include <sys/socket.h>

#include "server.h"

struct ssl_ctx_st;

/* Takes ownership of an accepted socket. */
/* A connection accepted on a listener; tls: the listener's context (NULL: plain TCP). */
void fx_proxy_accept(fx_worker *w, int fd, const struct sockaddr *sa, int salen, struct ssl_ctx_st *tls);
/* Drain: close idle connections now, the busy ones after their current response. */
void fx_proxy_drain(fx_worker *w);
/* Hard stop: close everything now (drain period over, or shutting down). */
void fx_proxy_close_all(fx_worker *w);
/* Event tickets came back to this worker (FX_CTL_EVENTS): the responses held for them go out. */
void fx_proxy_events_returned(fx_worker *w);

#endif
