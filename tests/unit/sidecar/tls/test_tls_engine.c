/* Unit tests for the sans-IO TLS engine: client engine <-> server engine in
 * memory, with a fresh test PKI. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kh_secret.h"
#include "testutil.h"
#include "tls_engine.h"
#include "tls_session.h"

static char g_pki[256];
static kh_identity_store *g_store;

static void setup(void) {
  kh_error err;
  ck_assert(kh_test_pki(g_pki, sizeof(g_pki), "rsa ed25519 p384"));
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/ids", g_pki);
  g_store = kh_identity_store_load(dir, &err);
  ck_assert_msg(g_store != NULL, "%s", err.msg);
}

static void teardown(void) {
  kh_identity_store_free(g_store);
  kh_test_rmtree(g_pki);
}

static kh_identity *find(const char *name) {
  kh_error err;
  kh_identity *id = kh_identity_store_find(g_store, name, &err);
  ck_assert_msg(id != NULL, "%s", err.msg);
  return id;
}

static kh_tls_engine *client_engine(const char *local, const char *expect) {
  kh_tls_config cfg = {.side = KH_TLS_CLIENT, .identity = find(local)};
  cfg.alpn[0] = "h2";
  cfg.alpn[1] = "grpc";
  cfg.alpn_count = 2;
  if (expect) {
    cfg.expect_peers[0] = expect;
    cfg.expect_peer_count = 1;
  }
  kh_error err;
  kh_tls_engine *e = kh_tls_engine_new(&cfg, &err);
  ck_assert_msg(e != NULL, "%s", err.msg);
  return e;
}

static kh_tls_engine *server_engine(const char *local) {
  kh_tls_config cfg = {.side = KH_TLS_SERVER, .identity = find(local)};
  cfg.alpn[0] = "grpc";
  cfg.alpn_count = 1;
  kh_error err;
  kh_tls_engine *e = kh_tls_engine_new(&cfg, &err);
  ck_assert_msg(e != NULL, "%s", err.msg);
  return e;
}

/* deliver feeds |*pending| to |e| in chunks of |chunk| bytes (0 = all at
 * once); consumed bytes are dropped from |pending|, output goes to |out|. */
static int deliver(kh_tls_engine *e, kh_buf *pending, size_t chunk, kh_buf *out, kh_error *err) {
  if (pending->len == 0) {
    size_t used;
    return kh_tls_engine_step(e, NULL, 0, &used, out, err);
  }
  size_t off = 0;
  while (off < pending->len && !kh_tls_engine_done(e)) {
    size_t n = chunk == 0 ? pending->len - off : chunk;
    if (n > pending->len - off) n = pending->len - off;
    size_t used;
    if (!kh_tls_engine_step(e, pending->data + off, n, &used, out, err)) return 0;
    off += used;
    if (used < n) break; /* handshake done, rest is not ours */
  }
  kh_buf_consume(pending, off);
  return 1;
}

/* run_handshake alternates until both sides are done or one fails; the
 * failing side's alert is delivered to the other (if it is still
 * handshaking) so both report the failure. |*out_alert_len| is the size of
 * alert bytes that a side which had already finished would get through its
 * record layer. */
static int run_handshake(kh_tls_engine *c, kh_tls_engine *s, size_t chunk, kh_error *cerr,
                         kh_error *serr) {
  kh_buf c2s = KH_BUF_INIT, s2c = KH_BUF_INIT;
  int c_ok = 1, s_ok = 1;
  for (int round = 0; round < 20 && c_ok && s_ok; round++) {
    if (!kh_tls_engine_done(c)) c_ok = deliver(c, &s2c, chunk, &c2s, cerr);
    if (c_ok && !kh_tls_engine_done(s)) s_ok = deliver(s, &c2s, chunk, &s2c, serr);
    if (kh_tls_engine_done(c) && kh_tls_engine_done(s)) break;
  }
  if (!s_ok && !kh_tls_engine_done(c) && s2c.len > 0) deliver(c, &s2c, 0, &c2s, cerr);
  if (!c_ok && !kh_tls_engine_done(s) && c2s.len > 0) deliver(s, &c2s, 0, &s2c, serr);
  kh_buf_free(&c2s);
  kh_buf_free(&s2c);
  return c_ok && s_ok && kh_tls_engine_done(c) && kh_tls_engine_done(s);
}

