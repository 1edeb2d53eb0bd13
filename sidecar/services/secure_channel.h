/* secure_channel.h: keyhold.v1.SecureChannel/Handshake as a keyholdd RPC
 * service: the sans-IO kh_channel_session behind kh_service. */
#ifndef KH_SERVICE_SECURE_CHANNEL_H
#define KH_SERVICE_SECURE_CHANNEL_H

#include "channel_session.h"
#include "service.h"

#define KH_SECURE_CHANNEL_METHOD "/keyhold.v1.SecureChannel/Handshake"

/* kh_secure_channel_service: the service over |env| (borrowed; outlives it). */
kh_service kh_secure_channel_service(const kh_channel_env *env);

#endif /* KH_SERVICE_SECURE_CHANNEL_H */
