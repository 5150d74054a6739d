/*
 * admin.h — the admin listener (config `admin.address`), served by the
 * main thread: health, readiness, Prometheus metrics, the running config
 * and reload.
 *
 *   GET  /healthz          200 while the process runs
 *   GET  /readyz           200 when serving; 503 while draining, or while a jwks_uri key set
 *                          has not been fetched yet
 *   GET  /metrics          Prometheus text format
 *   GET  /admin/config     the running config as JSON, with its hash and load time
 *   GET  /admin/routes     each route, its sides and weights, and its traffic (last minute, totals)
 *   GET  /admin/upstreams  each upstream, its targets, and its traffic
 *   GET  /admin/events     change events: brokers, spool, producer, topics (events.c)
 *   POST /admin/reload     reload from the file: 200, or 400 with the errors
 *   POST /authz/v1/check   the decision API (authorize.c)
 *
 * It never runs on a worker thread, so nothing here is on the request path.
 */
#ifndef FX_ADMIN_H
#define FX_ADMIN_H

#include "config.h"
#include "server.h"

struct event_base;
typedef struct fx_admin fx_admin;

/* Listens on cfg->admin. NULL after logging why (the address is in use, ...). */
fx_admin *fx_admin_start(fx_server *s, struct event_base *base, const fx_config *cfg);
/*
 * Reload, in two steps so that a reload is applied whole or not at all:
 * prepare binds the new admin.address if it changed (-1 with an error in
 * `diags` if it cannot), then exactly one of commit (switch) or abort.
 */
int fx_admin_prepare(fx_admin *a, const fx_config *cfg, fx_diags *diags);
void fx_admin_commit(fx_admin *a, const fx_config *cfg);
void fx_admin_abort(fx_admin *a);
void fx_admin_free(fx_admin *a);

#endif
