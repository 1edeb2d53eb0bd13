/* s2a_session.c: S2A v1 SetUpSession, sans-IO. One request in, one response
 * out; the TLS work is the engine's. */
#include "s2a_session.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "kh_log.h"
#include "kh_secret.h"
#include "s2a_identity.h"
#include "s2a/s2a.pb-c.h"
#include "tls_engine.h"

#define KH_S2A_MAX_IN_BYTES (64u * 1024u)
#define KH_S2A_MAX_TOKENS 8

typedef enum { ST_START, ST_HANDSHAKING, ST_DONE, ST_FAILED } session_state;

struct kh_s2a_session {
  const kh_s2a_env *env;
  const kh_identity_store *store;
  const kh_grants *grants;
  char resume_target[1024]; /* client: target name + expected peers, for the session cache */
  int resumed;
  kh_caller caller;
  const char *tokens[KH_S2A_MAX_TOKENS]; /* from the request being handled */
  size_t n_tokens;
  session_state state;
  kh_tls_side side;
  kh_tls_engine *engine;
  kh_identity *identity; /* a reference of our own */
  char asked[256];       /* the local identity as the caller named it */
  char local_name[512];
  char peer_name[512];
  struct timespec started;
};

static uint64_t g_conn_counter;
static pthread_once_t g_conn_seed_once = PTHREAD_ONCE_INIT;

static void seed_connection_ids(void) {
  uint64_t seed = 0;
  if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed)) seed = (uint64_t)time(NULL) << 20;
  __atomic_store_n(&g_conn_counter, seed >> 1, __ATOMIC_RELAXED);
}

/* next_connection_id: unique per keyholdd, from any worker thread. */
static uint64_t next_connection_id(void) {
  pthread_once(&g_conn_seed_once, seed_connection_ids);
  return __atomic_add_fetch(&g_conn_counter, 1, __ATOMIC_RELAXED);
}

kh_s2a_session *kh_s2a_session_new(const kh_s2a_env *env, const kh_caller *caller) {
  kh_s2a_session *s = calloc(1, sizeof(*s));
  if (s == NULL) return NULL;
  s->env = env;
  s->store = env->store;
  s->grants = kh_policy_slot_get(env->policy);
  if (caller != NULL) s->caller = *caller;
  snprintf(s->local_name, sizeof(s->local_name), "-");
  snprintf(s->peer_name, sizeof(s->peer_name), "-");
  clock_gettime(CLOCK_MONOTONIC, &s->started);
  return s;
}

void kh_s2a_session_free(kh_s2a_session *s) {
  if (s == NULL) return;
  kh_tls_engine_free(s->engine);
  kh_identity_unref(s->identity);
  kh_policy_slot_put(s->grants);
  free(s);
}

const char *kh_s2a_session_local_name(const kh_s2a_session *s) {
  return s->local_name;
}
const char *kh_s2a_session_peer_name(const kh_s2a_session *s) {
  return s->peer_name;
}

int kh_s2a_session_is_server(const kh_s2a_session *s) {
  return s->state != ST_START && s->side == KH_TLS_SERVER;
}

/* --- requests ------------------------------------------------------------ */

_Static_assert((int)S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID == KH_S2A_ID_SPIFFE &&
                   (int)S2A__PROTO__IDENTITY__IDENTITY_ONEOF_HOSTNAME == KH_S2A_ID_HOSTNAME &&
                   (int)S2A__PROTO__IDENTITY__IDENTITY_ONEOF__NOT_SET == KH_S2A_ID_UNSET,
               "Identity's oneof numbers are s2a_identity.h's");

/* identity_name: the name an Identity message carries (s2a_identity.h). */
static const char *identity_name(const S2a__Proto__Identity *id, kh_error *err) {
  return kh_s2a_identity_name((int)id->identity_oneof_case, id->spiffe_id, id->hostname, err);
}

static int suites_mask(size_t n, const S2a__Proto__Ciphersuite *suites, uint32_t *out,
                       kh_error *err) {
  *out = 0;
  for (size_t i = 0; i < n; i++) {
    if ((int)suites[i] < 0 || (int)suites[i] >= KH_SUITE_COUNT)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown ciphersuite %d", (int)suites[i]);
    *out |= KH_SUITE_BIT(suites[i]);
  }
  return 1;
}

/* Only TLS 1.3 is negotiated. proto3 cannot tell an unset version from
 * TLS1_2 (0), so a request is refused only when it asks for TLS 1.2 alone
 * in an explicit way: min TLS1_3 with max TLS1_2 is contradictory. */
