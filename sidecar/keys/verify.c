/* verify.c: peer chain, name and policy checks (see verify.h). */
#include "verify.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* names: a leaf's SPIFFE ID and DNS SANs, malloc'd. */
typedef struct {
  char *spiffe;
  char *dns[KH_MAX_DNS_NAMES];
  size_t ndns;
} names;

static void names_get(X509 *leaf, names *n) {
  kh_x509_names(leaf, &n->spiffe, n->dns, &n->ndns, KH_MAX_DNS_NAMES);
}

static void names_free(names *n) {
  free(n->spiffe);
  for (size_t i = 0; i < n->ndns; i++) free(n->dns[i]);
  n->spiffe = NULL;
  n->ndns = 0;
}

void kh_verified_peer_free(kh_verified_peer *p) {
  if (p == NULL) return;
  free(p->spiffe_id);
  for (size_t i = 0; i < p->dns_count; i++) free(p->dns[i]);
  memset(p, 0, sizeof(*p));
}

int kh_x509_primary_name(X509 *leaf, char *out, size_t len) {
  names n;
  names_get(leaf, &n);
  int is_spiffe = n.spiffe != NULL;
  snprintf(out, len, "%s", n.spiffe ? n.spiffe : n.ndns ? n.dns[0] : "");
  names_free(&n);
  return is_spiffe;
}

static const char *leaf_label(X509 *leaf, char *buf, size_t len) {
  kh_x509_primary_name(leaf, buf, len);
  if (buf[0] == '\0') snprintf(buf, len, "(no SPIFFE ID or DNS name)");
  return buf;
}

