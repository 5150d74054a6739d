#!/usr/bin/python3
"""Writes the seed corpus of tests/fuzz/fuzz_jwt.c into fuzz/ from the interop
vectors (interop/tokens.txt, interop/jwks.json) and a few hand-made inputs.
The first byte of a seed selects the harness mode (see fuzz_jwt.c):
0 token, 2 JWK Set, 3 PEM public key, 4 claims JSON for minting.

    /usr/bin/python3 tests/data/jwt/make_fuzz_seeds.py
"""
import json
import os

from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fuzz")
os.makedirs(OUT, exist_ok=True)
for f in os.listdir(OUT):
    os.unlink(os.path.join(OUT, f))


def seed(name, mode, body):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(bytes([mode]) + (body.encode() if isinstance(body, str) else body))


for line in open(os.path.join(HERE, "interop", "tokens.txt")):
    if line.startswith("#") or not line.strip():
        continue
    want, name, tok = line.split()
    seed("token-" + name, 0, tok)

jwks = json.load(open(os.path.join(HERE, "interop", "jwks.json")))
seed("jwks-interop", 2, json.dumps(jwks, separators=(",", ":")))
for k in jwks["keys"]:
    seed("jwks-" + k["kid"], 2, json.dumps({"keys": [k]}, separators=(",", ":")))
seed("jwks-enc-and-okp", 2, '{"keys":[{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"},'
     '{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}')
for kid, algo in (("rsa", RSAAlgorithm), ("ec256", ECAlgorithm), ("ec384", ECAlgorithm)):
    k = next(k for k in jwks["keys"] if k["kid"] == kid)
    pem = algo.from_jwk(json.dumps(k)).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    seed("pem-" + kid, 3, pem)
seed("pem-garbage", 3, "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
seed("claims-good", 4, '{"iss":"https://fuzz.example.com","aud":["fuzz"],"sub":"1",'
     '"roles":["a","b"],"org":{"id":7}}')
seed("claims-types", 4, '{"iss":"https://fuzz.example.com","aud":"fuzz","exp":"soon"}')
