/* s2a_v2.h: S2A v2 SetUpSession as two keyholdd RPC services, one per wire
 * dialect (/s2a.proto.v2.S2AService/SetUpSession for s2a-go,
 * /grpc.gcp.s2a.S2AService/SetUpSession for grpc-java): the sans-IO
 * kh_s2a_v2_session behind kh_service. */
#ifndef KH_SERVICE_S2A_V2_H
#define KH_SERVICE_S2A_V2_H

#include "s2a_session.h"
#include "service.h"

#define KH_S2A_V2_SERVICES 2

/* kh_s2a_v2_services fills |out| with both services; |env| is borrowed and
 * outlives them. Call once per process. */
void kh_s2a_v2_services(const kh_s2a_env *env, kh_service out[KH_S2A_V2_SERVICES]);

#endif /* KH_SERVICE_S2A_V2_H */
