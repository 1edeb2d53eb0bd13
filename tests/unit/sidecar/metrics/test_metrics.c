/* sidecar/metrics: the exposition is well formed (HELP/TYPE for every
 * family, cumulative histogram buckets, escaped label values), counters
 * add up, gauges are replaced, and a full registry drops and counts. */
#include <check.h>

#include "testutil.h"

#include "metrics.h"

static char *render(void) {
  kh_buf b = KH_BUF_INIT;
  ck_assert(kh_metrics_render(&b));
  char *s = calloc(1, b.len + 1);
  memcpy(s, b.data, b.len);
  kh_buf_free(&b);
  return s;
}

static int has_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return 1;
  return 0;
}

START_TEST(test_counters_and_histogram) {
  kh_metrics_reset();
  kh_metrics_call("s2a.proto.S2AService", "client", "OK", "spiffe://a", 0.002);
  kh_metrics_call("s2a.proto.S2AService", "client", "OK", "spiffe://a", 0.2);
  kh_metrics_call("s2a.proto.S2AService", "-", "NOT_FOUND", "-", 0.0);
  char *t = render();
  ck_assert(has_line(t,
                     "keyhold_handshakes_total{service=\"s2a.proto.S2AService\",side=\"client\","
                     "result=\"OK\",identity=\"spiffe://a\"} 2"));
  ck_assert(has_line(t,
                     "keyhold_refusals_total{service=\"s2a.proto.S2AService\","
                     "reason=\"NOT_FOUND\"} 1"));
  ck_assert(has_line(t,
                     "keyhold_handshake_duration_seconds_bucket{service=\"s2a.proto.S2AService\","
                     "le=\"0.001\"} 1"));
  ck_assert(has_line(t,
                     "keyhold_handshake_duration_seconds_bucket{service=\"s2a.proto.S2AService\","
                     "le=\"0.0025\"} 2"));
  ck_assert(has_line(t,
                     "keyhold_handshake_duration_seconds_bucket{service=\"s2a.proto.S2AService\","
                     "le=\"0.25\"} 3"));
  ck_assert(has_line(t,
                     "keyhold_handshake_duration_seconds_bucket{service=\"s2a.proto.S2AService\","
                     "le=\"+Inf\"} 3"));
  ck_assert(
      has_line(t, "keyhold_handshake_duration_seconds_count{service=\"s2a.proto.S2AService\"} 3"));
  ck_assert(has_line(t, "# TYPE keyhold_handshake_duration_seconds histogram"));
  ck_assert(has_line(t, "# TYPE keyhold_certificate_expiry_seconds gauge"));
  ck_assert(has_line(t, "keyhold_metrics_series_dropped_total 0"));
  free(t);
}
END_TEST

START_TEST(test_gauges_and_escaping) {
  kh_metrics_reset();
  kh_metrics_set_in_flight(5);
  kh_metrics_set_in_flight(2);
  kh_metrics_set_expiry("d", "we\"ird\\name\n", 86400);
  kh_metrics_reload("policy", 0);
  char *t = render();
  ck_assert(has_line(t, "keyhold_handshakes_in_flight 2"));
  ck_assert(has_line(
      t, "keyhold_certificate_expiry_seconds{dir=\"d\",identity=\"we\\\"ird\\\\name\\n\"} 86400"));
  ck_assert(has_line(t, "keyhold_reloads_total{kind=\"policy\",result=\"refused\"} 1"));
  free(t);
  kh_metrics_clear_expiry();
  t = render();
  ck_assert_ptr_null(strstr(t, "keyhold_certificate_expiry_seconds{"));
  ck_assert(has_line(t, "keyhold_handshakes_in_flight 2"));
  free(t);
}
END_TEST

START_TEST(test_full_registry_drops) {
  kh_metrics_reset();
  char id[32];
  for (int i = 0; i < KH_METRICS_MAX_SERIES + 10; i++) {
    snprintf(id, sizeof(id), "id-%d", i);
    kh_metrics_set_expiry("d", id, i);
  }
  char *t = render();
  ck_assert(has_line(t, "keyhold_metrics_series_dropped_total 10"));
  free(t);
}
END_TEST

int main(void) {
  Suite *s = suite_create("metrics");
  TCase *tc = tcase_create("metrics");
  tcase_add_test(tc, test_counters_and_histogram);
  tcase_add_test(tc, test_gauges_and_escaping);
  tcase_add_test(tc, test_full_registry_drops);
  suite_add_tcase(s, tc);
  return kh_test_run(s);
}