static int check_versions(S2a__Proto__TLSVersion min, S2a__Proto__TLSVersion max, kh_error *err) {
  if ((int)min > 1 || (int)max > 1 || (int)min < 0 || (int)max < 0)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "unknown TLS version");
  if (min == S2A__PROTO__TLSVERSION__TLS1_3 && max == S2A__PROTO__TLSVERSION__TLS1_2)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "min_tls_version is above max_tls_version");
  return 1;
}

static int set_alpn(kh_tls_config *cfg, size_t n, char **protos, kh_error *err) {
  if (n > KH_MAX_ALPN)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "more than %d ALPN protocols", KH_MAX_ALPN);
  for (size_t i = 0; i < n; i++) cfg->alpn[i] = protos[i];
  cfg->alpn_count = n;
  return 1;
}

/* refuse: the one answer to a caller that may not use the identity it asked
 * for, whether that identity exists or not (no existence oracle): the name
 * as asked, never the directory it resolved to, nor how many are loaded. */
static int refuse(const kh_s2a_session *s, kh_error *err) {
  char who[40];
  return kh_err(err, KH_ERR_PERMISSION_DENIED, "%s may not use identity '%.100s'%s",
                kh_caller_name(&s->caller, who, sizeof(who)), s->asked[0] ? s->asked : "(default)",
                s->n_tokens ? " (the access token presented does not grant it)" : "");
}

/* authorize: may the caller run |op| with the chosen identity? Fills
 * |grant|; without grants (tests, fuzzing) everything is granted. */
static int authorize(kh_s2a_session *s, kh_operation op, kh_grant *grant, kh_error *err) {
  const char *name = kh_identity_dir_name(s->identity);
  if (s->grants == NULL) {
    *grant = (kh_grant){.identity = name, .op = op, .peer_check = NULL};
    return 1;
  }
  if (!kh_authz_decide(s->grants, &s->caller, s->tokens, s->n_tokens, op, name, grant, err))
    return refuse(s, err);
  return 1;
}

/* apply_grant narrows |cfg| to what |g| allows: the requested ALPN
 * protocols and suites to the granted ones (refused if none is left), the
 * peers to the granted lists. */
static int apply_grant(const kh_grant *g, kh_tls_config *cfg, kh_error *err) {
  cfg->peer_check = g->peer_check;
  if (g->n_alpn > 0 && cfg->alpn_count > 0) {
    size_t kept = 0;
    for (size_t i = 0; i < cfg->alpn_count; i++) {
      for (size_t j = 0; j < g->n_alpn; j++) {
        if (strcmp(cfg->alpn[i], g->alpn[j]) == 0) {
          cfg->alpn[kept++] = cfg->alpn[i];
          break;
        }
      }
    }
    if (kept == 0)
      return kh_err(err, KH_ERR_PERMISSION_DENIED,
                    "none of the requested ALPN protocols is allowed for identity '%.100s'",
                    g->identity);
    cfg->alpn_count = kept;
  }
  if (g->suites != 0) {
    uint32_t asked = cfg->allowed_suites ? cfg->allowed_suites : KH_SUITE_ALL;
    if ((asked & g->suites) == 0)
      return kh_err(err, KH_ERR_PERMISSION_DENIED,
                    "none of the requested ciphersuites is allowed for identity '%.100s'",
                    g->identity);
    cfg->allowed_suites = asked & g->suites;
  }
  return 1;
}

/* find_identity selects the local identity. A caller that is not keyholdd's
 * own uid gets refuse() for every failure, so it cannot probe which
 * identities exist. */
static kh_identity *find_identity(kh_s2a_session *s, const char *name, kh_error *err) {
  snprintf(s->asked, sizeof(s->asked), "%s", name ? name : "");
  /* A reference of our own: survives a rotation of the store. */
  kh_identity *id = kh_identity_store_find_ref(s->store, name, err);
  if (id == NULL && s->grants != NULL && s->caller.uid != getuid()) refuse(s, err);
  return id;
}

