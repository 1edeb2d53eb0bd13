/* channel_http.c: see channel_http.h. */
#include "channel_http.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY ((1u << 20) + 64)

struct kh_http_link {
  CURL *post, *get;
  char send_url[512], recv_url[512];
};

typedef struct {
  uint8_t *data;
  size_t len;
  int too_big;
} body;

static size_t collect(char *p, size_t size, size_t n, void *arg) {
  body *b = arg;
  size_t add = size * n;
  if (b->len + add > MAX_BODY) {
    b->too_big = 1;
    return 0;
  }
  uint8_t *d = realloc(b->data, b->len + add + 1);
  if (d == NULL) return 0;
  memcpy(d + b->len, p, add);
  b->data = d;
  b->len += add;
  return add;
}

static CURL *handle(const char *url, const char *proxy, const char *cacert) {
  CURL *c = curl_easy_init();
  if (c == NULL) return NULL;
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (proxy != NULL) curl_easy_setopt(c, CURLOPT_PROXY, proxy);
  if (cacert != NULL) curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
  return c;
}

kh_http_link *kh_http_open(const char *base, const char *send_box, const char *recv_box,
                           const char *proxy, const char *cacert) {
  static int inited;
  if (!inited && curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return NULL;
  inited = 1;
  kh_http_link *h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  snprintf(h->send_url, sizeof(h->send_url), "%s/box/%s", base, send_box);
  snprintf(h->recv_url, sizeof(h->recv_url), "%s/box/%s", base, recv_box);
  h->post = handle(h->send_url, proxy, cacert);
  h->get = handle(h->recv_url, proxy, cacert);
  if (h->post == NULL || h->get == NULL) {
    kh_http_close(h);
    return NULL;
  }
  return h;
}

void kh_http_close(kh_http_link *h) {
  if (h == NULL) return;
  curl_easy_cleanup(h->post);
  curl_easy_cleanup(h->get);
  free(h);
}

/* perform runs |c| and checks the status is one of |ok1|, |ok2|. */
static int perform(CURL *c, const char *what, long ok1, long ok2, long *status, char *err,
                   size_t err_len) {
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    snprintf(err, err_len, "%s: %s", what, curl_easy_strerror(rc));
    return 0;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
  if (*status != ok1 && *status != ok2) {
    snprintf(err, err_len, "%s: HTTP status %ld", what, *status);
    return 0;
  }
  return 1;
}

int kh_http_post(kh_http_link *h, const uint8_t *frame, size_t len, char *err, size_t err_len) {
  body sink = {0};
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/octet-stream");
  curl_easy_setopt(h->post, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(h->post, CURLOPT_POSTFIELDS, (const char *)frame);
  curl_easy_setopt(h->post, CURLOPT_POSTFIELDSIZE, (long)len);
  curl_easy_setopt(h->post, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h->post, CURLOPT_WRITEDATA, &sink);
  long status = 0;
  int ok = perform(h->post, "POST", 204, 200, &status, err, err_len);
  curl_slist_free_all(hdr);
  free(sink.data);
  return ok;
}

int kh_http_fetch(kh_http_link *h, uint8_t **out, size_t *len, char *err, size_t err_len) {
  body b = {0};
  curl_easy_setopt(h->get, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(h->get, CURLOPT_WRITEDATA, &b);
  long status = 0;
  if (!perform(h->get, "GET", 200, 204, &status, err, err_len)) {
    if (b.too_big) snprintf(err, err_len, "GET: a frame over %u bytes", MAX_BODY);
    free(b.data);
    return -1;
  }
  if (status == 204) {
    free(b.data);
    return 0;
  }
  *out = b.data != NULL ? b.data : malloc(1);
  *len = b.len;
  return *out != NULL ? 1 : -1;
}
