#!/usr/bin/python3
"""Writes jwks.json and tokens.txt: tokens signed by PyJWT (an implementation
independent of ficus, libjwt and our OpenSSL path) for test_jwt's interop case.

Fresh RSA/EC keys are generated on every run and only their public halves are
written; the private keys are never stored. The HMAC keys are test-only
strings. Run with Debian's interpreter (python3-jwt, python3-cryptography):

    /usr/bin/python3 tests/data/jwt/interop/make.py
"""
import json
import os

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HERE = os.path.dirname(os.path.abspath(__file__))
ISS, AUD, NOW, LATER = "https://interop.example.com", "interop", 1700000000, 4102444800
HS256 = b"interop-test-only-hs256-secret-32+bytes!"
HS512 = b"interop-test-only-hs512-secret-that-is-at-least-sixty-four-bytes-long!!"

rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ec256 = ec.generate_private_key(ec.SECP256R1())
ec384 = ec.generate_private_key(ec.SECP384R1())


def b64(data):
    return jwt.utils.base64url_encode(data).decode()


def pub_jwk(key, algo, kid, alg):
    d = json.loads(algo.to_jwk(key.public_key()))
    d.update(kid=kid, alg=alg, use="sig")
    return d


keys = [
    pub_jwk(rsa_key, RSAAlgorithm, "rsa", "RS256"),
    pub_jwk(rsa_key, RSAAlgorithm, "rsa384", "RS384"),
    pub_jwk(rsa_key, RSAAlgorithm, "rsa512", "RS512"),
    pub_jwk(rsa_key, RSAAlgorithm, "ps", "PS256"),
    pub_jwk(ec256, ECAlgorithm, "ec256", "ES256"),
    pub_jwk(ec384, ECAlgorithm, "ec384", "ES384"),
    {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HS256)},
    {"kty": "oct", "kid": "hs512", "alg": "HS512", "k": b64(HS512)},
]
with open(os.path.join(HERE, "jwks.json"), "w") as f:
    json.dump({"keys": keys}, f, indent=1)
    f.write("\n")

signing = {"rsa": rsa_key, "rsa384": rsa_key, "rsa512": rsa_key, "ps": rsa_key,
           "ec256": ec256, "ec384": ec384, "hs": HS256, "hs512": HS512}
alg_of = {k["kid"]: k["alg"] for k in keys}
claims = {"iss": ISS, "aud": AUD, "sub": "interop-user", "iat": NOW, "exp": LATER,
          "roles": ["reader", "writer"]}

lines = ["# <expected reason> <name> <token>, verified at now = 1700000000, skew 30 s"]
for kid in signing:
    for typ in ("JWT", "at+jwt"):
        tok = jwt.encode(claims, signing[kid], algorithm=alg_of[kid],
                         headers={"kid": kid, "typ": typ})
        lines.append(f"ok {alg_of[kid]}-{typ} {tok}")
lines.append("ok RS256-array-aud " + jwt.encode(dict(claims, aud=["x", AUD]), rsa_key,
                                                 algorithm="RS256", headers={"kid": "rsa"}))
lines.append("expired ES256-expired " + jwt.encode(dict(claims, exp=NOW - 31), ec256,
                                                   algorithm="ES256", headers={"kid": "ec256"}))
lines.append("bad_audience PS256-other-aud " + jwt.encode(dict(claims, aud="other"), rsa_key,
                                                          algorithm="PS256", headers={"kid": "ps"}))
lines.append("not_yet_valid HS256-nbf " + jwt.encode(dict(claims, nbf=NOW + 60), HS256,
                                                     algorithm="HS256", headers={"kid": "hs"}))
lines.append("alg_mismatch none " + jwt.encode(claims, None, algorithm="none",
                                               headers={"kid": "hs"}))
lines.append("malformed exp-float " + jwt.encode(dict(claims, exp=LATER + 0.5), HS256,
                                                 algorithm="HS256", headers={"kid": "hs"}))
with open(os.path.join(HERE, "tokens.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
