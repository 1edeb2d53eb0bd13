/* fuzz_ticket_keys: the session-ticket key file parser on arbitrary bytes
 * (the file is operator input, read at start-up and on every change). */
#include <stddef.h>
#include <stdint.h>

#include "kh_log.h"
#include "ticket_keys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  if (!init) {
    kh_log_set_level(KH_LOG_OFF);
    init = 1;
  }
  kh_error err;
  kh_ticket_keys *k = kh_ticket_keys_parse((const char *)data, size, &err);
  if (k != NULL && (kh_ticket_keys_count(k) == 0 || kh_ticket_keys_count(k) > KH_TICKET_KEYS_MAX))
    __builtin_trap(); /* a parsed file holds 1 to 8 keys */
  kh_ticket_keys_unref(k);
  return 0;
}
