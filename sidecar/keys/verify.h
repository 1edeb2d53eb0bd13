/* verify.h: peer certificate verification, for every protocol that meets a
 * peer by its X.509 chain: the TLS engine's verify callback now, S2A v2's
 * ValidatePeerCertificateChain and the secure channel's identity binding
 * next.
 *
 * A peer passes if (1) its chain leads to the local identity's trust bundle
 * (for the peer's role: "ssl_server" or "ssl_client" purpose), (2) on the
 * client side, its leaf carries one of the expected peer names (SPIFFE ID
 * in a URI SAN, hostname in a DNS SAN; any one suffices) or, with none
 * expected, the server name (DNS name or IP literal against the DNS/IP
 * SANs), and (3) the grant's kh_peer_check allows its SPIFFE ID / DNS SANs.
 * On failure the reason is in |err| (KH_ERR_PERMISSION_DENIED; the texts
 * are the ones keyholdd has always logged, tests grep them) and
 * |*out_alert| is the TLS alert to send. BoringSSL only. */
#ifndef KH_VERIFY_H
#define KH_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <openssl/base.h>

#include "identity.h"
#include "kh_error.h"
#include "kh_tls.h"
#include "peer_check.h"

#define KH_MAX_PEER_CHAIN 16   /* certificates in a DER-form chain */
#define KH_MAX_PEER_CERT 65536 /* bytes of one DER certificate */

typedef enum { KH_PEER_IS_SERVER = 0, KH_PEER_IS_CLIENT = 1 } kh_peer_role;

typedef struct {
  X509_STORE *trust; /* the local identity's trust bundle (kh_identity_trust) */
  kh_peer_role peer_role;
  /* Name expectations (a client verifying its server; leave empty
   * otherwise): any one of |expect_peers|, else |server_name| if set. */
  char *const *expect_peers;
  size_t expect_peer_count;
  const char *server_name;
  const kh_peer_check *peer_check; /* NULL: any verified peer */
  const char *policy_name;         /* the local identity as the policy names it, for messages */
  time_t at;                       /* verification time; 0: now */
} kh_verify_params;

/* The peer that passed. kh_verified_peer_free releases the names. */
typedef struct {
  char *spiffe_id; /* first spiffe:// URI SAN, or NULL */
  char *dns[KH_MAX_DNS_NAMES];
  size_t dns_count;
  uint8_t fingerprint[KH_SHA256_LEN]; /* SHA-256 of the leaf's DER */
} kh_verified_peer;

void kh_verified_peer_free(kh_verified_peer *p);

/* kh_verify_chain verifies |chain| (leaf first, as the peer sent it). On
 * success fills |out| (NULL: not wanted). An empty or NULL chain fails with
 * "peer sent no certificate" and certificate_required. */
KH_MUST_USE int kh_verify_chain(const kh_verify_params *p, STACK_OF(X509) * chain,
                                kh_verified_peer *out, uint8_t *out_alert, kh_error *err);

/* kh_verify_der is kh_verify_chain for a chain given as DER certificates
 * (untrusted bytes: S2A v2 hands them in a request): |n| certificates, at
 * most KH_MAX_PEER_CHAIN, each at most KH_MAX_PEER_CERT bytes and exactly
 * one certificate, else "peer certificate N is not a DER certificate" with
 * bad_certificate (decode_error for a count or size beyond the limits). */
KH_MUST_USE int kh_verify_der(const kh_verify_params *p, const uint8_t *const *certs,
                              const size_t *cert_lens, size_t n, kh_verified_peer *out,
                              uint8_t *out_alert, kh_error *err);

/* kh_verify_peer_check applies only step (3) to |leaf|: for a resumed TLS
 * session, whose chain was verified when it was made but whose policy may
 * have changed since. */
KH_MUST_USE int kh_verify_peer_check(const kh_verify_params *p, X509 *leaf, uint8_t *out_alert,
                                     kh_error *err);

/* kh_x509_primary_name writes |leaf|'s SPIFFE ID, else its first DNS SAN,
 * else "", and returns whether it was a SPIFFE ID. */
int kh_x509_primary_name(X509 *leaf, char *out, size_t len);

#endif /* KH_VERIFY_H */
