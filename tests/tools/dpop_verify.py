#!/usr/bin/python3
"""dpop_verify.py PROOF_FILE JKT HTM HTU [NONCE] [ATH_OF]: checks a DPoP
proof (RFC 9449) with an independent JOSE library (Debian's
python3-jwcrypto): the signature verifies under the public key in the
header's jwk, typ is dpop+jwt, alg is asymmetric, the claims are the
expected ones (jti unique-looking, iat now, ath = b64url(SHA-256(token))),
and the RFC 7638 thumbprint of that jwk equals JKT. Prints the jti."""
import base64, hashlib, json, sys, time

from jwcrypto import jwk, jws

proof = open(sys.argv[1]).read().strip()
jkt, htm, htu = sys.argv[2], sys.argv[3], sys.argv[4]
nonce = sys.argv[5] if len(sys.argv) > 5 and sys.argv[5] else None
ath_of = sys.argv[6] if len(sys.argv) > 6 else None

header_b64 = proof.split(".")[0]
header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
assert header["typ"] == "dpop+jwt", header
assert header["alg"] in ("ES256", "EdDSA"), header
assert "d" not in header["jwk"], "private key material in the header"
key = jwk.JWK(**header["jwk"])
token = jws.JWS()
token.deserialize(proof)
token.verify(key, alg=header["alg"])  # raises if the signature does not verify
claims = json.loads(token.payload)
assert claims["htm"] == htm and claims["htu"] == htu, claims
assert abs(claims["iat"] - time.time()) < 60, claims
assert len(claims["jti"]) >= 16, claims
assert claims.get("nonce") == nonce, claims
if ath_of is not None:
    want = base64.urlsafe_b64encode(hashlib.sha256(ath_of.encode()).digest()).rstrip(b"=").decode()
    assert claims["ath"] == want, claims
else:
    assert "ath" not in claims, claims
assert key.thumbprint() == jkt, (key.thumbprint(), jkt)
print(claims["jti"])
