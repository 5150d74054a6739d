/*
 * testcert.h — keys and certificates made at run time for the suites and
 * fuzz harnesses that load TLS files (keys are never committed): one
 * certificate maker and one PEM writer, shared by test_tls.c, test_config.c
 * and fuzz_tls.c.
 */
#ifndef FX_TEST_TESTCERT_H
#define FX_TEST_TESTCERT_H

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static inline int fx_test_cert_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    if (!e)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

/*
 * A v3 certificate for `key` named CN=cn, signed by issuer/ikey (NULL:
 * self-signed), valid from `from` to `to` seconds from now; san (like
 * "DNS:a.test,IP:127.0.0.1") may be NULL; ca: a CA certificate (keyCertSign),
 * else a leaf for serverAuth and clientAuth. NULL on failure.
 */
static inline X509 *fx_test_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *ikey, const char *san, int ca,
                                 long from, long to, long serial)
{
    X509 *x = X509_new();
    if (!x)
        return NULL;
    X509_NAME *name = X509_get_subject_name(x);
    int rc = X509_set_version(x, X509_VERSION_3) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(x), serial) == 1 &&
                     X509_gmtime_adj(X509_getm_notBefore(x), from) && X509_gmtime_adj(X509_getm_notAfter(x), to) &&
                     X509_set_pubkey(x, key) == 1 &&
                     X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) == 1 &&
                     X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) == 1
                 ? 0
                 : -1;
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer : x, x, NULL, NULL, 0);
    rc |= fx_test_cert_ext(x, &v3, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    rc |= fx_test_cert_ext(x, &v3, NID_subject_key_identifier, "hash");
    if (ca)
        rc |= fx_test_cert_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
    else
        rc |= fx_test_cert_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth");
    if (san)
        rc |= fx_test_cert_ext(x, &v3, NID_subject_alt_name, san);
    if (rc || !X509_sign(x, ikey ? ikey : key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Writes cert (or, when cert is NULL, key) as PEM to a fresh file of `mode` (unlinked first: never
 * through a symlink or over a file of other permissions). 0 or -1. */
static inline int fx_test_write_pem(const char *path, mode_t mode, X509 *cert, EVP_PKEY *key)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok = cert ? PEM_write_X509(f, cert) : PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    return fclose(f) == 0 && ok ? 0 : -1;
}

#endif
