/* pki.h: `keyhold init`: a development CA and two identities in the
 * identities layout, made with OpenSSL 3 libcrypto. For demos and tests only. */
#ifndef KH_PKI_H
#define KH_PKI_H

#include <stddef.h>

/* kh_pki_init writes DIR/ca.crt, DIR/ca.key and the identities
 * DIR/client (spiffe://example.org/client) and DIR/server
 * (spiffe://example.org/server, DNS localhost, IP 127.0.0.1), each with
 * tls.crt, tls.key (PKCS#8, mode 0600) and ca.crt. ECDSA P-256, 30 days.
 * Refuses to overwrite an existing identity. Returns 1/0 with |msg| set. */
int kh_pki_init(const char *dir, char *msg, size_t msg_len);

#endif
