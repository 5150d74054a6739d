/*
 * tls.c — TLS contexts for listeners and upstreams (see tls.h).
 *
 *   ctx_data / data_index     what ficus hangs on an SSL_CTX (the SNI table, the
 *                             OCSP staple, the ALPN list), freed with the context
 *   ticket ring               session ticket keys: rotated hourly, shared by
 *                             every listener and every snapshot
 *   server contexts           base settings, certificate + key, SNI, ALPN, OCSP
 *   client contexts           verification, CA, client certificate
 *   per connection            fx_tls_server_ssl, fx_tls_client_ssl
 *   reporting                 fx_tls_reason, fx_tls_version, fx_tls_cipher
 *
 * Error messages name the file and say what to do; the caller (config.c)
 * puts them at the position of the key that named the file.
 */
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- ctx_data ------------------------------------------------------------------------------- */

typedef struct sni_entry {
    char *name;                   /* a copy (the context may outlive the snapshot); "*.x.com": one label */
    SSL_CTX *ctx;                 /* a reference */
} sni_entry;

typedef struct ctx_data {
    sni_entry *sni;               /* on the default context only */
    size_t nsni;
    unsigned char *ocsp;          /* DER OCSP response stapled for this context's certificate */
    size_t ocsp_len;
    unsigned char alpn[64];       /* wire format: length-prefixed protocol ids */
    size_t alpn_len;
} ctx_data;

static int data_idx = -1;
static pthread_once_t data_once = PTHREAD_ONCE_INIT;

static void data_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    ctx_data *d = ptr;
    if (!d)
        return;
    for (size_t i = 0; i < d->nsni; i++) {
        free(d->sni[i].name);
        SSL_CTX_free(d->sni[i].ctx);
    }
    free(d->sni);
    OPENSSL_free(d->ocsp);
    free(d);
}

static void data_init(void)
{
    data_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, data_free);
}

static ctx_data *ctx_data_of(SSL_CTX *ctx)
{
    return SSL_CTX_get_ex_data(ctx, data_idx);
}

/* ---- errors --------------------------------------------------------------------------------- */

static void set_err(fx_tls_error *e, const char *where, const char *fmt, const char *file)
{
    unsigned long code = ERR_peek_error(); /* the first: the cause ("no start line"), not "PEM lib" */
    const char *why = code ? ERR_reason_error_string(code) : NULL;
    snprintf(e->where, sizeof(e->where), "%s", where);
    char what[200];
    snprintf(what, sizeof(what), fmt, file ? file : "");
    if (why)
        snprintf(e->msg, sizeof(e->msg), "%s (OpenSSL: %s)", what, why);
    else
        snprintf(e->msg, sizeof(e->msg), "%s", what);
    ERR_clear_error();
}

/* OpenSSL compares a key with the certificate already loaded when the key is loaded. */
static int key_mismatch(void)
{
    int first = ERR_GET_REASON(ERR_peek_error()), last = ERR_GET_REASON(ERR_peek_last_error());
    return first == X509_R_KEY_VALUES_MISMATCH || last == X509_R_KEY_VALUES_MISMATCH ||
           first == X509_R_KEY_TYPE_MISMATCH || last == X509_R_KEY_TYPE_MISMATCH;
}

/* ---- ticket ring ---------------------------------------------------------------------------- */

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t born;
} ticket_key;

static struct {
    pthread_mutex_t mu;
    ticket_key k[2];              /* k[0]: the newest; k[1]: the one before (or unused: born 0) */
    EVP_CIPHER *cipher;
} ring = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int ring_new_key(ticket_key *k, time_t now)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return -1;
    k->born = now;
    return 0;
}

/* Under ring.mu: makes sure k[0] is younger than one rotation period. */
static int ring_current(time_t now)
{
    if (!ring.cipher && !(ring.cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL)))
        return -1;
    if (ring.k[0].born && now - ring.k[0].born < FX_TLS_TICKET_ROTATE_S)
        return 0;
    ticket_key fresh;
    if (ring_new_key(&fresh, now) < 0)
        return -1;
    ring.k[1] = ring.k[0];
    ring.k[0] = fresh;
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    return 0;
}

static int mac_init(EVP_MAC_CTX *hctx, const unsigned char *key)
{
    OSSL_PARAM p[3];
    p[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)key, 32);
    p[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    p[2] = OSSL_PARAM_construct_end();
    return EVP_MAC_CTX_set_params(hctx, p);
}

