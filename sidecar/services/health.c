/* health.c: the gRPC health checking protocol over rpc/service.h.
 *
 * Check: one request, one response, OK; an unknown service name gets
 * NOT_FOUND (as the protocol says). Watch: the current status at once, then
 * a new message on every change (the server polls watch() from its event
 * loop), SERVICE_UNKNOWN for an unknown name; it ends when the client goes
 * away or keyholdd stops. Both are probes (service.h): open to every caller
 * that reaches the socket, outside the handshake budget. */
#include "health.h"

#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define STATUS(x) GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__##x

int kh_health_set(kh_health *h, int serving) {
  serving = serving != 0;
  return __atomic_exchange_n(&h->serving, serving, __ATOMIC_ACQ_REL) != serving;
}

int kh_health_serving(const kh_health *h) {
  return __atomic_load_n(&h->serving, __ATOMIC_ACQUIRE);
}

typedef struct {
  kh_health *h;
  int watch;
  int started; /* the request arrived */
  int known;   /* its service name is one keyholdd serves */
  int sent;    /* the status last sent (Watch) */
} session;

static int known_service(const kh_health *h, const char *name) {
  if (name == NULL || name[0] == '\0') return 1;
  for (size_t i = 0; h->services != NULL && h->services[i] != NULL; i++)
    if (strcmp(h->services[i], name) == 0) return 1;
  return 0;
}

static int current(const session *s) {
  if (!s->known) return STATUS(SERVICE_UNKNOWN);
  return kh_health_serving(s->h) ? STATUS(SERVING) : STATUS(NOT_SERVING);
}

static int encode(int status, kh_buf *resp) {
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  size_t n = grpc__health__v1__health_check_response__get_packed_size(&r);
  /* An all-default message packs to nothing: still one (empty) message. */
  if (!kh_buf_reserve(resp, n + 1)) return 0;
  resp->len = grpc__health__v1__health_check_response__pack(&r, resp->data);
  return 1;
}

static session *open_session(void *arg, int watch) {
  session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->h = arg;
  s->watch = watch;
  return s;
}

static void *check_new(void *arg, const kh_caller *caller) {
  (void)caller;
  return open_session(arg, 0);
}

static void *watch_new(void *arg, const kh_caller *caller) {
  (void)caller;
  return open_session(arg, 1);
}

static kh_rpc_outcome handle(void *arg, const uint8_t *req, size_t len, kh_buf *resp,
                             kh_error *err) {
  session *s = arg;
  if (s->started) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "grpc.health.v1: one HealthCheckRequest per call");
    return KH_RPC_FAILED;
  }
  s->started = 1;
  Grpc__Health__V1__HealthCheckRequest *r =
      grpc__health__v1__health_check_request__unpack(NULL, len, req);
  if (r == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "grpc.health.v1: malformed HealthCheckRequest");
    return KH_RPC_FAILED;
  }
  s->known = known_service(s->h, r->service);
  if (!s->known && !s->watch)
    kh_err(err, KH_ERR_NOT_FOUND, "grpc.health.v1: unknown service '%.100s'", r->service);
  grpc__health__v1__health_check_request__free_unpacked(r, NULL);
  if (!s->known && !s->watch) return KH_RPC_FAILED;
  s->sent = current(s);
  if (!encode(s->sent, resp)) {
    kh_err(err, KH_ERR_INTERNAL, "out of memory");
    return KH_RPC_FAILED;
  }
  return s->watch ? KH_RPC_CONTINUE : KH_RPC_FINISHED;
}

/* watch: a new message when the status differs from the last one sent. */
static int watch(void *arg, kh_buf *resp) {
  session *s = arg;
  int now = current(s);
  if (!s->started || now == s->sent || !encode(now, resp)) return 0;
  s->sent = now;
  return 1;
}

static void session_free(void *s) {
  free(s);
}

void kh_health_services(kh_health *h, kh_service out[KH_HEALTH_SERVICES]) {
  out[0] = (kh_service){.method = KH_HEALTH_CHECK_METHOD,
                        .arg = h,
                        .session_new = check_new,
                        .handle = handle,
                        .session_free = session_free,
                        .probe = 1};
  out[1] = out[0];
  out[1].method = KH_HEALTH_WATCH_METHOD;
  out[1].session_new = watch_new;
  out[1].watch = watch;
}
