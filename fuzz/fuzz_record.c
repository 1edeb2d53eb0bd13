/* fuzz_record: the shim's record layer fed peer bytes. The first input byte
 * picks the mode: raw bytes straight into kh_record_open (framing, lengths,
 * CCS, authentication failures), or chunks each sealed as one record with
 * the peer's keys so the fuzzer reaches inner content parsing (padding,
 * handshake reassembly, KeyUpdate, NewSessionTicket, alerts). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "record.h"

static void on_ticket(void *arg, const uint8_t *msg, size_t len) {
  (void)arg;
  (void)msg;
  (void)len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const kh_traffic_keys peer_keys = {
      KH_TLS_VERSION_1_3, KH_SUITE_AES_128_GCM_SHA256, 32, {2}, {1}, 0, 0};
  static const kh_traffic_keys our_keys = {
      KH_TLS_VERSION_1_3, KH_SUITE_AES_128_GCM_SHA256, 32, {1}, {2}, 0, 0};
  kh_error err;
  kh_record *peer = kh_record_new(&peer_keys, NULL, NULL, &err);
  kh_record *us = kh_record_new(&our_keys, on_ticket, NULL, &err);
  kh_buf wire = KH_BUF_INIT, app = KH_BUF_INIT, back = KH_BUF_INIT;
  int raw = data[0] & 1;
  data++, size--;
  if (peer == NULL || us == NULL) {
    size = 0; /* nothing to fuzz without both ends */
  } else if (raw) {
    if (!kh_buf_append(&wire, data, size)) size = 0;
  } else {
    /* chunks: [type][len][bytes...] */
    while (size >= 2) {
      uint8_t type = data[0];
      size_t n = data[1];
      data += 2, size -= 2;
      if (n > size) n = size;
      if (!kh_record_seal(peer, type, data, n, &wire, &err)) break;
      data += n, size -= n;
    }
  }
  /* deliver in two pieces to exercise partial records */
  size_t half = wire.len / 2, used = 0;
  if (us != NULL && kh_record_open(us, wire.data, half, &used, &app, &back, &err)) {
    kh_buf_consume(&wire, used);
    if (!kh_record_open(us, wire.data, wire.len, &used, &app, &back, &err)) {
      /* a fatal error is as good an outcome as any */
    }
  }
  kh_buf_free(&wire), kh_buf_free(&app), kh_buf_free(&back);
  kh_record_free(peer);
  kh_record_free(us);
  return 0;
}
