/* s2a_v2_wire.h: S2A v2's two wire dialects, unpacked into one form.
 *
 * s2a-go speaks package s2a.proto.v2; grpc-java the same messages as
 * grpc.gcp.s2a with three field numbers moved (../shared/S2A-WIRE.md). The
 * inner messages are the same protobuf-c types in both (proto/grpc_gcp_s2a
 * reuses proto/s2a/v2's), so a request becomes a kh_v2_req pointing at them
 * and a response is always built as a v2 SessionResp and packed in the
 * caller's dialect. Sans-IO, no gRPC; a fuzz target (fuzz_s2a_v2). */
#ifndef KH_S2A_V2_WIRE_H
#define KH_S2A_V2_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_gcp_s2a/s2a.pb-c.h"
#include "kh_buf.h"
#include "kh_error.h"
#include "s2a/v2/s2a.pb-c.h"

#define KH_S2A_V2_METHOD "/s2a.proto.v2.S2AService/SetUpSession"
#define KH_S2A_GRPC_JAVA_METHOD "/grpc.gcp.s2a.S2AService/SetUpSession"

#define KH_V2_MAX_REQ (256u * 1024u) /* a packed request: chains of 16 certs fit */
#define KH_V2_MAX_TOKENS 8

typedef enum { KH_V2_DIALECT_S2A = 0, KH_V2_DIALECT_GRPC_JAVA = 1 } kh_v2_dialect;

typedef enum {
  KH_V2_REQ_NONE = 0,
  KH_V2_REQ_TLS_CONFIG,
  KH_V2_REQ_PRIVATE_KEY,
  KH_V2_REQ_RESUMPTION_KEY,
  KH_V2_REQ_VALIDATE,
} kh_v2_req_kind;

/* One request, whichever dialect it came in. Everything points into the
 * unpacked message, which kh_v2_req_free releases. */
typedef struct {
  kh_v2_dialect dialect;
  const S2a__Proto__V2__Identity *local_identity; /* NULL: not given */
  const char *tokens[KH_V2_MAX_TOKENS];           /* from authentication_mechanisms */
  size_t n_tokens;
  kh_v2_req_kind kind;
  union {
    const S2a__Proto__V2__GetTlsConfigurationReq *tls_config;
    const S2a__Proto__V2__OffloadPrivateKeyOperationReq *private_key;
    const S2a__Proto__V2__OffloadResumptionKeyOperationReq *resumption_key;
    const S2a__Proto__V2__ValidatePeerCertificateChainReq *validate;
  } u;
  /* private */
  ProtobufCMessage *msg;
  S2a__Proto__V2__Identity *legacy_identity; /* unpacked from an old field 1 */
} kh_v2_req;

/* kh_v2_req_unpack parses |len| bytes of a SessionReq in |dialect|. A
 * request without any operation, too large, or not a SessionReq fails with
 * KH_ERR_INVALID_ARGUMENT naming what is wrong; |out| is then empty. */
KH_MUST_USE int kh_v2_req_unpack(kh_v2_dialect dialect, const uint8_t *data, size_t len,
                                 kh_v2_req *out, kh_error *err);
void kh_v2_req_free(kh_v2_req *r);

/* kh_v2_resp_pack packs |resp| (a v2 SessionResp) in |dialect|, appending to
 * |out|. For grpc-java only S2AContext.local_identity moves (9 -> 5). */
KH_MUST_USE int kh_v2_resp_pack(kh_v2_dialect dialect, const S2a__Proto__V2__SessionResp *resp,
                                kh_buf *out, kh_error *err);

#endif /* KH_S2A_V2_WIRE_H */
