"""tlskit — certificates and HTTPS clients for the TLS integration tests.

Not a test module (run.py only collects test_*.py).

  CertFactory(dir)        a private CA (ca.pem) made at test time with
                          python3-cryptography, and the certificates the tests
                          need: server (ECDSA P-256 or RSA 2048, SANs with DNS
                          names and IP addresses), expired, client (mTLS).
                          Each is a Cert: .cert/.key paths, .pem, .der,
                          .serial, .cn; write_to() puts it over other files
                          (certificate reload).
  client_context()        an ssl.SSLContext for a test client: CA, versions,
                          client certificate; legacy=True lets it offer
                          TLS 1.0/1.1 (OpenSSL's security level 0) so that a
                          refused handshake is the server's doing.
  TlsClient               fxtest.RawClient over TLS: send exact bytes, read
                          HTTP/1.1 responses; .version, .cipher, .peer_der,
                          .session, .session_reused
  https_fetch()           one request on a fresh TLS connection
  client_hello()          the bytes of a real ClientHello (for truncated and
                          stalled handshakes)
  s_client()              `openssl s_client`: the leaf certificate the server
                          sent, the protocol, or the failure
  curl()                  curl with --cacert and --resolve
"""

import datetime
import os
import socket
import ssl
import subprocess
import time
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import fxtest

DAY = datetime.timedelta(days=1)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _name(cn, org="ficus tests"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key(kind):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"key kind {kind!r}: ec or rsa")


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path, data, mode=0o600):
    """Temp file + rename: a reader sees the old or the new bytes, never half."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.rename(tmp, path)


class Cert:
    """A certificate and its key as files (PEM)."""

    def __init__(self, cert_obj, key_obj, cert_path, key_path, chain=b""):
        self.obj = cert_obj
        self.key_obj = key_obj
        self.cert = cert_path
        self.key = key_path
        self.pem = cert_obj.public_bytes(serialization.Encoding.PEM)
        self.der = cert_obj.public_bytes(serialization.Encoding.DER)
        self.key_pem = _key_pem(key_obj)
        self.chain = chain
        self.serial = cert_obj.serial_number
        self.cn = cert_obj.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        _write(cert_path, self.pem + chain, 0o644)
        _write(key_path, self.key_pem)

    def write_to(self, cert_path, key_path):
        """This certificate and key over other files (the cert first, then the key)."""
        _write(cert_path, self.pem + self.chain, 0o644)
        _write(key_path, self.key_pem)

    def __repr__(self):
        return f"<Cert CN={self.cn} serial={self.serial:x} {self.cert}>"


def cert_info(der_or_pem):
    """(CN, serial) of a certificate given as DER or PEM bytes."""
    if der_or_pem.lstrip().startswith(b"-----BEGIN"):
        c = x509.load_pem_x509_certificate(der_or_pem)
    else:
        c = x509.load_der_x509_certificate(der_or_pem)
    cns = c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (cns[0].value if cns else None), c.serial_number


class CertFactory:
    """A private CA in `directory` and certificates signed by it."""

    def __init__(self, directory, name="ficus test CA"):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca_key = _new_key("ec")
        now = _now()
        self.ca_obj = (x509.CertificateBuilder()
                       .subject_name(_name(name)).issuer_name(_name(name))
                       .public_key(self.ca_key.public_key())
                       .serial_number(x509.random_serial_number())
                       .not_valid_before(now - DAY).not_valid_after(now + 30 * DAY)
                       .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                       .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                    key_encipherment=False, data_encipherment=False,
                                                    key_agreement=False, key_cert_sign=True, crl_sign=True,
                                                    encipher_only=False, decipher_only=False), critical=True)
                       .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()),
                                      critical=False)
                       .sign(self.ca_key, hashes.SHA256()))
        self.ca = os.path.join(directory, "ca.pem")
        self.ca_pem = self.ca_obj.public_bytes(serialization.Encoding.PEM)
        _write(self.ca, self.ca_pem, 0o644)

    def _issue(self, name, cn, dns, ips, kind, usage, not_before, not_after):
        key = _new_key(kind)
        now = _now()
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn)).issuer_name(self.ca_obj.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(not_before or now - DAY)
             .not_valid_after(not_after or now + 7 * DAY)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                            critical=False))
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        return Cert(cert, key, os.path.join(self.dir, f"{name}.crt"), os.path.join(self.dir, f"{name}.key"))

    def server(self, name, dns=("localhost",), ips=("127.0.0.1",), kind="ec", cn=None,
               not_before=None, not_after=None):
        """A server certificate `name`.crt / `name`.key; CN is the first DNS name unless given."""
        return self._issue(name, cn or (dns[0] if dns else name), list(dns), list(ips), kind,
                           ExtendedKeyUsageOID.SERVER_AUTH, not_before, not_after)

    def expired(self, name, dns=("localhost",), ips=("127.0.0.1",), kind="ec"):
        """Valid for names and CA, but its notAfter was yesterday."""
        now = _now()
        return self.server(name, dns, ips, kind, not_before=now - 10 * DAY, not_after=now - DAY)

    def ocsp_response(self, cert, path, status="good"):
        """A DER OCSP response for `cert` ("good" or "revoked"), signed by the CA, valid for a day."""
        from cryptography.x509 import ocsp
        now = _now()
        st = ocsp.OCSPCertStatus.GOOD if status == "good" else ocsp.OCSPCertStatus.REVOKED
        b = (ocsp.OCSPResponseBuilder()
             .add_response(cert.obj, self.ca_obj, hashes.SHA1(), st, now - DAY / 24, now + DAY,
                           now - DAY if st == ocsp.OCSPCertStatus.REVOKED else None,
                           x509.ReasonFlags.key_compromise if st == ocsp.OCSPCertStatus.REVOKED else None)
             .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca_obj))
        der = b.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        _write(path, der, 0o644)
        return path

    def client(self, name, cn):
        """A client certificate for mutual TLS (CN = cn)."""
        return self._issue(name, cn, [], [], "ec", ExtendedKeyUsageOID.CLIENT_AUTH, None, None)


# --------------------------------------------------------------------------
# python ssl clients


def client_context(ca=None, verify=True, min_version=None, max_version=None, cert=None, legacy=False,
                   tickets=True, alpn=None):
    """An ssl.SSLContext for a test client. `cert` is a Cert (mutual TLS); `legacy` allows
    TLS 1.0/1.1 on our side (security level 0) so that only the server can refuse them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if legacy:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    if not tickets:
        ctx.options |= ssl.OP_NO_TICKET
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


