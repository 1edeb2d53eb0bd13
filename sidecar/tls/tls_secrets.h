/* tls_secrets.h: C access to BoringSSL's C++-only bssl::SSL_get_traffic_secrets. */
#ifndef KH_TLS_SECRETS_H
#define KH_TLS_SECRETS_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/base.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Copies the current read and write traffic secrets of |ssl| (TLS 1.3) into
 * the buffers (each |cap| bytes) and sets |*out_len|. Returns 1/0. */
int kh_ssl_traffic_secrets(const SSL *ssl, uint8_t *out_read, uint8_t *out_write, size_t cap,
                           size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
