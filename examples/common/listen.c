/*
 * listen.c — the example services' --listen address (see listen.h).
 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int ex_parse_listen(const char *s, char *host, size_t hostcap, unsigned short *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || !colon[1])
        return -1;
    for (const char *d = colon + 1; *d; d++)
        if (*d < '0' || *d > '9')
            return -1;
    errno = 0;
    unsigned long p = strtoul(colon + 1, NULL, 10);
    if (errno || p > 65535)
        return -1;
    const char *h = s;
    size_t hlen = (size_t)(colon - s);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0) {
        h = "0.0.0.0";
        hlen = strlen(h);
    }
    if (hlen >= hostcap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (unsigned short)p;
    return 0;
}

/* The address actually bound: with port 0 only the kernel knows the port. */
int ex_print_bound(evutil_socket_t fd, const char *name)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char addr[INET6_ADDRSTRLEN];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return -1;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, addr, sizeof(addr));
        printf("%s listening on [%s]:%u\n", name, addr, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, addr, sizeof(addr));
        printf("%s listening on %s:%u\n", name, addr, ntohs(s4->sin_port));
    }
    fflush(stdout);
    return 0;
}