/* OpenSSL's ticket callback: 1 = use this key, 2 = valid but issue a new ticket, 0 = no resumption. */
static int on_ticket(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    time_t now = time(NULL);
    ticket_key k;
    int rc = 0, age = -1;
    pthread_mutex_lock(&ring.mu);
    if (ring_current(now) == 0) {
        if (enc) {
            k = ring.k[0];
            age = 0;
        } else {
            for (int i = 0; i < 2; i++) {
                if (ring.k[i].born && now - ring.k[i].born < (i + 1) * FX_TLS_TICKET_ROTATE_S &&
                    !memcmp(key_name, ring.k[i].name, 16)) {
                    k = ring.k[i];
                    age = i;
                    break;
                }
            }
        }
    }
    EVP_CIPHER *cipher = ring.cipher;
    pthread_mutex_unlock(&ring.mu);
    if (age < 0)
        return 0; /* unknown or expired key: a full handshake */
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(cipher)) != 1 ||
            EVP_EncryptInit_ex(cctx, cipher, NULL, k.aes, iv) != 1 || mac_init(hctx, k.hmac) != 1)
            rc = -1;
        else
            rc = 1;
    } else if (EVP_DecryptInit_ex(cctx, cipher, NULL, k.aes, iv) == 1 && mac_init(hctx, k.hmac) == 1) {
        rc = age == 0 ? 1 : 2;
    }
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- server contexts ------------------------------------------------------------------------ */

static int on_alpn(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    ctx_data *d = ctx_data_of(SSL_get_SSL_CTX(s));
    unsigned char *sel;
    if (!d || !d->alpn_len)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_select_next_proto(&sel, outlen, d->alpn, (unsigned)d->alpn_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no protocol in common */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int on_status(SSL *s, void *arg)
{
    ctx_data *d = ctx_data_of(SSL_get_SSL_CTX(s));
    if (!d || !d->ocsp)
        return SSL_TLSEXT_ERR_NOACK;
    unsigned char *copy = OPENSSL_memdup(d->ocsp, d->ocsp_len);
    if (!copy)
        return SSL_TLSEXT_ERR_NOACK;
    SSL_set_tlsext_status_ocsp_resp(s, copy, (long)d->ocsp_len);
    return SSL_TLSEXT_ERR_OK;
}

static int name_matches(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        /* one label, not empty, before the suffix */
        return dot && dot != name && !strcasecmp(dot + 1, pattern + 2);
    }
    return !strcasecmp(pattern, name);
}

/* SNI: switch to the certificate serving the name; an unknown name keeps the default. */
static int on_servername(SSL *s, int *alert, void *arg)
{
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    ctx_data *d = ctx_data_of(SSL_get_SSL_CTX(s));
    if (!name || !d || !d->nsni)
        return SSL_TLSEXT_ERR_OK;
    const sni_entry *wild = NULL;
    for (size_t i = 0; i < d->nsni; i++) {
        if (d->sni[i].name[0] != '*' && !strcasecmp(d->sni[i].name, name)) {
            SSL_set_SSL_CTX(s, d->sni[i].ctx);
            return SSL_TLSEXT_ERR_OK;
        }
        if (!wild && d->sni[i].name[0] == '*' && name_matches(d->sni[i].name, name))
            wild = &d->sni[i];
    }
    if (wild)
        SSL_set_SSL_CTX(s, wild->ctx);
    return SSL_TLSEXT_ERR_OK;
}

static int load_ocsp(ctx_data *d, const char *file, const char *where, fx_tls_error *err)
{
    FILE *f = fopen(file, "rb");
    if (!f) {
        set_err(err, where, "cannot open OCSP response file %s", file);
        return -1;
    }
    unsigned char buf[64 * 1024];
    size_t n = fread(buf, 1, sizeof(buf), f);
    int big = n == sizeof(buf) && fgetc(f) != EOF;
    fclose(f);
    if (big) {
        set_err(err, where, "%s: an OCSP response over 64 KiB", file);
        return -1;
    }
    const unsigned char *p = buf;
    OCSP_RESPONSE *r = d2i_OCSP_RESPONSE(NULL, &p, (long)n);
    if (!r || p != buf + n) {
        OCSP_RESPONSE_free(r);
        set_err(err, where, "%s is not a DER OCSP response (as written by `openssl ocsp -respout`)", file);
        return -1;
    }
    int st = OCSP_response_status(r);
    OCSP_RESPONSE_free(r);
    if (st != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        set_err(err, where, "%s: the OCSP responder did not answer 'successful'; staple a good response", file);
        return -1;
    }
    if (!(d->ocsp = OPENSSL_memdup(buf, n))) {
        set_err(err, where, "out of memory reading %s", file);
        return -1;
    }
    d->ocsp_len = n;
    return 0;
}

/* An encrypted key would make OpenSSL ask for a passphrase on the terminal, in `ficus check` and in
 * a reload alike: refuse instead, and the load says the key cannot be read. */
static int no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    return -1;
}

