/* key_operations.h: keyhold.v1.KeyOperations' unary methods as keyholdd
 * RPC services over the sans-IO keyops/key_ops.c. */
#ifndef KH_SERVICE_KEY_OPS_H
#define KH_SERVICE_KEY_OPS_H

#include "key_ops.h"
#include "service.h"

#define KH_KEY_OPS_SERVICES 5

/* kh_key_ops_services fills |out| over |env| (borrowed; outlives them). */
void kh_key_ops_services(const kh_keyops_env *env, kh_service out[KH_KEY_OPS_SERVICES]);

#endif /* KH_SERVICE_KEY_OPS_H */
