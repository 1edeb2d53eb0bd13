/* fuzz_identity: PEM identity loading (tls.crt, tls.key, ca.crt) from
 * arbitrary file contents. The input is split in three at the first two
 * 0x00 bytes and written to a private temporary directory. A tls.key that
 * is a PKCS#11 URI is parsed by p11-kit; modules are frozen, so none is
 * ever started (fuzz_pkcs11_sig covers what a token answers). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "identity.h"
#include "kh_log.h"
#include "pkcs11_module.h"

static char g_dir[64];

static void put(const char *name, const uint8_t *data, size_t len) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", g_dir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL) abort();
  if (len) fwrite(data, 1, len, f);
  fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_dir[0] == '\0') {
    kh_log_set_level(KH_LOG_OFF);
    kh_p11_freeze();
    snprintf(g_dir, sizeof(g_dir), "/tmp/kh-fuzz-id-XXXXXX");
    if (mkdtemp(g_dir) == NULL) abort();
  }
  const uint8_t *parts[3] = {data, NULL, NULL};
  size_t lens[3] = {size, 0, 0};
  for (int i = 0; i < 2; i++) {
    const uint8_t *z = memchr(parts[i], 0, lens[i]);
    if (z == NULL) break;
    parts[i + 1] = z + 1;
    lens[i + 1] = lens[i] - (size_t)(z + 1 - parts[i]);
    lens[i] = (size_t)(z - parts[i]);
  }
  put("tls.crt", parts[0], lens[0]);
  put("tls.key", parts[1] ? parts[1] : (const uint8_t *)"", lens[1]);
  put("ca.crt", parts[2] ? parts[2] : (const uint8_t *)"", lens[2]);
  kh_error err;
  kh_identity *id = kh_identity_load(g_dir, &err);
  kh_identity_unref(id);
  return 0;
}
