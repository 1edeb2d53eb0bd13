// tls_secrets.cc: fills a kh_traffic_keys from BoringSSL, wrapping
// bssl::SSL_get_traffic_secrets (BoringSSL exposes it only in C++). This is
// copy 1 of kh_traffic.h's list.
#include "tls_secrets.h"

#include <string.h>

#include <openssl/ssl.h>

#include "kh_secret.h"

extern "C" int kh_ssl_traffic_keys(const SSL *ssl, kh_traffic_keys *out, kh_error *err) {
  kh_wipe(out, sizeof(*out));
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  int suite = c ? kh_suite_from_iana(SSL_CIPHER_get_protocol_id(c)) : -1;
  if (suite < 0) return kh_err(err, KH_ERR_INTERNAL, "unknown negotiated ciphersuite");
  bssl::Span<const uint8_t> rd, wr;
  if (!bssl::SSL_get_traffic_secrets(ssl, &rd, &wr) || rd.size() != wr.size() ||
      rd.size() != kh_suite_secret_len(suite) || rd.size() > sizeof(out->in_secret))
    return kh_err(err, KH_ERR_INTERNAL, "cannot read traffic secrets");
  out->tls_version = (uint16_t)SSL_version(ssl);
  out->suite = (kh_suite)suite;
  out->secret_len = rd.size();
  memcpy(out->in_secret, rd.data(), rd.size());
  memcpy(out->out_secret, wr.data(), wr.size());
  out->in_sequence = SSL_get_read_sequence(ssl);
  out->out_sequence = SSL_get_write_sequence(ssl);
  return 1;
}