static int is_ip_literal(const char *s) {
  uint8_t buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* peer_matches: does |n| carry |name| (spiffe:// URI SAN or DNS SAN)? */
static int peer_matches(const names *n, const char *name) {
  if (strncmp(name, "spiffe://", 9) == 0) return n->spiffe != NULL && strcmp(n->spiffe, name) == 0;
  for (size_t i = 0; i < n->ndns; i++) {
    if (strcasecmp(n->dns[i], name) == 0) return 1;
  }
  return 0;
}

static uint8_t alert_for_x509_error(int e) {
  switch (e) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return SSL_AD_UNKNOWN_CA;
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID: return SSL_AD_CERTIFICATE_EXPIRED;
    default: return SSL_AD_BAD_CERTIFICATE;
  }
}

/* check_path: the chain must lead to the trust bundle. */
static int check_path(const kh_verify_params *p, STACK_OF(X509) * chain, uint8_t *out_alert,
                      kh_error *err) {
  X509 *leaf = sk_X509_value(chain, 0);
  X509_STORE_CTX *sctx = X509_STORE_CTX_new();
  int ok = sctx != NULL && p->trust != NULL && X509_STORE_CTX_init(sctx, p->trust, leaf, chain) &&
           X509_STORE_CTX_set_default(
               sctx, p->peer_role == KH_PEER_IS_SERVER ? "ssl_server" : "ssl_client");
  if (ok && p->at != 0) X509_STORE_CTX_set_time(sctx, 0, p->at);
  if (ok) ok = X509_verify_cert(sctx) == 1;
  if (!ok) {
    int xe = sctx ? X509_STORE_CTX_get_error(sctx) : X509_V_ERR_OUT_OF_MEM;
    if (xe == X509_V_OK) xe = X509_V_ERR_UNSPECIFIED;
    *out_alert = alert_for_x509_error(xe);
    kh_err(err, KH_ERR_PERMISSION_DENIED, "peer certificate rejected: %s",
           X509_verify_cert_error_string(xe));
  }
  X509_STORE_CTX_free(sctx);
  ERR_clear_error();
  return ok;
}

/* check_name: expected peers, else the server name. */
static int check_name(const kh_verify_params *p, X509 *leaf, const names *n, uint8_t *out_alert,
                      kh_error *err) {
  char label[300];
  if (p->expect_peer_count > 0) {
    for (size_t i = 0; i < p->expect_peer_count; i++) {
      if (peer_matches(n, p->expect_peers[i])) return 1;
    }
    *out_alert = SSL_AD_BAD_CERTIFICATE;
    return kh_err(err, KH_ERR_PERMISSION_DENIED, "peer %.160s is not one of the %zu expected peers",
                  leaf_label(leaf, label, sizeof(label)), p->expect_peer_count);
  }
  if (p->server_name == NULL || p->server_name[0] == '\0') return 1;
  int ok = is_ip_literal(p->server_name)
               ? X509_check_ip_asc(leaf, p->server_name, 0) == 1
               : X509_check_host(leaf, p->server_name, strlen(p->server_name), 0, NULL) == 1;
  ERR_clear_error();
  if (ok) return 1;
  *out_alert = SSL_AD_BAD_CERTIFICATE;
  return kh_err(err, KH_ERR_PERMISSION_DENIED,
                "peer certificate (%.100s) does not match server name %.100s",
                leaf_label(leaf, label, sizeof(label)), p->server_name);
}

/* check_policy: the grant's peer lists. */
static int check_policy(const kh_verify_params *p, X509 *leaf, const names *n, uint8_t *out_alert,
                        kh_error *err) {
  if (p->peer_check == NULL || kh_peer_check_allows(p->peer_check, n->spiffe, n->dns, n->ndns))
    return 1;
  char label[300];
  *out_alert = SSL_AD_ACCESS_DENIED;
  return kh_err(err, KH_ERR_PERMISSION_DENIED, "peer %.120s is not allowed by the policy for %.60s",
                leaf_label(leaf, label, sizeof(label)), p->policy_name ? p->policy_name : "");
}

int kh_verify_peer_check(const kh_verify_params *p, X509 *leaf, uint8_t *out_alert, kh_error *err) {
  names n;
  names_get(leaf, &n);
  int ok = check_policy(p, leaf, &n, out_alert, err);
  names_free(&n);
  return ok;
}

int kh_verify_chain(const kh_verify_params *p, STACK_OF(X509) * chain, kh_verified_peer *out,
                    uint8_t *out_alert, kh_error *err) {
  if (out != NULL) memset(out, 0, sizeof(*out));
  if (chain == NULL || sk_X509_num(chain) == 0) {
    *out_alert = SSL_AD_CERTIFICATE_REQUIRED;
    return kh_err(err, KH_ERR_PERMISSION_DENIED, "peer sent no certificate");
  }
  if (!check_path(p, chain, out_alert, err)) return 0;
  X509 *leaf = sk_X509_value(chain, 0);
  names n;
  names_get(leaf, &n);
  int ok = check_name(p, leaf, &n, out_alert, err) && check_policy(p, leaf, &n, out_alert, err);
  unsigned fp_len = 0;
  if (ok && out != NULL) {
    if (!X509_digest(leaf, EVP_sha256(), out->fingerprint, &fp_len) || fp_len != KH_SHA256_LEN) {
      ERR_clear_error();
      *out_alert = SSL_AD_INTERNAL_ERROR;
      ok = kh_err(err, KH_ERR_INTERNAL, "cannot hash the peer certificate");
    } else {
      out->spiffe_id = n.spiffe;
      memcpy(out->dns, n.dns, n.ndns * sizeof(n.dns[0]));
      out->dns_count = n.ndns;
      n.spiffe = NULL; /* moved to |out| */
      n.ndns = 0;
    }
  }
  names_free(&n);
  return ok;
}

int kh_verify_der(const kh_verify_params *p, const uint8_t *const *certs, const size_t *cert_lens,
                  size_t n, kh_verified_peer *out, uint8_t *out_alert, kh_error *err) {
  if (out != NULL) memset(out, 0, sizeof(*out));
  if (n > KH_MAX_PEER_CHAIN) {
    *out_alert = SSL_AD_DECODE_ERROR;
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "peer chain of %zu certificates (at most %d)", n,
                  KH_MAX_PEER_CHAIN);
  }
  STACK_OF(X509) *chain = sk_X509_new_null();
  if (chain == NULL) {
    *out_alert = SSL_AD_INTERNAL_ERROR;
    return kh_err(err, KH_ERR_NOMEM, "out of memory");
  }
  int ok = 1;
  for (size_t i = 0; ok && i < n; i++) {
    if (cert_lens[i] > KH_MAX_PEER_CERT) {
      *out_alert = SSL_AD_DECODE_ERROR;
      ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "peer certificate %zu is larger than %d bytes", i,
                  KH_MAX_PEER_CERT);
      break;
    }
    /* d2i_X509 reads at most |len| bytes; it must read them all. */
    const uint8_t *der = certs[i];
    X509 *x = d2i_X509(NULL, &der, (long)cert_lens[i]);
    if (x == NULL || (size_t)(der - certs[i]) != cert_lens[i]) {
      X509_free(x);
      *out_alert = SSL_AD_BAD_CERTIFICATE;
      ok = kh_err(err, KH_ERR_INVALID_ARGUMENT, "peer certificate %zu is not a DER certificate", i);
    } else if (!sk_X509_push(chain, x)) {
      X509_free(x);
      *out_alert = SSL_AD_INTERNAL_ERROR;
      ok = kh_err(err, KH_ERR_NOMEM, "out of memory");
    }
  }
  ERR_clear_error();
  if (ok) ok = kh_verify_chain(p, chain, out, out_alert, err);
  sk_X509_pop_free(chain, X509_free);
  return ok;
}