/* One context with everything but the certificate. */
static SSL_CTX *server_base(const fx_tls_server_conf *t, fx_tls_error *err)
{
    pthread_once(&data_once, data_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    ctx_data *d = calloc(1, sizeof(*d));
    if (!ctx || !d || data_idx < 0 || !SSL_CTX_set_ex_data(ctx, data_idx, d)) {
        free(d);
        SSL_CTX_free(ctx);
        set_err(err, "", "out of memory making a TLS context%s", NULL);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_min_proto_version(ctx, t->min_version);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    /* one session context per listener's settings: a session made on one listener (all the
     * tickets share the key ring) never resumes on another with other certificates or ciphers */
    unsigned char sid[32];
    unsigned int sidlen = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int hashed = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1;
    const char *parts[] = {t->cert, t->key, t->ciphers, t->ciphersuites};
    for (size_t i = 0; hashed && i < sizeof(parts) / sizeof(parts[0]); i++)
        hashed = EVP_DigestUpdate(md, parts[i] ? parts[i] : "", parts[i] ? strlen(parts[i]) + 1 : 1) == 1;
    hashed = hashed && EVP_DigestUpdate(md, &t->min_version, sizeof(t->min_version)) == 1 &&
             EVP_DigestFinal_ex(md, sid, &sidlen) == 1;
    EVP_MD_CTX_free(md);
    if (!hashed || SSL_CTX_set_session_id_context(ctx, sid, sidlen) != 1) {
        set_err(err, "", "cannot set the TLS session context%s", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* resumption by tickets only: no per-context session cache to lock and to lose at reload */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (t->session_tickets) {
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket);
        SSL_CTX_set_timeout(ctx, FX_TLS_TICKET_ROTATE_S);
        SSL_CTX_set_num_tickets(ctx, 1);
    } else {
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
    }
    if (t->ciphers && SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
        set_err(err, "ciphers", "no cipher OpenSSL knows in '%s'", t->ciphers);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (t->ciphersuites && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
        set_err(err, "ciphersuites", "OpenSSL refused the TLS 1.3 suites '%s'", t->ciphersuites);
        SSL_CTX_free(ctx);
        return NULL;
    }
    for (size_t i = 0; i < t->nalpn; i++) {
        size_t n = t->alpn[i] ? strlen(t->alpn[i]) : 0;
        if (n && d->alpn_len + 1 + n <= sizeof(d->alpn)) {
            d->alpn[d->alpn_len++] = (unsigned char)n;
            memcpy(d->alpn + d->alpn_len, t->alpn[i], n);
            d->alpn_len += n;
        }
    }
    if (d->alpn_len)
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    SSL_CTX_set_tlsext_status_cb(ctx, on_status);
    return ctx;
}

/* Certificate chain + key (+ staple) into ctx; `prefix` is "" or "certificates[i]." for error positions. */
static int load_pair(SSL_CTX *ctx, const char *cert, const char *key, const char *ocsp, const char *prefix,
                     fx_tls_error *err)
{
    char where[64];
    snprintf(where, sizeof(where), "%scert", prefix);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        set_err(err, where, "cannot load the certificate chain from %s (PEM, leaf first)", cert);
        return -1;
    }
    snprintf(where, sizeof(where), "%skey", prefix);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (key_mismatch())
            set_err(err, where, "the key in %s does not belong to the certificate", key);
        else
            set_err(err, where, "cannot load the private key from %s (PEM, unencrypted)", key);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        set_err(err, where, "the key in %s does not belong to the certificate", key);
        return -1;
    }
    if (ocsp) {
        snprintf(where, sizeof(where), "%socsp_response", prefix);
        if (load_ocsp(ctx_data_of(ctx), ocsp, where, err) < 0)
            return -1;
    }
    return 0;
}

SSL_CTX *fx_tls_server_ctx(const fx_tls_server_conf *t, fx_tls_error *err)
{
    ERR_clear_error();
    memset(err, 0, sizeof(*err));
    SSL_CTX *ctx = server_base(t, err);
    if (!ctx)
        return NULL;
    if (load_pair(ctx, t->cert, t->key, t->ocsp_response, "", err) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    ctx_data *d = ctx_data_of(ctx);
    size_t total = 0;
    for (size_t i = 0; i < t->ncerts; i++)
        total += t->certs[i].nserver_names;
    if (total && !(d->sni = calloc(total, sizeof(*d->sni)))) {
        set_err(err, "certificates", "out of memory%s", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    for (size_t i = 0; i < t->ncerts; i++) {
        const fx_tls_cert_conf *cc = &t->certs[i];
        char prefix[40];
        snprintf(prefix, sizeof(prefix), "certificates[%zu].", i);
        SSL_CTX *one = server_base(t, err);
        if (!one || load_pair(one, cc->cert, cc->key, cc->ocsp_response, prefix, err) < 0) {
            SSL_CTX_free(one);
            SSL_CTX_free(ctx);
            return NULL;
        }
        for (size_t j = 0; j < cc->nserver_names; j++) {
            char *name = cc->server_names[j] ? strdup(cc->server_names[j]) : NULL;
            if (!name)
                continue;
            SSL_CTX_up_ref(one);
            d->sni[d->nsni++] = (sni_entry){name, one};
        }
        SSL_CTX_free(one); /* the table holds its references */
    }
    if (d->nsni)
        SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    return ctx;
}

SSL *fx_tls_server_ssl(SSL_CTX *ctx)
{
    SSL *s = SSL_new(ctx);
    if (s)
        SSL_set_accept_state(s);
    return s;
}

/* ---- client contexts ------------------------------------------------------------------------ */

SSL_CTX *fx_tls_client_ctx(const fx_tls_client_conf *t, fx_tls_error *err)
{
    ERR_clear_error();
    memset(err, 0, sizeof(*err));
    pthread_once(&data_once, data_init);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        set_err(err, "", "out of memory making a TLS context%s", NULL);
        return NULL;
    }
    SSL_CTX_set_default_passwd_cb(ctx, no_passphrase);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* no SSL_OP_IGNORE_UNEXPECTED_EOF here: an upstream's close without close_notify must not pass for the end
     * of a response delimited by the close (a truncation on the path would go unnoticed) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    if (t->verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (t->ca) {
            if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
                set_err(err, "ca", "cannot load CA certificates from %s (PEM)", t->ca);
                SSL_CTX_free(ctx);
                return NULL;
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            set_err(err, "verify", "cannot load the system's trust store%s; set 'ca'", NULL);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (t->client_cert) {
        if (SSL_CTX_use_certificate_chain_file(ctx, t->client_cert) != 1) {
            set_err(err, "client_cert", "cannot load the client certificate chain from %s (PEM)", t->client_cert);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, t->client_key, SSL_FILETYPE_PEM) != 1) {
            set_err(err, "client_key",
                    key_mismatch() ? "the key in %s does not belong to client_cert"
                                   : "cannot load the client key from %s (PEM, unencrypted)",
                    t->client_key);
            SSL_CTX_free(ctx);
            return NULL;
        }
        if (SSL_CTX_check_private_key(ctx) != 1) {
            set_err(err, "client_key", "the key in %s does not belong to client_cert", t->client_key);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

SSL *fx_tls_client_ssl(SSL_CTX *ctx, const fx_tls_client_conf *t, const fx_addr *target)
{
    SSL *s = SSL_new(ctx);
    if (!s)
        return NULL;
    SSL_set_connect_state(s);
    char host[INET6_ADDRSTRLEN + 1];
    const char *name = t->server_name;
    if (!name) {
        /* the target's address as written: "10.0.0.5:8443" or "[::1]:8443" */
        const char *txt = target->text, *end;
        if (txt[0] == '[' && (end = strchr(txt, ']')))
            txt++;
        else
            end = strrchr(txt, ':');
        size_t n = end ? (size_t)(end - txt) : strlen(txt);
        if (n >= sizeof(host))
            n = sizeof(host) - 1;
        memcpy(host, txt, n);
        host[n] = 0;
        name = host;
    }
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    int ok;
    if (is_ip) {
        /* no SNI for an address (RFC 6066); the certificate must carry it as an IP SAN */
        ok = !t->verify || X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), name) == 1;
    } else {
        ok = SSL_set_tlsext_host_name(s, name) == 1;
        if (ok && t->verify) {
            SSL_set_hostflags(s, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            ok = SSL_set1_host(s, name) == 1;
        }
    }
    if (!ok) {
        SSL_free(s);
        return NULL;
    }
    return s;
}

/* ---- reporting ------------------------------------------------------------------------------ */

const char *fx_tls_reason(SSL *ssl, char *buf, size_t len)
{
    long v = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long code = ERR_peek_error();
    if (v != X509_V_OK && ssl && SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE) {
        snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    } else if (code) {
        const char *r = ERR_reason_error_string(code);
        if (r)
            snprintf(buf, len, "%s", r);
        else
            snprintf(buf, len, "TLS error %lx", code);
    } else {
        snprintf(buf, len, "%s", ssl && SSL_is_init_finished(ssl) ? "TLS error" : "TLS handshake failed");
    }
    ERR_clear_error();
    return buf;
}

const char *fx_tls_version(const SSL *ssl)
{
    return ssl && SSL_is_init_finished(ssl) ? SSL_get_version(ssl) : "-";
}

const char *fx_tls_cipher(const SSL *ssl)
{
    const char *c = ssl && SSL_is_init_finished(ssl) ? SSL_get_cipher_name(ssl) : NULL;
    return c ? c : "-";
}
