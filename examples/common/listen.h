/*
 * listen.h — the --listen address of the example services (monolith,
 * documents-service): parsing "HOST:PORT" and announcing the address really
 * bound, which tests read to learn a port the kernel chose.
 */
#ifndef EX_LISTEN_H
#define EX_LISTEN_H

#include <event2/util.h>
#include <stddef.h>

/* HOST:PORT, [V6]:PORT or :PORT (all interfaces). 0, or -1 when malformed. */
int ex_parse_listen(const char *s, char *host, size_t hostcap, unsigned short *port);
/* Prints "NAME listening on ADDR:PORT" (the address bound, after port 0) and flushes. 0 or -1. */
int ex_print_bound(evutil_socket_t fd, const char *name);

#endif
