/* s2a_identity.h: the name an S2A Identity message carries, for v1 and v2
 * alike (their Identity messages have the same fields and numbers). Only
 * SPIFFE IDs and hostnames name a certificate. */
#ifndef KH_S2A_IDENTITY_H
#define KH_S2A_IDENTITY_H

#include <string.h>

#include "kh_error.h"

/* The identity_oneof field numbers, the same in both versions. */
enum { KH_S2A_ID_UNSET = 0, KH_S2A_ID_SPIFFE = 1, KH_S2A_ID_HOSTNAME = 2 };

/* kh_s2a_identity_name: the name of an Identity whose oneof case is |kind|
 * ("" when unset), or NULL with |err| set for an invalid or unsupported one. */
KH_MUST_USE static inline const char *kh_s2a_identity_name(int kind, const char *spiffe_id,
                                                           const char *hostname, kh_error *err) {
  switch (kind) {
    case KH_S2A_ID_SPIFFE:
      if (strncmp(spiffe_id, "spiffe://", 9) != 0) {
        kh_err(err, KH_ERR_INVALID_ARGUMENT, "spiffe_id '%.200s' does not start with spiffe://",
               spiffe_id);
        return NULL;
      }
      return spiffe_id;
    case KH_S2A_ID_HOSTNAME:
      if (hostname[0] == '\0' || strncmp(hostname, "spiffe://", 9) == 0) {
        kh_err(err, KH_ERR_INVALID_ARGUMENT, "invalid hostname identity");
        return NULL;
      }
      return hostname;
    case KH_S2A_ID_UNSET: return "";
    default:
      kh_err(err, KH_ERR_INVALID_ARGUMENT,
             "identity kind %d is not supported (use spiffe_id or hostname)", kind);
      return NULL;
  }
}

#endif /* KH_S2A_IDENTITY_H */
