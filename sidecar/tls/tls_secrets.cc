// tls_secrets.cc: a C wrapper over
// bssl::SSL_get_traffic_secrets (BoringSSL exposes it only in C++).
#include "tls_secrets.h"

#include <string.h>

#include <openssl/ssl.h>

extern "C" int kh_ssl_traffic_secrets(const SSL *ssl, uint8_t *out_read, uint8_t *out_write,
                                      size_t cap, size_t *out_len) {
  bssl::Span<const uint8_t> rd, wr;
  if (!bssl::SSL_get_traffic_secrets(ssl, &rd, &wr)) return 0;
  if (rd.size() != wr.size() || rd.size() > cap || rd.empty()) return 0;
  memcpy(out_read, rd.data(), rd.size());
  memcpy(out_write, wr.data(), wr.size());
  *out_len = rd.size();
  return 1;
}
