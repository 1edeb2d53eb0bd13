/* cert_info.h: the facts about a certificate that logs, health and metrics
 * report: validity period and serial number. */
#ifndef KH_CERT_INFO_H
#define KH_CERT_INFO_H

#include <stdint.h>

#include <openssl/x509.h>

typedef struct {
  int64_t not_before, not_after; /* POSIX seconds */
  char serial[80];               /* hex, as `openssl x509 -serial` prints it */
  char not_after_text[32];       /* 2027-01-31T12:00:00Z */
} kh_cert_info;

/* kh_cert_info_get fills |out| from |cert|; 0 if a time cannot be read. */
int kh_cert_info_get(X509 *cert, kh_cert_info *out);

/* kh_cert_valid_at: is |now| within [not_before, not_after]? */
int kh_cert_valid_at(const kh_cert_info *c, int64_t now);

#endif /* KH_CERT_INFO_H */