static void check_mirrored(kh_tls_engine *c, kh_tls_engine *s) {
  kh_tls_result cr, sr;
  kh_error err;
  ck_assert_msg(kh_tls_engine_result(c, &cr, &err), "%s", err.msg);
  ck_assert_msg(kh_tls_engine_result(s, &sr, &err), "%s", err.msg);
  ck_assert_int_eq(cr.keys.tls_version, 0x0304);
  ck_assert_int_eq(cr.keys.suite, sr.keys.suite);
  ck_assert_uint_eq(cr.keys.secret_len, kh_suite_secret_len(cr.keys.suite));
  ck_assert_mem_eq(cr.keys.out_secret, sr.keys.in_secret, cr.keys.secret_len);
  ck_assert_mem_eq(cr.keys.in_secret, sr.keys.out_secret, cr.keys.secret_len);
  ck_assert(memcmp(cr.keys.in_secret, cr.keys.out_secret, cr.keys.secret_len) != 0);
  ck_assert_str_eq(cr.alpn, "grpc");
  ck_assert_str_eq(sr.alpn, "grpc");
  ck_assert_str_eq(cr.peer_name, sr.local_name);
  ck_assert_str_eq(sr.peer_name, cr.local_name);
  ck_assert_mem_eq(cr.peer_fingerprint, sr.local_fingerprint, KH_SHA256_LEN);
  ck_assert_mem_eq(sr.peer_fingerprint, cr.local_fingerprint, KH_SHA256_LEN);
  /* Application-data epochs start at zero; a server that wrote
   * NewSessionTickets counts them in its write sequence, and the client has
   * read none of them during the handshake. */
  ck_assert_uint_eq(cr.keys.in_sequence, 0);
  ck_assert_uint_eq(cr.keys.out_sequence, 0);
  ck_assert_uint_eq(sr.keys.in_sequence, 0);
  kh_wipe(&cr, sizeof(cr));
  kh_wipe(&sr, sizeof(sr));
}