static int start_engine(kh_s2a_session *s, kh_tls_config *cfg, kh_error *err) {
  kh_grant grant;
  kh_operation op =
      cfg->side == KH_TLS_CLIENT ? KH_OP_TLS_CLIENT_HANDSHAKE : KH_OP_TLS_SERVER_HANDSHAKE;
  if (!authorize(s, op, &grant, err) || !apply_grant(&grant, cfg, err)) return 0;
  cfg->identity = s->identity;
  s->engine = kh_tls_engine_new(cfg, err);
  if (s->engine == NULL) return 0;
  snprintf(s->local_name, sizeof(s->local_name), "%s", kh_identity_name(s->identity));
  s->state = ST_HANDSHAKING;
  return 1;
}

/* resume_key: what this client handshake's sessions are cached under: the
 * caller, the identity and the certificate it holds, the target. */
static const kh_resume_key *resume_key(const kh_s2a_session *s, kh_resume_key *out) {
  *out = (kh_resume_key){.uid = s->caller.uid,
                         .identity = kh_identity_dir_name(s->identity),
                         .target = s->resume_target};
  memcpy(out->cert, kh_identity_fingerprint(s->identity), KH_SHA256_LEN);
  return out;
}

static int client_start(kh_s2a_session *s, const S2a__Proto__ClientSessionStartReq *r,
                        kh_error *err) {
  kh_tls_config cfg = {.side = KH_TLS_CLIENT};
  const char *local = "";
  if (r->local_identity && (local = identity_name(r->local_identity, err)) == NULL) return 0;
  if (!check_versions(r->min_tls_version, r->max_tls_version, err) ||
      !suites_mask(r->n_tls_ciphersuites, r->tls_ciphersuites, &cfg.allowed_suites, err) ||
      !set_alpn(&cfg, r->n_application_protocols, r->application_protocols, err))
    return 0;
  if (r->n_target_identities > KH_MAX_EXPECT_PEERS)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "more than %d target identities",
                  KH_MAX_EXPECT_PEERS);
  for (size_t i = 0; i < r->n_target_identities; i++) {
    const char *name = identity_name(r->target_identities[i], err);
    if (name == NULL) return 0;
    if (name[0] != '\0') cfg.expect_peers[cfg.expect_peer_count++] = name;
  }
  cfg.server_name = r->target_name;
  if ((s->identity = find_identity(s, local, err)) == NULL) return 0;
  s->side = KH_TLS_CLIENT;
  /* The target part of the session cache key: everything the peer was
   * checked against (resume_key adds caller, identity and certificate). */
  size_t n = (size_t)snprintf(s->resume_target, sizeof(s->resume_target), "%s",
                              r->target_name ? r->target_name : "");
  for (size_t i = 0; i < cfg.expect_peer_count && n < sizeof(s->resume_target); i++)
    n += (size_t)snprintf(s->resume_target + n, sizeof(s->resume_target) - n, "\n%s",
                          cfg.expect_peers[i]);
  /* Taken out of the cache: a session is offered once. If it does not fit
   * the engine's context it is not offered at all (a full handshake). */
  kh_resume_key key;
  if (s->env->resume) cfg.session = kh_resume_take(s->env->resume, resume_key(s, &key));
  int ok = start_engine(s, &cfg, err);
  SSL_SESSION_free(cfg.session); /* the engine holds its own reference */
  return ok;
}

static int server_start(kh_s2a_session *s, const S2a__Proto__ServerSessionStartReq *r,
                        kh_error *err) {
  kh_tls_config cfg = {.side = KH_TLS_SERVER};
  if (!check_versions(r->min_tls_version, r->max_tls_version, err) ||
      !suites_mask(r->n_tls_ciphersuites, r->tls_ciphersuites, &cfg.allowed_suites, err) ||
      !set_alpn(&cfg, r->n_application_protocols, r->application_protocols, err))
    return 0;
  /* The first of local_identities this sidecar holds; none given = the sole one. */
  kh_error first = {0};
  for (size_t i = 0; i < r->n_local_identities && s->identity == NULL; i++) {
    const char *name = identity_name(r->local_identities[i], err);
    if (name == NULL) return 0;
    s->identity = find_identity(s, name, i == 0 ? &first : NULL);
  }
  if (s->identity == NULL) {
    if (r->n_local_identities > 0) {
      if (err) *err = first;
      return 0;
    }
    if ((s->identity = find_identity(s, NULL, err)) == NULL) return 0;
  }
  s->side = KH_TLS_SERVER;
  cfg.ticket_keys = s->env->ticket_keys ? kh_ticket_keys_get(s->env->ticket_keys) : NULL;
  int ok = start_engine(s, &cfg, err);
  kh_ticket_keys_unref(cfg.ticket_keys); /* the engine holds its own reference */
  return ok;
}

