/* fuzz_verify: peer verification's DER-bytes form (kh_verify_der, what S2A
 * v2's ValidatePeerCertificateChain hands in) on arbitrary bytes. The input
 * carries its own trust bundle, so seeds made from a test PKI keep reaching
 * the chain, name and policy checks:
 *   u8 flags          bit 0: the peer is a client; bit 1: expected peers;
 *                     bit 2: server name (bit 3: an IP literal); bit 4: a
 *                     peer check (trust domain example.org)
 *   u8 n_trust, then n_trust u16-length-prefixed DER CA certificates
 *   the rest: u16-length-prefixed DER certificates, the peer chain */
#include <stddef.h>
#include <stdint.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "kh_cursor.h"
#include "kh_log.h"
#include "verify.h"

#define MAX_TRUST 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  if (!init) {
    kh_log_set_level(KH_LOG_OFF);
    init = 1;
  }
  kh_cursor in, c;
  kh_cursor_init(&in, data, size);
  uint8_t flags, n_trust;
  if (!kh_cursor_u8(&in, &flags) || !kh_cursor_u8(&in, &n_trust) || n_trust > MAX_TRUST) return 0;
  X509_STORE *trust = X509_STORE_new();
  if (trust == NULL) return 0;
  for (uint8_t i = 0; i < n_trust; i++) {
    if (!kh_cursor_u16_prefixed(&in, &c)) break;
    const uint8_t *p = c.data;
    X509 *ca = d2i_X509(NULL, &p, (long)kh_cursor_left(&c));
    if (ca != NULL) (void)X509_STORE_add_cert(trust, ca);
    X509_free(ca);
  }
  ERR_clear_error();
  const uint8_t *certs[KH_MAX_PEER_CHAIN + 1];
  size_t lens[KH_MAX_PEER_CHAIN + 1], n = 0;
  while (n < KH_MAX_PEER_CHAIN + 1 && kh_cursor_u16_prefixed(&in, &c)) {
    certs[n] = c.data;
    lens[n++] = kh_cursor_left(&c);
  }
  static char *expect[] = {"spiffe://example.org/server", "localhost"};
  static char *tds[] = {"example.org"};
  static const kh_peer_check check = {.trust_domains = {tds, 1}};
  kh_verify_params p = {
      .trust = trust,
      .peer_role = (flags & 1) ? KH_PEER_IS_CLIENT : KH_PEER_IS_SERVER,
      .expect_peers = expect,
      .expect_peer_count = (flags & 2) ? 2 : 0,
      .server_name = (flags & 4) ? ((flags & 8) ? "127.0.0.1" : "localhost") : NULL,
      .peer_check = (flags & 16) ? &check : NULL,
      .policy_name = "fuzz",
  };
  kh_verified_peer peer;
  uint8_t alert = 0;
  kh_error err;
  int ok = kh_verify_der(&p, certs, lens, n, &peer, &alert, &err);
  if (ok && (n == 0 || peer.dns_count > KH_MAX_DNS_NAMES)) __builtin_trap();
  if (!ok && (alert == 0 || err.msg[0] == '\0')) __builtin_trap(); /* a refusal says why */
  if (ok) kh_verified_peer_free(&peer);
  X509_STORE_free(trust);
  return 0;
}
