/* health.h: grpc.health.v1.Health (Check and Watch) as keyholdd RPC
 * services. keyholdd is SERVING while at least one identity's certificate
 * is within its validity period, NOT_SERVING otherwise; every service it
 * serves has that one status. */
#ifndef KH_SERVICE_HEALTH_H
#define KH_SERVICE_HEALTH_H

#include "service.h"

#define KH_HEALTH_CHECK_METHOD "/grpc.health.v1.Health/Check"
#define KH_HEALTH_WATCH_METHOD "/grpc.health.v1.Health/Watch"

typedef struct {
  int serving;                 /* read and written atomically: kh_health_set */
  const char *const *services; /* names Check knows besides "", NULL-terminated */
} kh_health;

/* kh_health_set records the current status (any thread). Returns 1 if it
 * changed. */
int kh_health_set(kh_health *h, int serving);
int kh_health_serving(const kh_health *h);

/* kh_health_services fills out[0] (Check) and out[1] (Watch) over |h|
 * (borrowed; outlives them). */
#define KH_HEALTH_SERVICES 2
void kh_health_services(kh_health *h, kh_service out[KH_HEALTH_SERVICES]);

#endif /* KH_SERVICE_HEALTH_H */