class TlsClient(fxtest.RawClient):
    """fxtest.RawClient over TLS: the handshake happens in the constructor
    (ssl.SSLError / OSError when it fails)."""

    def __init__(self, port, ctx, server_hostname="localhost", host="127.0.0.1", timeout=5.0, session=None):
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname, session=session)
        except BaseException:
            raw.close()
            raise
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def _fill(self, deadline, what):
        # a peer that closes without close_notify, or sends an alert, ends the stream like a reset
        try:
            return super()._fill(deadline, what)
        except ssl.SSLError:
            self.eof = True
            self.reset = True
            return False

    @property
    def version(self):
        return self.sock.version()

    @property
    def cipher(self):
        c = self.sock.cipher()
        return c[0] if c else None

    @property
    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)

    @property
    def alpn(self):
        return self.sock.selected_alpn_protocol()

    @property
    def session(self):
        return self.sock.session

    @property
    def session_reused(self):
        return self.sock.session_reused


def https_fetch(port, ctx, method="GET", target="/", headers=None, body=None, host="test.local",
                server_hostname="localhost", timeout=5.0):
    """One request on a fresh TLS connection; returns the fxtest.Response."""
    c = TlsClient(port, ctx, server_hostname=server_hostname, timeout=timeout)
    try:
        c.send(fxtest.build_request(method, target, headers, body, host=host))
        return c.read_response(timeout, method=method)
    finally:
        c.close()


