/* tls_secrets.h: the traffic keys of a finished BoringSSL TLS 1.3
 * connection, through the C++-only bssl::SSL_get_traffic_secrets. */
#ifndef KH_TLS_SECRETS_H
#define KH_TLS_SECRETS_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/base.h>

#include "kh_error.h"
#include "kh_traffic.h"

#ifdef __cplusplus
extern "C" {
#endif

/* kh_ssl_traffic_keys fills |out| from |ssl|: version, negotiated suite,
 * the current read (in) and write (out) traffic secrets and the next record
 * sequence numbers. Returns 1, or 0 with |err| set and |out| wiped. */
KH_MUST_USE int kh_ssl_traffic_keys(const SSL *ssl, kh_traffic_keys *out, kh_error *err);

#ifdef __cplusplus
}
#endif

#endif
