/* s2a_v1.h: S2A v1 SetUpSession (/s2a.proto.S2AService/SetUpSession) as a
 * keyholdd RPC service: the sans-IO kh_s2a_session behind kh_service. */
#ifndef KH_S2A_V1_H
#define KH_S2A_V1_H

#include "s2a_session.h"
#include "service.h"

#define KH_S2A_V1_METHOD "/s2a.proto.S2AService/SetUpSession"

/* kh_s2a_v1_service: the service; |env| is borrowed and outlives it. */
kh_service kh_s2a_v1_service(const kh_s2a_env *env);

#endif /* KH_S2A_V1_H */