/* --- responses ----------------------------------------------------------- */

static void set_identity(S2a__Proto__Identity *out, const char *name, int is_spiffe) {
  s2a__proto__identity__init(out);
  if (is_spiffe) {
    out->identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_SPIFFE_ID;
    out->spiffe_id = (char *)name;
  } else {
    out->identity_oneof_case = S2A__PROTO__IDENTITY__IDENTITY_ONEOF_HOSTNAME;
    out->hostname = (char *)name;
  }
}

static int pack_resp(const S2a__Proto__SessionResp *resp, kh_buf *out, kh_error *err) {
  size_t n = s2a__proto__session_resp__get_packed_size(resp);
  if (!kh_buf_reserve(out, n)) return kh_err(err, KH_ERR_NOMEM, "out of memory");
  out->len += s2a__proto__session_resp__pack(resp, out->data + out->len);
  return 1;
}

/* respond packs out_frames + bytes_consumed, the result when done, and an OK
 * status. The packed bytes hold traffic secrets: |out| is wiped by
 * kh_buf_free/kh_buf_reset after the send. */
static int respond(kh_s2a_session *s, const kh_buf *frames, size_t consumed, kh_buf *out,
                   kh_error *err) {
  S2a__Proto__SessionResp resp = S2A__PROTO__SESSION_RESP__INIT;
  S2a__Proto__SessionStatus status = S2A__PROTO__SESSION_STATUS__INIT;
  S2a__Proto__SessionResult result = S2A__PROTO__SESSION_RESULT__INIT;
  S2a__Proto__SessionState state = S2A__PROTO__SESSION_STATE__INIT;
  S2a__Proto__Identity local, local2, peer;
  kh_tls_result r;
  int ok;

  status.details = "";
  resp.status = &status;
  resp.out_frames.data = frames->data;
  resp.out_frames.len = frames->len;
  resp.bytes_consumed = (uint32_t)consumed;
  set_identity(&local, kh_identity_name(s->identity), kh_identity_spiffe_id(s->identity) != NULL);
  resp.local_identity = &local;
  if (!kh_tls_engine_done(s->engine)) return pack_resp(&resp, out, err);

  if (!kh_tls_engine_result(s->engine, &r, err)) return 0;
  snprintf(s->peer_name, sizeof(s->peer_name), "%s", r.peer_name[0] ? r.peer_name : "-");
  state.tls_version = S2A__PROTO__TLSVERSION__TLS1_3;
  /* The secrets go into the packed response straight from the engine's
   * kh_traffic_keys (copy 2 of kh_traffic.h's list). */
  state.tls_ciphersuite = (S2a__Proto__Ciphersuite)r.keys.suite;
  state.in_sequence = r.keys.in_sequence;
  state.out_sequence = r.keys.out_sequence;
  state.in_key.data = r.keys.in_secret;
  state.in_key.len = r.keys.secret_len;
  state.out_key.data = r.keys.out_secret;
  state.out_key.len = r.keys.secret_len;
  state.connection_id = next_connection_id();
  uint64_t conn_id = state.connection_id;
  state.is_handshake_resumed = r.resumed != 0;
  s->resumed = r.resumed != 0;
  result.application_protocol = r.alpn;
  result.state = &state;
  set_identity(&peer, r.peer_name, r.peer_name_is_spiffe);
  result.peer_identity = &peer;
  set_identity(&local2, r.local_name, r.local_name_is_spiffe);
  result.local_identity = &local2;
  result.local_cert_fingerprint.data = r.local_fingerprint;
  result.local_cert_fingerprint.len = KH_SHA256_LEN;
  result.peer_cert_fingerprint.data = r.peer_fingerprint;
  result.peer_cert_fingerprint.len = KH_SHA256_LEN;
  resp.result = &result;
  ok = pack_resp(&resp, out, err);
  kh_wipe(&r, sizeof(r));
  kh_wipe(&state, sizeof(state));
  /* The session keeps no secret after this: the engine goes now, or, for a
   * client, waits briefly in the resumption table for the peer's tickets. */
  kh_resume_key key;
  if (ok && s->side == KH_TLS_CLIENT && s->env->resume != NULL)
    kh_resume_hold(s->env->resume, conn_id, resume_key(s, &key), s->engine);
  else
    kh_tls_engine_free(s->engine);
  s->engine = NULL;
  s->state = ST_DONE;
  return ok;
}