def client_hello(server_hostname="localhost"):
    """The bytes a python TLS client sends first (one ClientHello record)."""
    ctx = client_context(verify=False)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    data = outgoing.read()
    if len(data) < 100 or data[0] != 0x16:
        raise AssertionError(f"not a ClientHello: {data[:16]!r}")
    return data


def handshake_error(port, ctx, server_hostname="localhost", timeout=5.0):
    """None when a TLS handshake with `ctx` succeeds, else the error (ssl.SSLError, OSError)."""
    try:
        c = TlsClient(port, ctx, server_hostname=server_hostname, timeout=timeout)
    except (ssl.SSLError, OSError) as e:
        return e
    c.close()
    return None


# --------------------------------------------------------------------------
# command-line clients


class SClientResult:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.leaf_pem = None
        start = self.out.find("-----BEGIN CERTIFICATE-----")
        end = self.out.find("-----END CERTIFICATE-----", start)
        if start >= 0 and end > start:
            self.leaf_pem = self.out[start:end + len("-----END CERTIFICATE-----")].encode() + b"\n"
        self.protocol = None
        for line in self.out.splitlines():
            s = line.strip()
            if s.startswith("Protocol") and ":" in s:
                self.protocol = s.split(":", 1)[1].strip()
            elif s.startswith("New, ") and ", Cipher is " in s and self.protocol is None:
                self.protocol = s.split(",")[1].strip()
        self.verify_ok = "Verify return code: 0 (ok)" in self.out
        # with -status: "OCSP Response Status: successful (0x0)" and "Cert Status: good", or
        # "OCSP response: no response sent"
        self.ocsp_status = None
        self.ocsp_cert_status = None
        for line in self.out.splitlines():
            s = line.strip()
            if s.startswith("OCSP Response Status:"):
                self.ocsp_status = s.split(":", 1)[1].strip().split()[0]
            elif s.startswith("Cert Status:"):
                self.ocsp_cert_status = s.split(":", 1)[1].strip()
            elif s == "OCSP response: no response sent":
                self.ocsp_status = "none"

    @property
    def leaf(self):
        """(CN, serial) of the certificate the server sent, or None."""
        return cert_info(self.leaf_pem) if self.leaf_pem else None

    def __repr__(self):
        return (f"<s_client rc={self.returncode} protocol={self.protocol} leaf={self.leaf} "
                f"ocsp={self.ocsp_status}/{self.ocsp_cert_status}\n"
                f"stderr: {fxtest.tail(self.err, 8)}\nstdout: {fxtest.tail(self.out, 12)}>")


def s_client(port, servername=None, ca=None, extra=(), timeout=10):
    """`openssl s_client -connect 127.0.0.1:PORT` with stdin closed (it handshakes and quits)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}"]
    if servername:
        argv += ["-servername", servername]
    else:
        argv += ["-noservername"]
    if ca:
        argv += ["-CAfile", ca]
    argv += list(extra)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    return SClientResult(p)


def curl(url, ca=None, resolve=(), extra=(), timeout=20):
    """curl -sS URL with --cacert and --resolve host:port:addr; (returncode, stdout, stderr).
    -w appends a last line `HTTP_CODE SSL_VERIFY_RESULT`."""
    argv = ["curl", "-sS", "--max-time", str(timeout), "-w", "\n%{http_code} %{ssl_verify_result}"]
    if ca:
        argv += ["--cacert", ca]
    for r in resolve:
        argv += ["--resolve", r]
    argv += list(extra) + [url]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10)
    return p.returncode, p.stdout, p.stderr


def wait_closed_raw(sock, timeout):
    """Reads a plain socket until EOF/RST: (closed, seconds, bytes read)."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    got = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, time.monotonic() - t0, bytes(got)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False, time.monotonic() - t0, bytes(got)
        except (ConnectionResetError, BrokenPipeError):
            return True, time.monotonic() - t0, bytes(got)
        if not data:
            return True, time.monotonic() - t0, bytes(got)
        got += data
