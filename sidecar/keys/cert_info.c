/* cert_info.c: a certificate's validity and serial, read once per load. */
#include "cert_info.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/mem.h>

/* posix_time: |t| as seconds since the epoch (ASN1_TIME_diff from 1970). */
static int posix_time(const ASN1_TIME *t, int64_t *out) {
  ASN1_TIME *epoch = ASN1_TIME_set(NULL, 0);
  int days = 0, secs = 0;
  int ok = epoch != NULL && t != NULL && ASN1_TIME_diff(&days, &secs, epoch, t);
  ASN1_TIME_free(epoch);
  if (ok) *out = (int64_t)days * 86400 + secs;
  return ok;
}

int kh_cert_info_get(X509 *cert, kh_cert_info *out) {
  memset(out, 0, sizeof(*out));
  snprintf(out->serial, sizeof(out->serial), "?");
  BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), NULL);
  char *hex = bn ? BN_bn2hex(bn) : NULL;
  if (hex != NULL) snprintf(out->serial, sizeof(out->serial), "%s", hex);
  for (char *p = out->serial; *p; p++) *p = (char)toupper((unsigned char)*p);
  OPENSSL_free(hex);
  BN_free(bn);
  if (!posix_time(X509_get0_notBefore(cert), &out->not_before) ||
      !posix_time(X509_get0_notAfter(cert), &out->not_after))
    return 0;
  time_t t = (time_t)out->not_after;
  struct tm tm;
  if (gmtime_r(&t, &tm) != NULL)
    strftime(out->not_after_text, sizeof(out->not_after_text), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return 1;
}

int kh_cert_valid_at(const kh_cert_info *c, int64_t now) {
  return now >= c->not_before && now <= c->not_after;
}