/* respond_error packs a status (and any alert for the peer). */
static void respond_error(const kh_buf *frames, const kh_error *e, kh_buf *out) {
  S2a__Proto__SessionResp resp = S2A__PROTO__SESSION_RESP__INIT;
  S2a__Proto__SessionStatus status = S2A__PROTO__SESSION_STATUS__INIT;
  status.code = kh_code_to_grpc(e->code);
  status.details = (char *)e->msg;
  resp.status = &status;
  if (frames != NULL) {
    resp.out_frames.data = frames->data;
    resp.out_frames.len = frames->len;
  }
  kh_buf_reset(out);
  kh_error ignored;
  pack_resp(&resp, out, &ignored);
}

static double elapsed_ms(const kh_s2a_session *s) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - s->started.tv_sec) * 1e3 +
         (double)(now.tv_nsec - s->started.tv_nsec) / 1e6;
}

static void log_end(const kh_s2a_session *s, const kh_error *e) {
  const char *side =
      s->engine || s->state == ST_DONE ? (s->side == KH_TLS_CLIENT ? "client" : "server") : "-";
  if (e == NULL) {
    kh_log(KH_LOG_INFO,
           "handshake side=%s caller_uid=%u caller_pid=%d local=%s peer=%s result=OK "
           "resumed=%s duration_ms=%.1f",
           side, (unsigned)s->caller.uid, (int)s->caller.pid, s->local_name, s->peer_name,
           s->resumed ? "yes" : "no", elapsed_ms(s));
  } else {
    kh_log(KH_LOG_WARN,
           "handshake side=%s caller_uid=%u caller_pid=%d local=%s peer=%s result=%s "
           "duration_ms=%.1f reason=\"%s\"",
           side, (unsigned)s->caller.uid, (int)s->caller.pid, s->local_name, s->peer_name,
           kh_code_name(e->code), elapsed_ms(s), e->msg);
  }
}

/* in_bytes_fit bounds what one request may hand the TLS engine. */
static int in_bytes_fit(const ProtobufCBinaryData *in, kh_error *err) {
  if (in->len <= KH_S2A_MAX_IN_BYTES) return 1;
  return kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "in_bytes of %zu bytes exceeds %u", in->len,
                KH_S2A_MAX_IN_BYTES);
}

/* feed runs the engine on peer bytes and answers. */
static kh_s2a_outcome feed(kh_s2a_session *s, const uint8_t *in, size_t in_len, kh_buf *resp,
                           kh_error *err) {
  kh_buf frames = KH_BUF_INIT;
  size_t consumed = 0;
  kh_s2a_outcome outcome = KH_S2A_FAILED;
  if (!kh_tls_engine_step(s->engine, in, in_len, &consumed, &frames, err)) {
    respond_error(&frames, err, resp);
  } else if (!respond(s, &frames, consumed, resp, err)) {
    respond_error(NULL, err, resp);
  } else {
    outcome = s->state == ST_DONE ? KH_S2A_FINISHED : KH_S2A_CONTINUE;
  }
  kh_buf_free(&frames);
  return outcome;
}

/* take_tickets: NewSessionTicket messages the shim received after a client
 * handshake of this caller's, for the session cache. */
static int take_tickets(kh_s2a_session *s, const S2a__Proto__ResumptionTicketReq *t,
                        kh_error *err) {
  if (s->env->resume == NULL) return 1; /* accepted, not kept */
  if (t->n_in_bytes == 0 || t->n_in_bytes > 16)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT, "resumption_ticket carries %zu tickets (1 to 16)",
                  t->n_in_bytes);
  const uint8_t *msgs[16];
  size_t lens[16];
  for (size_t i = 0; i < t->n_in_bytes; i++) {
    msgs[i] = t->in_bytes[i].data;
    lens[i] = t->in_bytes[i].len;
  }
  return kh_resume_tickets(s->env->resume, t->connection_id, s->caller.uid, msgs, lens,
                           t->n_in_bytes, err);
}

/* collect_tokens points s->tokens at the request's access tokens (valid
 * while the request is being handled). */
