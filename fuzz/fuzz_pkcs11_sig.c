/* fuzz_pkcs11_sig: what a PKCS#11 token answers, read the way the key
 * backend reads it: CKA_EC_PARAMS (kh_p11_ec_type) and an ECDSA signature
 * as r || s (kh_p11_ecdsa_der, P-256 and P-384). A DER signature that comes
 * out must parse back to the same r and s. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ecdsa.h>

#include "pkcs11_sig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  kh_error err;
  kh_key_type t;
  (void)kh_p11_ec_type(data, size, &t, &err);
  static const kh_key_type types[] = {KH_KEY_ECDSA_P256, KH_KEY_ECDSA_P384, KH_KEY_RSA};
  for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
    uint8_t der[KH_MAX_SIGNATURE];
    size_t len = 0;
    if (!kh_p11_ecdsa_der(types[i], data, size, der, &len, sizeof(der), &err)) continue;
    ECDSA_SIG *sig = ECDSA_SIG_from_bytes(der, len);
    if (sig == NULL) abort();
    uint8_t raw[96];
    size_t half = size / 2;
    if (!BN_bn2bin_padded(raw, half, sig->r) || !BN_bn2bin_padded(raw + half, half, sig->s) ||
        memcmp(raw, data, size) != 0)
      abort();
    ECDSA_SIG_free(sig);
  }
  return 0;
}
