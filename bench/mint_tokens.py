"""bench/mint_tokens.py — keys and tokens for script/bench's JWT scenarios.

  python3 bench/mint_tokens.py DIR ISSUER AUDIENCE KID TTL_S NAME=COUNT...

Makes a fresh RSA 2048 key pair (DIR/rs256.pem, DIR/rs256.pub.pem) and, for
each NAME=COUNT, COUNT distinct RS256 tokens signed with it, one per line in
DIR/NAME.txt. Every token has the same claims as tests/bench/bench_jwt.c's
(iss, aud, sub, roles, scope, iat, exp) with its own `sub`, so no two tokens
of the run are equal. Needs python3-jwt and python3-cryptography (Debian's,
i.e. /usr/bin/python3); script/bench picks an interpreter that has them.
Signing is spread over all cores (about 0.5 ms per token on one core).
"""
import multiprocessing
import os
import sys
import time

import jwt  # python3-jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_key = None
_args = None


def _init(pem, args):
    global _key, _args
    _key = serialization.load_pem_private_key(pem, password=None)
    _args = args


def _mint(job):
    name, start, stop = job
    iss, aud, kid, now, ttl = _args
    return [jwt.encode({"iss": iss, "aud": aud, "sub": f"{name}-user-{i}",
                        "roles": ["reader", "writer"],
                        "scope": "documents:read documents:write",
                        "iat": now, "exp": now + ttl},
                       _key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})
            for i in range(start, stop)]


def main():
    if len(sys.argv) < 7:
        sys.exit(__doc__)
    out, iss, aud, kid, ttl = sys.argv[1:6]
    sets = [(n, int(c)) for n, _, c in (a.partition("=") for a in sys.argv[6:])]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    with open(os.path.join(out, "rs256.pem"), "wb") as f:
        f.write(pem)
    with open(os.path.join(out, "rs256.pub.pem"), "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    args = (iss, aud, kid, int(time.time()), int(ttl))
    chunk = 500
    with multiprocessing.Pool(os.cpu_count() or 1, _init, (pem, args)) as pool:
        for name, count in sets:
            jobs = [(name, s, min(s + chunk, count)) for s in range(0, count, chunk)]
            toks = [t for part in pool.map(_mint, jobs) for t in part]
            if len(set(toks)) != count:
                sys.exit(f"mint_tokens: {name}: {len(set(toks))} distinct tokens, wanted {count}")
            with open(os.path.join(out, f"{name}.txt"), "w") as f:
                f.write("\n".join(toks) + "\n")


if __name__ == "__main__":
    main()
