/*
 * fuzz_tls.c — libFuzzer harness for the server side of TLS (gateway/tls.c):
 * the input is what a client sends first (its ClientHello and whatever
 * follows), fed to a server SSL made by fx_tls_server_ssl over memory BIOs.
 * SSL_do_handshake runs until it wants more input or fails, so OpenSSL's
 * ClientHello parsing and our callbacks (servername / SNI switch, ALPN,
 * OCSP status, session ticket keys) all see hostile input.
 *
 *   make_pair / init     once per process: two fresh EC P-256 self-signed
 *                        pairs written to a temp dir, a listener context from
 *                        fx_tls_server_ctx (default certificate, an SNI one
 *                        for [a.test, "*.b.test"], alpn [http/1.1], tickets
 *                        on, an OCSP staple for the SNI one), the files then
 *                        removed (the context holds what it read)
 *   check                what must hold once a ServerHello went out (so the
 *                        callbacks ran): the context is the SNI one exactly
 *                        when the name is a.test or one label under b.test,
 *                        and an ALPN answer can only be http/1.1
 *
 * Seeds (tests/data/tls): ClientHellos of python's ssl (OpenSSL 3) over
 * MemoryBIO, TLS 1.2 and 1.3, with and without SNI and ALPN, and two that
 * resume a session of a python server (a TLS 1.2 session ticket, a TLS 1.3
 * PSK), whose keys ficus does not know.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false
 *   ninja -C build-fuzz tests/fuzz/fuzz_tls
 *   build-fuzz/tests/fuzz/fuzz_tls -max_len=4096 tests/data/tls
 */
#include <limits.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tls.h"
#include "../unit/testcert.h"
#include "../unit/tmpdir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *server_ctx;

/* DIR/NAME.pem and DIR/NAME.key: a self-signed certificate for `cn` on a new P-256 key. */
static int make_pair(const char *dir, const char *name, const char *cn, const char *san)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = k ? fx_test_cert(k, cn, NULL, NULL, san, 0, -3600, 86400, 1) : NULL;
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    int ok = x && fx_test_write_pem(path, 0644, x, NULL) == 0;
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    ok = ok && fx_test_write_pem(path, 0600, NULL, k) == 0;
    X509_free(x);
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

/* A DER OCSP response signed by the pair in cert/key: status "successful" is all tls.c checks, so one
 * without a single certificate status will do. */
static int make_ocsp(const char *path, const char *cert, const char *key)
{
    FILE *f = fopen(cert, "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(key, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    OCSP_BASICRESP *b = OCSP_BASICRESP_new();
    OCSP_RESPONSE *r = NULL;
    unsigned char *der = NULL;
    int n = -1;
    if (x && k && b && OCSP_basic_sign(b, x, k, EVP_sha256(), NULL, OCSP_NOCERTS) == 1 &&
        (r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, b)))
        n = i2d_OCSP_RESPONSE(r, &der);
    f = n > 0 ? fopen(path, "wb") : NULL;
    int ok = f && fwrite(der, 1, (size_t)n, f) == (size_t)n;
    if (f)
        ok = fclose(f) == 0 && ok;
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    OCSP_BASICRESP_free(b);
    EVP_PKEY_free(k);
    X509_free(x);
    return ok ? 0 : -1;
}

