/* kh_channel_frame.h: the frames a secure channel's handshake puts on the
 * app's transport, shared by keyholdd (which makes and reads them) and
 * libkeyhold (which tells them from messages). Every frame starts with a
 * type byte; a channel message starts with its version (KH_CHAN_VERSION,
 * 0x01, client-shim/channel_record.h), so the three never collide.
 *   0x10 | Noise handshake message
 *   0x11 | u8 gRPC status code | reason (printable ASCII, at most
 *          KH_CHAN_ABORT_MAX bytes): the sender refused the channel. It is
 *          not authenticated: it tells the peer why, it proves nothing. */
#ifndef KH_CHANNEL_FRAME_H
#define KH_CHANNEL_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KH_CHAN_FRAME_HANDSHAKE 0x10
#define KH_CHAN_FRAME_ABORT 0x11
#define KH_CHAN_ABORT_MAX 200

/* kh_chan_abort_reason copies an abort frame's reason into |out| (|len| >
 * KH_CHAN_ABORT_MAX), replacing anything unprintable, and returns its code. */
static inline unsigned kh_chan_abort_reason(const uint8_t *frame, size_t frame_len, char *out,
                                            size_t len) {
  size_t n = 0;
  for (size_t i = 2; i < frame_len && n + 1 < len && n < KH_CHAN_ABORT_MAX; i++)
    out[n++] = frame[i] >= 0x20 && frame[i] < 0x7f ? (char)frame[i] : '?';
  if (len > 0) out[n] = '\0';
  return frame_len >= 2 ? frame[1] : 2 /* UNKNOWN */;
}

#endif /* KH_CHANNEL_FRAME_H */