START_TEST(test_handshake_in_memory) {
  kh_tls_engine *c = client_engine("spiffe://example.org/client", "spiffe://example.org/server");
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_error cerr, serr;
  ck_assert_msg(run_handshake(c, s, 0, &cerr, &serr), "c=%s s=%s", cerr.msg, serr.msg);
  check_mirrored(c, s);
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_handshake_byte_at_a_time) {
  kh_tls_engine *c = client_engine("spiffe://example.org/client", NULL);
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_error cerr, serr;
  ck_assert_msg(run_handshake(c, s, 1, &cerr, &serr), "c=%s s=%s", cerr.msg, serr.msg);
  check_mirrored(c, s);
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

/* The client's final flight and trailing application bytes arrive in one
 * delivery: the server must consume exactly the handshake bytes. */
START_TEST(test_coalesced_trailing_bytes_not_consumed) {
  kh_tls_engine *c = client_engine("spiffe://example.org/client", NULL);
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_buf c2s = KH_BUF_INIT, s2c = KH_BUF_INIT;
  kh_error err;
  size_t used;
  ck_assert(kh_tls_engine_step(c, NULL, 0, &used, &c2s, &err));           /* CH */
  ck_assert(kh_tls_engine_step(s, c2s.data, c2s.len, &used, &s2c, &err)); /* SH.. */
  ck_assert_uint_eq(used, c2s.len);
  kh_buf_reset(&c2s);
  ck_assert(kh_tls_engine_step(c, s2c.data, s2c.len, &used, &c2s, &err)); /* Fin */
  ck_assert_uint_eq(used, s2c.len);
  ck_assert(kh_tls_engine_done(c));
  size_t flight = c2s.len;
  static const uint8_t app[] = {0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5};
  ck_assert(kh_buf_append(&c2s, app, sizeof(app)));
  kh_buf_reset(&s2c);
  ck_assert_msg(kh_tls_engine_step(s, c2s.data, c2s.len, &used, &s2c, &err), "%s", err.msg);
  ck_assert(kh_tls_engine_done(s));
  ck_assert_uint_eq(used, flight);
  /* Anything more the server sends now is not part of the client's handshake. */
  ck_assert(kh_tls_engine_step(c, app, sizeof(app), &used, &c2s, &err));
  ck_assert_uint_eq(used, 0);
  check_mirrored(c, s);
  kh_buf_free(&c2s);
  kh_buf_free(&s2c);
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_key_types) {
  static const char *names[] = {"spiffe://example.org/rsa", "spiffe://example.org/ed25519",
                                "spiffe://example.org/p384"};
  for (size_t i = 0; i < 3; i++) {
    kh_tls_engine *c = client_engine("spiffe://example.org/client", names[i]);
    kh_tls_engine *s = server_engine(names[i]);
    kh_error cerr, serr;
    ck_assert_msg(run_handshake(c, s, 0, &cerr, &serr), "%s: c=%s s=%s", names[i], cerr.msg,
                  serr.msg);
    check_mirrored(c, s);
    kh_tls_engine_free(c);
    kh_tls_engine_free(s);
  }
}
END_TEST

/* An identity rotated under a handshake that has started: the handshake
 * signs with, and presents, the identity it started with; the next one
 * gets the new identity and a context of its own. */
START_TEST(test_rotation_keeps_a_running_handshake_on_its_identity) {
  uint8_t old_fp[KH_SHA256_LEN], new_fp[KH_SHA256_LEN];
  memcpy(old_fp, kh_identity_fingerprint(find("spiffe://example.org/server")), KH_SHA256_LEN);
  /* Both handshakes start (the server has not signed yet), then the
   * server's identity directory gets another key and certificate. */
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_tls_engine *c = client_engine("spiffe://example.org/client", NULL);
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "cp %s/ids/p384/tls.crt %s/ids/p384/tls.key %s/ids/server/", g_pki,
           g_pki, g_pki);
  ck_assert_int_eq(system(cmd), 0);
  kh_error err, cerr, serr;
  ck_assert_msg(kh_identity_store_reload(g_store, "server", &err), "%s", err.msg);
  kh_identity *now = NULL;
  for (size_t i = 0; i < kh_identity_store_count(g_store); i++) {
    if (strcmp(kh_identity_dir_name(kh_identity_store_get(g_store, i)), "server") == 0)
      now = (kh_identity *)kh_identity_store_get(g_store, i);
  }
  ck_assert(now != NULL);
  ck_assert_int_eq(kh_identity_key_type(now), KH_KEY_ECDSA_P384);
  memcpy(new_fp, kh_identity_fingerprint(now), KH_SHA256_LEN);
  ck_assert(memcmp(old_fp, new_fp, KH_SHA256_LEN) != 0);
  /* The running handshake signs with the old key, presents the old leaf. */
  ck_assert_msg(run_handshake(c, s, 0, &cerr, &serr), "c=%s s=%s", cerr.msg, serr.msg);
  kh_tls_result sr, cr;
  ck_assert(kh_tls_engine_result(s, &sr, &err));
  ck_assert(kh_tls_engine_result(c, &cr, &err));
  ck_assert_mem_eq(sr.local_fingerprint, old_fp, KH_SHA256_LEN);
  ck_assert_mem_eq(cr.peer_fingerprint, old_fp, KH_SHA256_LEN);
  kh_wipe(&sr, sizeof(sr));
  kh_wipe(&cr, sizeof(cr));
  kh_tls_engine_free(c);
  kh_tls_engine_free(s); /* the old identity's last reference: its contexts go with it */
  /* The next handshake gets the rotated identity and its own context. */
  kh_tls_config cfg = {.side = KH_TLS_SERVER, .identity = now};
  s = kh_tls_engine_new(&cfg, &err);
  ck_assert_msg(s != NULL, "%s", err.msg);
  c = client_engine("spiffe://example.org/client", NULL);
  ck_assert_msg(run_handshake(c, s, 0, &cerr, &serr), "c=%s s=%s", cerr.msg, serr.msg);
  ck_assert(kh_tls_engine_result(c, &cr, &err));
  ck_assert_mem_eq(cr.peer_fingerprint, new_fp, KH_SHA256_LEN);
  kh_wipe(&cr, sizeof(cr));
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_expect_peer_mismatch_fails) {
  kh_tls_engine *c = client_engine("spiffe://example.org/client", "spiffe://example.org/other");
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_error cerr = {0}, serr = {0};
  ck_assert(!run_handshake(c, s, 0, &cerr, &serr));
  ck_assert_int_eq(cerr.code, KH_ERR_HANDSHAKE);
  ck_assert_msg(strstr(cerr.msg, "spiffe://example.org/server is not one of") != NULL, "%s",
                cerr.msg);
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_rogue_ca_rejected) {
  /* A client identity whose certificate comes from another CA. */
  char dir[300], cmd[4096];
  snprintf(dir, sizeof(dir), "%s/rogue-id", g_pki);
  snprintf(cmd, sizeof(cmd),
           "mkdir -p %s && cp %s/rogue/client.crt %s/tls.crt && cp %s/rogue/client.key %s/tls.key"
           " && cp %s/ca/ca.crt %s/ca.crt",
           dir, g_pki, dir, g_pki, dir, g_pki, dir);
  ck_assert_int_eq(system(cmd), 0);
  kh_error err;
  kh_identity *rogue = kh_identity_load(dir, &err);
  ck_assert_msg(rogue != NULL, "%s", err.msg);
  kh_tls_config cfg = {.side = KH_TLS_CLIENT, .identity = rogue};
  kh_tls_engine *c = kh_tls_engine_new(&cfg, &err);
  ck_assert(c != NULL);
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  kh_error cerr = {0}, serr = {0};
  ck_assert(!run_handshake(c, s, 0, &cerr, &serr));
  ck_assert_int_eq(serr.code, KH_ERR_HANDSHAKE);
  ck_assert_msg(strstr(serr.msg, "peer certificate rejected") != NULL, "%s", serr.msg);
  /* In TLS 1.3 the client finishes before the server checks its
   * certificate; it learns of the rejection from the alert, in its record
   * layer. */
  ck_assert(kh_tls_engine_done(c));
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
  kh_identity_unref(rogue);
}
END_TEST

