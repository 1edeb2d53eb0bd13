#!/usr/bin/python3
"""expired_cert.py CA_CRT CA_KEY LEAF_KEY SPIFFE_ID OUT: a leaf for LEAF_KEY
(so it matches the identity's tls.key) whose validity ended in 2021."""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

ca_crt, ca_key, leaf_key, spiffe, out = sys.argv[1:6]
ca = x509.load_pem_x509_certificate(open(ca_crt, "rb").read())
cakey = serialization.load_pem_private_key(open(ca_key, "rb").read(), None)
key = serialization.load_pem_private_key(open(leaf_key, "rb").read(), None)
cert = (
    x509.CertificateBuilder()
    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")]))
    .issuer_name(ca.subject)
    .public_key(key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(datetime.datetime(2020, 1, 1))
    .not_valid_after(datetime.datetime(2021, 1, 1))
    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe)]), False)
    .sign(cakey, hashes.SHA256())
)
open(out, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
