/* fuzz_noise: the Noise engine fed a peer's handshake messages. The first
 * input byte picks the protocol and the role we play; the rest is split
 * into messages by a 2-byte big-endian length each. Where it is our turn we
 * write (with a fixed payload), so the fuzzer reaches every message of the
 * pattern (a write fails only on a peer's low-order key); a message that fails must leave the state
 * dead (every later call refused), and a finished handshake must split. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "noise.h"

static const char *const k_names[] = {
    "Noise_XX_25519_ChaChaPoly_SHA256",
    "Noise_IK_25519_ChaChaPoly_SHA256",
    "Noise_NN_25519_AESGCM_SHA512",
    "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b",
    "Noise_N_25519_ChaChaPoly_SHA256",
    "Noise_KK1_25519_ChaChaPoly_SHA256",
    "Noise_NNpsk0+psk2_25519_ChaChaPoly_SHA256",
    "Noise_X1X1_25519_AESGCM_SHA256",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const char *name = k_names[data[0] % (sizeof(k_names) / sizeof(k_names[0]))];
  int initiator = (data[0] >> 3) & 1;
  data++, size--;
  kh_error err;
  kh_noise *n = kh_noise_new(name, initiator, &err);
  if (n == NULL) return 0; /* AESGCM without AES-NI */
  uint8_t key[KH_NOISE_DH_LEN], pub[KH_NOISE_DH_LEN], psk[KH_NOISE_PSK_LEN];
  memset(key, 7, sizeof(key));
  memset(psk, 9, sizeof(psk));
  if (!kh_noise_public_key(key, pub, &err)) abort();
  int ok = kh_noise_set_prologue(n, (const uint8_t *)"fuzz", 4, &err);
  if (ok && kh_noise_needs_static(n)) ok = kh_noise_set_static(n, key, &err);
  if (ok && kh_noise_needs_remote_static(n)) ok = kh_noise_set_remote_static(n, pub, &err);
  for (size_t i = 0; ok && i < kh_noise_psk_count(n); i++) ok = kh_noise_add_psk(n, psk, &err);
  if (!ok) abort();
  kh_buf out = KH_BUF_INIT, payload = KH_BUF_INIT;
  for (int step = 0; step < 8 && !kh_noise_done(n); step++) {
    kh_buf_reset(&out);
    if (kh_noise_my_turn(n)) {
      /* Our write does the DH with the peer's keys: a low-order point
       * from the peer fails it, and only that. */
      if (kh_noise_write_message(n, (const uint8_t *)"payload", 7, &out, &err)) continue;
      if (err.code != KH_ERR_PROTOCOL) abort();
      break;
    }
    if (size < 2) break;
    size_t len = (size_t)data[0] << 8 | data[1];
    data += 2, size -= 2;
    if (len > size) len = size;
    kh_buf_reset(&payload);
    if (!kh_noise_read_message(n, data, len, &payload, &err)) {
      /* Dead after a failure: nothing more is accepted. */
      if (kh_noise_my_turn(n) || kh_noise_done(n)) abort();
      if (kh_noise_read_message(n, data, len, &payload, &err)) abort();
      if (err.code != KH_ERR_FAILED_PRECONDITION) abort();
      break;
    }
    data += len, size -= len;
  }
  if (kh_noise_done(n)) {
    kh_noise_cipherstate a, b;
    if (!kh_noise_split(n, &a, &b, &err)) abort();
  }
  kh_buf_free(&out);
  kh_buf_free(&payload);
  kh_noise_free(n);
  return 0;
}