static int collect_tokens(kh_s2a_session *s, const S2a__Proto__SessionReq *req, kh_error *err) {
  s->n_tokens = 0;
  for (size_t i = 0; i < req->n_auth_mechanisms; i++) {
    const S2a__Proto__AuthenticationMechanism *m = req->auth_mechanisms[i];
    if (m->mechanism_oneof_case != S2A__PROTO__AUTHENTICATION_MECHANISM__MECHANISM_ONEOF_TOKEN)
      continue;
    if (s->n_tokens == KH_S2A_MAX_TOKENS)
      return kh_err(err, KH_ERR_INVALID_ARGUMENT, "more than %d access tokens", KH_S2A_MAX_TOKENS);
    s->tokens[s->n_tokens++] = m->token;
  }
  return 1;
}

static kh_s2a_outcome dispatch(kh_s2a_session *s, const S2a__Proto__SessionReq *req, kh_buf *resp,
                               kh_error *err) {
  if (!collect_tokens(s, req, err)) return KH_S2A_FAILED;
  switch (req->req_oneof_case) {
    case S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START:
    case S2A__PROTO__SESSION_REQ__REQ_ONEOF_SERVER_START: {
      int client = req->req_oneof_case == S2A__PROTO__SESSION_REQ__REQ_ONEOF_CLIENT_START;
      if (s->state != ST_START) {
        kh_err(err, KH_ERR_FAILED_PRECONDITION, "%s after the session already started",
               client ? "client_start" : "server_start");
        return KH_S2A_FAILED;
      }
      if (client ? !client_start(s, req->client_start, err)
                 : !server_start(s, req->server_start, err))
        return KH_S2A_FAILED;
      if (client) return feed(s, NULL, 0, resp, err);
      const ProtobufCBinaryData *in = &req->server_start->in_bytes;
      if (!in_bytes_fit(in, err)) return KH_S2A_FAILED;
      return feed(s, in->data, in->len, resp, err);
    }
    case S2A__PROTO__SESSION_REQ__REQ_ONEOF_NEXT: {
      const ProtobufCBinaryData *in = &req->next->in_bytes;
      if (s->state != ST_HANDSHAKING) {
        kh_err(err, KH_ERR_FAILED_PRECONDITION, "next before client_start/server_start");
        return KH_S2A_FAILED;
      }
      if (in->len == 0) {
        kh_err(err, KH_ERR_INVALID_ARGUMENT, "next carries empty in_bytes");
        return KH_S2A_FAILED;
      }
      if (!in_bytes_fit(in, err)) return KH_S2A_FAILED;
      return feed(s, in->data, in->len, resp, err);
    }
    case S2A__PROTO__SESSION_REQ__REQ_ONEOF_RESUMPTION_TICKET: {
      if (s->state != ST_START) {
        kh_err(err, KH_ERR_FAILED_PRECONDITION, "resumption_ticket inside a handshake stream");
        return KH_S2A_FAILED;
      }
      if (!take_tickets(s, req->resumption_ticket, err)) return KH_S2A_FAILED;
      S2a__Proto__SessionResp r = S2A__PROTO__SESSION_RESP__INIT;
      S2a__Proto__SessionStatus st = S2A__PROTO__SESSION_STATUS__INIT;
      st.details = "";
      r.status = &st;
      if (!pack_resp(&r, resp, err)) return KH_S2A_FAILED;
      s->state = ST_DONE;
      return KH_S2A_FINISHED;
    }
    default:
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "SessionReq carries no request");
      return KH_S2A_FAILED;
  }
}

kh_s2a_outcome kh_s2a_session_handle(kh_s2a_session *s, const uint8_t *req, size_t req_len,
                                     kh_buf *resp, kh_error *err) {
  kh_error_clear(err);
  if (s->state == ST_FAILED || s->state == ST_DONE) {
    kh_err(err, KH_ERR_FAILED_PRECONDITION, "session already %s",
           s->state == ST_DONE ? "finished" : "failed");
    respond_error(NULL, err, resp);
    return KH_S2A_FAILED;
  }
  S2a__Proto__SessionReq *r = s2a__proto__session_req__unpack(NULL, req_len, req);
  kh_s2a_outcome outcome;
  if (r == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "malformed SessionReq (%zu bytes)", req_len);
    outcome = KH_S2A_FAILED;
  } else {
    outcome = dispatch(s, r, resp, err);
    s->n_tokens = 0;
    s2a__proto__session_req__free_unpacked(r, NULL);
  }
  if (outcome == KH_S2A_FAILED) {
    if (resp->len == 0) respond_error(NULL, err, resp);
    s->state = ST_FAILED;
    log_end(s, err);
  } else if (outcome == KH_S2A_FINISHED && s->identity != NULL) {
    log_end(s, NULL);
  }
  return outcome;
}