static void init(void)
{
    char dir[] = "/tmp/fx-fuzz-tls-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("fuzz_tls: mkdtemp");
        abort();
    }
    char cert[PATH_MAX], key[PATH_MAX], sni_cert[PATH_MAX], sni_key[PATH_MAX], ocsp[PATH_MAX];
    snprintf(cert, sizeof(cert), "%s/default.pem", dir);
    snprintf(key, sizeof(key), "%s/default.key", dir);
    snprintf(sni_cert, sizeof(sni_cert), "%s/sni.pem", dir);
    snprintf(sni_key, sizeof(sni_key), "%s/sni.key", dir);
    snprintf(ocsp, sizeof(ocsp), "%s/sni.ocsp", dir);
    if (make_pair(dir, "default", "default.test", "DNS:default.test") < 0 ||
        make_pair(dir, "sni", "a.test", "DNS:a.test,DNS:*.b.test") < 0 || make_ocsp(ocsp, sni_cert, sni_key) < 0) {
        ERR_print_errors_fp(stderr);
        fx_test_rm_rf(dir);
        abort();
    }
    char *names[] = {"a.test", "*.b.test"};
    char *alpn[] = {"http/1.1"};
    fx_tls_cert_conf sni = {.cert = sni_cert, .key = sni_key, .server_names = names, .nserver_names = 2,
                            .ocsp_response = ocsp};
    fx_tls_server_conf conf = {.cert = cert, .key = key, .min_version = TLS1_2_VERSION, .alpn = alpn, .nalpn = 1,
                               .certs = &sni, .ncerts = 1, .session_tickets = 1};
    fx_tls_error err;
    server_ctx = fx_tls_server_ctx(&conf, &err);
    fx_test_rm_rf(dir);
    if (!server_ctx) {
        fprintf(stderr, "fuzz_tls: fx_tls_server_ctx: %s: %s\n", err.where, err.msg);
        abort();
    }
}

/* Does the SNI certificate serve this name? Said here independently of tls.c. */
static int sni_serves(const char *name)
{
    if (!strcasecmp(name, "a.test"))
        return 1;
    const char *dot = strchr(name, '.');
    return dot && dot != name && !strcasecmp(dot + 1, "b.test");
}

/* The server's first record is a ServerHello (not a HelloRetryRequest): the ClientHello was taken whole. */
static int server_hello_sent(BIO *wbio)
{
    static const unsigned char hrr_random[32] = {
        0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
        0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c};
    char *out;
    long n = BIO_get_mem_data(wbio, &out);
    /* record header (5), handshake header (4), version (2), random (32) */
    if (n < 43 || out[0] != 0x16 || out[5] != 0x02)
        return 0;
    return memcmp(out + 11, hrr_random, sizeof(hrr_random)) != 0;
}

static void check(SSL *s, BIO *wbio)
{
    if (!server_hello_sent(wbio))
        return;
    const char *name = SSL_get_servername(s, TLSEXT_NAMETYPE_host_name);
    int on_sni = SSL_get_SSL_CTX(s) != server_ctx;
    if (on_sni != (name && sni_serves(name))) {
        fprintf(stderr, "fuzz_tls: server name '%s' got the %s certificate\n", name ? name : "(none)",
                on_sni ? "SNI" : "default");
        abort();
    }
    const unsigned char *proto;
    unsigned int plen;
    SSL_get0_alpn_selected(s, &proto, &plen);
    if (plen && (plen != 8 || memcmp(proto, "http/1.1", 8))) {
        fprintf(stderr, "fuzz_tls: ALPN answered '%.*s'\n", (int)plen, proto);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!server_ctx)
        init();
    if (size > INT_MAX)
        return 0;
    SSL *s = fx_tls_server_ssl(server_ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!s || !rbio || !wbio)
        abort();
    BIO_set_mem_eof_return(rbio, -1); /* no more input is "retry", as on a socket that would block */
    BIO_set_mem_eof_return(wbio, -1);
    if (size && BIO_write(rbio, data, (int)size) != (int)size)
        abort();
    SSL_set_bio(s, rbio, wbio);
    /* a handshake that takes input makes progress; a bound keeps a surprise from looping */
    for (int i = 0; i < 16; i++) {
        int r = SSL_do_handshake(s);
        if (r == 1)
            abort(); /* a handshake cannot finish without a client that holds a key */
        int e = SSL_get_error(s, r);
        if (e != SSL_ERROR_WANT_READ || BIO_ctrl_pending(rbio) == 0)
            break;
    }
    check(s, wbio);
    SSL_free(s);
    ERR_clear_error();
    return 0;
}
