/*
 * tls.h — TLS contexts for listeners and upstreams (OpenSSL 3).
 *
 * The contexts are built while a config snapshot is loaded (config.c calls
 * fx_tls_server_ctx / fx_tls_client_ctx) and live in the snapshot: a reload
 * builds new ones, `ficus check` builds them too, so an unreadable
 * certificate, a key that does not match it or a cipher list OpenSSL refuses
 * is a positioned config error and never a half-applied reload. A
 * connection's SSL holds a reference to its context, so a handshake that
 * started before a reload finishes on the old certificates.
 *
 * The per-connection I/O (handshake, SSL_read/SSL_write over the worker's
 * event loop) is in sock.c; this file only makes contexts and SSL objects
 * and says what went wrong.
 *
 * Session tickets: one key ring for the process (the only TLS state that
 * outlives a snapshot, so a reload does not end every client's resumption).
 * A new key every FX_TLS_TICKET_ROTATE_S; tickets are issued with the newest
 * and accepted while their key is one of the last two, so a ticket lives at
 * least one rotation period and at most two.
 */
#ifndef FX_TLS_H
#define FX_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "config.h"

#define FX_TLS_TICKET_ROTATE_S 3600

/* What failed while building a context: `where` is the key under the tls
 * section ("cert", "key", "certificates[1].cert", "ciphers", "ca", ...). */
typedef struct fx_tls_error {
    char where[64];
    char msg[320];
} fx_tls_error;

/* A listener's context: default certificate, SNI certificates, versions,
 * ciphers, ALPN, tickets, OCSP staple. NULL with *err filled on failure. */
SSL_CTX *fx_tls_server_ctx(const fx_tls_server_conf *t, fx_tls_error *err);
/* An upstream's context: verification (on by default), CA, client certificate. */
SSL_CTX *fx_tls_client_ctx(const fx_tls_client_conf *t, fx_tls_error *err);

/* An SSL for an accepted connection (server side). NULL on ENOMEM. */
SSL *fx_tls_server_ssl(SSL_CTX *ctx);
/* An SSL for a connection to `target` of an upstream: SNI and the verified
 * name are tls.server_name, else the target's host (a name, or an IP
 * address checked against the certificate's IP SANs). NULL on ENOMEM. */
SSL *fx_tls_client_ssl(SSL_CTX *ctx, const fx_tls_client_conf *t, const fx_addr *target);

/* Why a handshake or record failed, for a person: the verification result
 * ("certificate has expired") when the peer's certificate was refused, else
 * OpenSSL's first queued error reason. Clears the thread's error queue. */
const char *fx_tls_reason(SSL *ssl, char *buf, size_t len);

/* "TLSv1.3" and "TLS_AES_128_GCM_SHA256" of an established connection ("-" before). */
const char *fx_tls_version(const SSL *ssl);
const char *fx_tls_cipher(const SSL *ssl);

#endif
