/* The client session cache (resume.c): what a session is bound to (caller
 * uid, identity, certificate, target), single use, the purge of an
 * identity's sessions when its certificate changes, expiry, replacement. */
#include <check.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "resume.h"
#include "testutil.h"

static SSL_CTX *g_ctx; /* SSL_SESSION_new wants one */

static SSL_SESSION *new_session(void) {
  SSL_SESSION *s = SSL_SESSION_new(g_ctx);
  ck_assert(s != NULL);
  ck_assert(SSL_SESSION_set_ticket(s, (const uint8_t *)"ticket", 6));
  SSL_SESSION_set_time(s, (uint64_t)time(NULL));
  SSL_SESSION_set_timeout(s, 3600);
  ck_assert(SSL_SESSION_is_resumable(s));
  return s;
}

static kh_resume_key key(uid_t uid, const char *identity, uint8_t cert, const char *target) {
  kh_resume_key k = {.uid = uid, .identity = identity, .target = target};
  memset(k.cert, cert, sizeof(k.cert));
  return k;
}

/* take_is: kh_resume_take under |k| returns |want| (NULL: nothing). */
static void take_is(kh_resume *r, kh_resume_key k, SSL_SESSION *want) {
  SSL_SESSION *got = kh_resume_take(r, &k);
  ck_assert_ptr_eq(got, want);
  SSL_SESSION_free(got);
}

START_TEST(test_bound_to_uid_identity_cert_target) {
  kh_resume *r = kh_resume_new();
  SSL_SESSION *s = new_session();
  kh_resume_key k = key(0, "client", 0xaa, "target");
  kh_resume_put(r, &k, s);
  take_is(r, key(65534, "client", 0xaa, "target"), NULL); /* another caller */
  take_is(r, key(0, "client", 0xaa, "other"), NULL);      /* another target */
  take_is(r, key(0, "web", 0xaa, "target"), NULL);        /* another identity, same cert */
  take_is(r, k, s);
  take_is(r, k, NULL); /* offered once */
  kh_resume_free(r);
}
END_TEST

START_TEST(test_new_certificate_purges_old_sessions) {
  kh_resume *r = kh_resume_new();
  SSL_SESSION *old0 = new_session(), *old1 = new_session(), *other = new_session(),
              *newer = new_session();
  kh_resume_key k0 = key(0, "client", 0xaa, "a"), k1 = key(65534, "client", 0xaa, "b"),
                ko = key(0, "server", 0xaa, "a"), kn = key(0, "client", 0xbb, "c");
  kh_resume_put(r, &k0, old0);
  kh_resume_put(r, &k1, old1);
  kh_resume_put(r, &ko, other);
  kh_resume_put(r, &kn, newer);
  /* A handshake of "client" under certificate 0xbb (it rotated), any target. */
  take_is(r, key(0, "client", 0xbb, "d"), NULL);
  take_is(r, kn, newer); /* the new certificate's own session stays */
  take_is(r, ko, other); /* another identity keeps its sessions */
  take_is(r, k0, NULL);  /* made by the old certificate: gone */
  take_is(r, k1, NULL);  /* for every caller and target */
  kh_resume_free(r);
}
END_TEST

START_TEST(test_expired_session_dropped) {
  kh_resume *r = kh_resume_new();
  SSL_SESSION *s = new_session();
  SSL_SESSION_set_time(s, (uint64_t)time(NULL) - 7200);
  kh_resume_key k = key(0, "client", 0xaa, "t");
  kh_resume_put(r, &k, s);
  take_is(r, k, NULL);
  kh_resume_free(r);
}
END_TEST

START_TEST(test_put_replaces_and_lru_bounds) {
  kh_resume *r = kh_resume_new();
  kh_resume_key k = key(0, "client", 0xaa, "t");
  SSL_SESSION *a = new_session(), *b = new_session();
  kh_resume_put(r, &k, a);
  kh_resume_put(r, &k, b); /* a is freed */
  take_is(r, k, b);
  char names[KH_RESUME_MAX_SESSIONS + 1][16];
  for (int i = 0; i <= KH_RESUME_MAX_SESSIONS; i++) {
    snprintf(names[i], sizeof(names[i]), "t%d", i);
    kh_resume_key ki = key(0, "client", 0xaa, names[i]);
    kh_resume_put(r, &ki, new_session());
  }
  take_is(r, key(0, "client", 0xaa, names[0]), NULL); /* the least recently stored went */
  kh_resume_key newest = key(0, "client", 0xaa, names[KH_RESUME_MAX_SESSIONS]);
  SSL_SESSION *got = kh_resume_take(r, &newest);
  ck_assert_ptr_nonnull(got);
  SSL_SESSION_free(got);
  kh_resume_free(r);
}
END_TEST

START_TEST(test_tickets_for_unknown_connection) {
  kh_resume *r = kh_resume_new();
  const uint8_t msg[] = {4, 0, 0, 0};
  const uint8_t *msgs[1] = {msg};
  size_t lens[1] = {sizeof(msg)};
  kh_error err;
  ck_assert(!kh_resume_tickets(r, 42, 0, msgs, lens, 1, &err));
  ck_assert_int_eq(err.code, KH_ERR_NOT_FOUND);
  kh_resume_free(r);
}
END_TEST

int main(void) {
  g_ctx = SSL_CTX_new(TLS_method());
  Suite *su = suite_create("resume");
  TCase *tc = tcase_create("cache");
  tcase_add_test(tc, test_bound_to_uid_identity_cert_target);
  tcase_add_test(tc, test_new_certificate_purges_old_sessions);
  tcase_add_test(tc, test_expired_session_dropped);
  tcase_add_test(tc, test_put_replaces_and_lru_bounds);
  tcase_add_test(tc, test_tickets_for_unknown_connection);
  suite_add_tcase(su, tc);
  int rc = kh_test_run(su);
  SSL_CTX_free(g_ctx);
  return rc;
}