START_TEST(test_garbage_input_fails_cleanly) {
  kh_tls_engine *s = server_engine("spiffe://example.org/server");
  static const uint8_t junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  kh_buf out = KH_BUF_INIT;
  kh_error err;
  size_t used;
  ck_assert(!kh_tls_engine_step(s, junk, sizeof(junk) - 1, &used, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_HANDSHAKE);
  ck_assert(!kh_tls_engine_step(s, junk, 1, &used, &out, &err));
  ck_assert_int_eq(err.code, KH_ERR_FAILED_PRECONDITION);
  kh_buf_free(&out);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_suite_restriction_enforced) {
  kh_tls_config cfg = {.side = KH_TLS_CLIENT, .identity = find("spiffe://example.org/client")};
  /* Allow only a suite the server will not pick first? BoringSSL's server
   * picks from the client's order; both engines restricted differently. */
  cfg.allowed_suites = KH_SUITE_BIT(KH_SUITE_CHACHA20_POLY1305_SHA256);
  kh_error err;
  kh_tls_engine *c = kh_tls_engine_new(&cfg, &err);
  kh_tls_config scfg = {.side = KH_TLS_SERVER, .identity = find("spiffe://example.org/server")};
  scfg.allowed_suites =
      KH_SUITE_BIT(KH_SUITE_AES_128_GCM_SHA256) | KH_SUITE_BIT(KH_SUITE_AES_256_GCM_SHA384);
  kh_tls_engine *s = kh_tls_engine_new(&scfg, &err);
  kh_error cerr = {0}, serr = {0};
  ck_assert(!run_handshake(c, s, 0, &cerr, &serr));
  ck_assert_msg(strstr(cerr.msg, "not allowed") || strstr(serr.msg, "not allowed"), "c=%s s=%s",
                cerr.msg, serr.msg);
  kh_tls_engine_free(c);
  kh_tls_engine_free(s);
}
END_TEST

START_TEST(test_session_fits_only_its_certificate) {
  kh_identity *client = find("spiffe://example.org/client"),
              *server = find("spiffe://example.org/server");
  SSL_SESSION *s = kh_test_client_session(client, server);
  ck_assert(s != NULL);
  ck_assert(kh_tls_session_fits(client, 0, s));
  /* Another certificate (after a rotation): another session ID context. */
  ck_assert(!kh_tls_session_fits(server, 0, s));
  int suite = kh_suite_from_iana(SSL_CIPHER_get_protocol_id(SSL_SESSION_get0_cipher(s)));
  ck_assert_int_ge(suite, 0);
  ck_assert(kh_tls_session_fits(client, KH_SUITE_BIT(suite), s));
  ck_assert(!kh_tls_session_fits(client, KH_SUITE_ALL & ~KH_SUITE_BIT(suite), s));
  SSL_SESSION_set_time(s, SSL_SESSION_get_time(s) - SSL_SESSION_get_timeout(s) - 1);
  ck_assert(!kh_tls_session_fits(client, 0, s)); /* expired */
  SSL_SESSION_free(s);
}
END_TEST

/* hello_offers: does a client engine given |session| offer it? */
static int hello_offers(SSL_SESSION *session) {
  kh_tls_config cfg = {.side = KH_TLS_CLIENT, .identity = find("spiffe://example.org/client")};
  cfg.session = session;
  kh_error err;
  kh_tls_engine *e = kh_tls_engine_new(&cfg, &err);
  ck_assert_msg(e != NULL, "%s", err.msg);
  kh_buf hello = KH_BUF_INIT;
  size_t used;
  ck_assert(kh_tls_engine_step(e, NULL, 0, &used, &hello, &err));
  int offers = kh_test_offers_psk(hello.data, hello.len);
  kh_buf_free(&hello);
  kh_tls_engine_free(e);
  return offers;
}

START_TEST(test_engine_offers_only_a_fitting_session) {
  kh_identity *client = find("spiffe://example.org/client"),
              *server = find("spiffe://example.org/server");
  SSL_SESSION *mine = kh_test_client_session(client, server);
  SSL_SESSION *other = kh_test_client_session(server, server); /* another certificate's */
  ck_assert(mine != NULL && other != NULL);
  ck_assert(hello_offers(mine));
  ck_assert(!hello_offers(other)); /* a full handshake, not a failing one */
  ck_assert(!hello_offers(NULL));
  SSL_SESSION_free(mine);
  SSL_SESSION_free(other);
}
END_TEST

int main(void) {
  Suite *su = suite_create("tls_engine");
  TCase *tc = tcase_create("engine");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_handshake_in_memory);
  tcase_add_test(tc, test_handshake_byte_at_a_time);
  tcase_add_test(tc, test_coalesced_trailing_bytes_not_consumed);
  tcase_add_test(tc, test_key_types);
  tcase_add_test(tc, test_expect_peer_mismatch_fails);
  tcase_add_test(tc, test_rogue_ca_rejected);
  tcase_add_test(tc, test_garbage_input_fails_cleanly);
  tcase_add_test(tc, test_suite_restriction_enforced);
  tcase_add_test(tc, test_rotation_keeps_a_running_handshake_on_its_identity);
  tcase_add_test(tc, test_session_fits_only_its_certificate);
  tcase_add_test(tc, test_engine_offers_only_a_fitting_session);
  suite_add_tcase(su, tc);
  return kh_test_run(su);
}
