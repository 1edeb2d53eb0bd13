/* channel_cmd.c: `keyhold channel`, secure channels from a shell.
 *   keyhold channel initiate|respond --sidecar PATH [options]
 *   keyhold channel pubkey --sidecar PATH [--identity ID]
 *
 * The handshake frames and the sealed messages are carried over --via:
 *   stdio                frames in on stdin, out on stdout (pipe it through
 *                        anything: mosquitto_sub/pub, ssh, a file)
 *   tcp-connect:HOST:PORT / tcp-listen:HOST:PORT   one TCP connection
 *   http(s)://HOST:PORT  an HTTP mailbox (tools/channel_relay.py): frames posted
 *                        to --box-send, fetched from --box-recv, optionally
 *                        through --proxy (an inspecting one: --cacert its CA)
 * The byte streams are framed as --framing base64 (one base64 line per frame: the default, what
 * line-based tools such as mosquitto_pub -l carry) or binary (a 4-byte
 * big-endian length, then the frame).
 *
 * Status goes to stderr, one line each:
 *   channel: PROTOCOL peer=SPIFFE-ID local=IDENTITY
 *   message: TEXT            (also to --out FILE, one per line)
 *   reject: CODE: REASON     (a message that did not open; the channel goes on)
 * Exit 0 once --expect N messages opened (or, without --expect, when the
 * input ends); 1 on a handshake failure or the --timeout deadline. */
#include "channel_cmd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "channel_http.h"
#include "cli_util.h"
#include "keyhold.h"

#define MAX_SENDS 64
#define MAX_FRAME (KH_CHANNEL_MAX_MESSAGE + KH_CHANNEL_OVERHEAD)

typedef enum { FRAMING_BASE64, FRAMING_BINARY } framing;

typedef struct {
  const char *sidecar, *via, *out_file, *send_file;
  const char *box_send, *box_recv, *proxy, *cacert;
  const char *sends[MAX_SENDS];
  size_t n_sends;
  framing framing;
  long expect;
  long timeout_ms;
  int echo;
  uint8_t responder_key[KH_CHANNEL_KEY_LEN];
  kh_channel_opts ch;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage:\n"
          "  keyhold channel initiate|respond --sidecar PATH [--identity ID]\n"
          "      [--expect-peer ID]... [--pattern XX|IK] [--responder-key HEX]\n"
          "      [--cipher ChaChaPoly|AESGCM] [--hash SHA256|SHA512|BLAKE2b]\n"
          "      [--via stdio|tcp-connect:HOST:PORT|tcp-listen:HOST:PORT|http(s)://HOST:PORT]\n"
          "      [--box-send NAME --box-recv NAME] [--proxy URL] [--cacert FILE]\n"
          "      [--framing base64|binary] [--send TEXT]... [--send-file FILE]\n"
          "      [--expect N] [--echo] [--out FILE] [--rekey-after N] [--timeout MS]\n"
          "  keyhold channel pubkey --sidecar PATH [--identity ID]\n"
          "--sidecar defaults to $KEYHOLD_SIDECAR. docs/CHANNELS.md.\n");
}

static int parse_hex_key(const char *hex, uint8_t out[KH_CHANNEL_KEY_LEN]) {
  size_t n = 0;
  return OPENSSL_hexstr2buf_ex(out, KH_CHANNEL_KEY_LEN, &n, hex, '\0') == 1 &&
         n == KH_CHANNEL_KEY_LEN;
}

/* one_of: |v| if it is in the NULL-terminated |allowed|, else dies listing them. */
static const char *one_of(const char *flag, const char *v, const char *const *allowed) {
  char list[128] = "";
  for (size_t i = 0; allowed[i] != NULL; i++) {
    if (strcmp(v, allowed[i]) == 0) return allowed[i];
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
  }
  kh_cli_die("%s '%s': use one of %s", flag, v, list);
}

static int parse(int argc, char **argv, options *o) {
  static const struct option opts[] = {
      {"sidecar", required_argument, NULL, 's'},
      {"identity", required_argument, NULL, 'i'},
      {"expect-peer", required_argument, NULL, 'p'},
      {"pattern", required_argument, NULL, 'P'},
      {"responder-key", required_argument, NULL, 'R'},
      {"cipher", required_argument, NULL, 'c'},
      {"hash", required_argument, NULL, 'H'},
      {"via", required_argument, NULL, 'v'},
      {"framing", required_argument, NULL, 'f'},
      {"send", required_argument, NULL, 'm'},
      {"send-file", required_argument, NULL, 'F'},
      {"expect", required_argument, NULL, 'n'},
      {"echo", no_argument, NULL, 'e'},
      {"out", required_argument, NULL, 'o'},
      {"rekey-after", required_argument, NULL, 'r'},
      {"timeout", required_argument, NULL, 't'},
      {"box-send", required_argument, NULL, 'S'},
      {"box-recv", required_argument, NULL, 'B'},
      {"proxy", required_argument, NULL, 'X'},
      {"cacert", required_argument, NULL, 'C'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  static const char *const patterns[] = {"XX", "IK", NULL};
  static const char *const ciphers[] = {"ChaChaPoly", "AESGCM", NULL};
  static const char *const hashes[] = {"SHA256", "SHA512", "BLAKE2b", NULL};
  static const char *const framings[] = {"base64", "binary", NULL};
  memset(o, 0, sizeof(*o));
  o->sidecar = getenv("KEYHOLD_SIDECAR");
  o->via = "stdio";
  o->expect = -1;
  o->timeout_ms = 30000;
  int c;
  optind = 3;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 's': o->sidecar = optarg; break;
      case 'i': o->ch.local_identity = optarg; break;
      case 'p':
        if (o->ch.expect_peer_count == KH_MAX_PEERS) kh_cli_die("too many --expect-peer");
        o->ch.expect_peers[o->ch.expect_peer_count++] = optarg;
        break;
      case 'P': o->ch.pattern = one_of("--pattern", optarg, patterns); break;
      case 'R':
        if (!parse_hex_key(optarg, o->responder_key))
          kh_cli_die("--responder-key: %d hex digits expected", 2 * KH_CHANNEL_KEY_LEN);
        o->ch.responder_key = o->responder_key;
        break;
      case 'c': o->ch.cipher = one_of("--cipher", optarg, ciphers); break;
      case 'H': o->ch.hash = one_of("--hash", optarg, hashes); break;
      case 'v': o->via = optarg; break;
      case 'f':
        o->framing = strcmp(one_of("--framing", optarg, framings), "binary") == 0 ? FRAMING_BINARY
                                                                                  : FRAMING_BASE64;
        break;
      case 'm':
        if (o->n_sends == MAX_SENDS) kh_cli_die("too many --send (max %d)", MAX_SENDS);
        o->sends[o->n_sends++] = optarg;
        break;
      case 'F': o->send_file = optarg; break;
      case 'n': o->expect = kh_cli_number("--expect", optarg, 0, 1L << 30); break;
      case 'e': o->echo = 1; break;
      case 'o': o->out_file = optarg; break;
      case 'r':
        o->ch.rekey_after = (uint64_t)kh_cli_number("--rekey-after", optarg, 1, 1L << 40);
        break;
      case 't': o->timeout_ms = kh_cli_number("--timeout", optarg, 1, 3600000); break;
      case 'S': o->box_send = optarg; break;
      case 'B': o->box_recv = optarg; break;
      case 'X': o->proxy = optarg; break;
      case 'C': o->cacert = optarg; break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); return 0;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 0;
  }
  if (o->sidecar == NULL) kh_cli_die("no sidecar socket: use --sidecar PATH or KEYHOLD_SIDECAR");
  o->ch.timeout_ms = (int)o->timeout_ms;
  return 1;
}

/* --- transport ------------------------------------------------------------ */

typedef struct {
  int in, out;
  framing framing;
  kh_http_link *http; /* --via http(s)://: frames are requests, no framing */
  uint8_t *buf;       /* bytes read, not yet a whole frame */
  size_t len, cap;
  int eof;
} link_t;

static int tcp_open(const char *spec, int listening) {
  char copy[300], *host, *port, msg[300], bound[80];
  snprintf(copy, sizeof(copy), "%s", spec);
  if (!kh_cli_split_hostport(copy, &host, &port)) kh_cli_die("--via: '%s' is not HOST:PORT", spec);
  if (!listening) {
    int fd = kh_cli_tcp_connect(host, port, msg, sizeof(msg));
    if (fd < 0) kh_cli_die("--via tcp-connect:%s: %s", spec, msg);
    return fd;
  }
  int ls = kh_cli_tcp_listen(host, port, 1, bound, sizeof(bound), msg, sizeof(msg));
  if (ls < 0) kh_cli_die("--via tcp-listen:%s: %s", spec, msg);
  fprintf(stderr, "channel: listening on %s\n", spec);
  int c = accept(ls, NULL, NULL);
  if (c < 0) kh_cli_die("accept: %s", strerror(errno));
  close(ls);
  return c;
}

static void link_open(link_t *l, const options *o) {
  memset(l, 0, sizeof(*l));
  l->framing = o->framing;
  if (strcmp(o->via, "stdio") == 0) {
    l->in = 0, l->out = 1;
  } else if (strncmp(o->via, "tcp-connect:", 12) == 0) {
    l->in = l->out = tcp_open(o->via + 12, 0);
  } else if (strncmp(o->via, "tcp-listen:", 11) == 0) {
    l->in = l->out = tcp_open(o->via + 11, 1);
  } else if (strncmp(o->via, "http://", 7) == 0 || strncmp(o->via, "https://", 8) == 0) {
    if (o->box_send == NULL || o->box_recv == NULL)
      kh_cli_die("--via %s needs --box-send NAME and --box-recv NAME", o->via);
    if ((l->http = kh_http_open(o->via, o->box_send, o->box_recv, o->proxy, o->cacert)) == NULL)
      kh_cli_die("cannot set up HTTP for %s", o->via);
  } else {
    kh_cli_die(
        "--via '%s': use stdio, tcp-connect:HOST:PORT, tcp-listen:HOST:PORT, "
        "http://HOST:PORT or https://HOST:PORT",
        o->via);
  }
}

static void write_all(int fd, const void *p, size_t len) {
  const uint8_t *b = p;
  while (len > 0) {
    ssize_t n = write(fd, b, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) kh_cli_die("transport write failed: %s", strerror(errno));
    b += n, len -= (size_t)n;
  }
}

static void link_send(link_t *l, const uint8_t *frame, size_t len) {
  if (l->http != NULL) {
    char why[300];
    if (!kh_http_post(l->http, frame, len, why, sizeof(why))) kh_cli_die("transport: %s", why);
    return;
  }
  if (l->framing == FRAMING_BINARY) {
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    write_all(l->out, hdr, 4);
    write_all(l->out, frame, len);
    return;
  }
  size_t cap = 4 * ((len + 2) / 3) + 2;
  char *line = malloc(cap);
  if (line == NULL) kh_cli_die("out of memory");
  int n = EVP_EncodeBlock((unsigned char *)line, frame, (int)len);
  line[n] = '\n';
  write_all(l->out, line, (size_t)n + 1);
  free(line);
}

/* link_take: the next whole frame in |out| (1), none yet (0), or -1 for a
 * malformed one (skipped). */
static int link_take(link_t *l, uint8_t **out, size_t *out_len) {
  if (l->framing == FRAMING_BINARY) {
    if (l->len < 4) return 0;
    size_t n =
        (size_t)l->buf[0] << 24 | (size_t)l->buf[1] << 16 | (size_t)l->buf[2] << 8 | l->buf[3];
    if (n > MAX_FRAME) kh_cli_die("transport: a frame of %zu bytes is over the limit", n);
    if (l->len < 4 + n) return 0;
    *out = malloc(n ? n : 1);
    if (*out == NULL) kh_cli_die("out of memory");
    memcpy(*out, l->buf + 4, n);
    *out_len = n;
    memmove(l->buf, l->buf + 4 + n, l->len - 4 - n);
    l->len -= 4 + n;
    return 1;
  }
  if (l->len == 0) return 0; /* nothing read yet: buf may still be NULL */
  uint8_t *nl = memchr(l->buf, '\n', l->len);
  if (nl == NULL) {
    if (l->len > 2 * MAX_FRAME) kh_cli_die("transport: a line over the frame limit");
    return 0;
  }
  size_t line = (size_t)(nl - l->buf), n = line;
  while (n > 0 && (l->buf[n - 1] == '\r' || l->buf[n - 1] == ' ')) n--;
  int r = -1;
  if (n > 0 && n % 4 == 0) {
    *out = malloc(3 * (n / 4) + 1);
    if (*out == NULL) kh_cli_die("out of memory");
    int got = EVP_DecodeBlock(*out, l->buf, (int)n);
    if (got >= 0) {
      size_t pad = (l->buf[n - 1] == '=') + (l->buf[n - 2] == '=');
      *out_len = (size_t)got - pad;
      r = 1;
    } else {
      free(*out);
    }
  }
  memmove(l->buf, nl + 1, l->len - line - 1);
  l->len -= line + 1;
  return n == 0 ? 0 : r;
}

static long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* link_recv waits for the next frame until |deadline|: 1 with a frame
 * (caller frees), 0 at the end of input, -1 at the deadline. Malformed
 * frames are reported and skipped. */
static int link_recv(link_t *l, long deadline, uint8_t **frame, size_t *len) {
  while (l->http != NULL) { /* each empty GET waits up to 1 s at the relay */
    char why[300];
    int r = kh_http_fetch(l->http, frame, len, why, sizeof(why));
    if (r == 1) return 1;
    if (r == -1) kh_cli_die("transport: %s", why);
    if (now_ms() >= deadline) return -1;
  }
  for (;;) {
    int r = link_take(l, frame, len);
    if (r == 1) return 1;
    if (r == -1) {
      fprintf(stderr, "reject: PROTOCOL: a transport frame that is not base64\n");
      continue;
    }
    if (l->eof) return 0;
    long left = deadline - now_ms();
    if (left <= 0) return -1;
    struct pollfd p = {.fd = l->in, .events = POLLIN};
    int pr = poll(&p, 1, (int)left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return -1;
    if (l->cap - l->len < 65536) {
      l->cap = l->cap ? 2 * l->cap : 131072;
      if ((l->buf = realloc(l->buf, l->cap)) == NULL) kh_cli_die("out of memory");
    }
    ssize_t n = read(l->in, l->buf + l->len, l->cap - l->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      l->eof = 1;
      if (l->framing == FRAMING_BASE64 && l->len > 0 && l->buf[l->len - 1] != '\n') {
        l->buf[l->len++] = '\n'; /* a last line without its newline */
      }
      continue;
    }
    l->len += (size_t)n;
  }
}

/* --- the channel ------------------------------------------------------------ */

static void send_output(kh_channel *ch, link_t *l) {
  size_t n;
  const uint8_t *out = kh_channel_output(ch, &n);
  if (out != NULL) link_send(l, out, n);
  kh_channel_output_consumed(ch);
}

static void seal_and_send(kh_channel *ch, link_t *l, const void *msg, size_t len) {
  size_t cap = len + KH_CHANNEL_OVERHEAD;
  uint8_t *sealed = malloc(cap);
  kh_error err;
  if (sealed == NULL) kh_cli_die("out of memory");
  ssize_t n = kh_channel_seal(ch, msg, len, sealed, cap, &err);
  if (n < 0) kh_cli_die("seal: %s: %s", kh_code_name(err.code), err.msg);
  link_send(l, sealed, (size_t)n);
  free(sealed);
}

static void handshake(kh_channel *ch, link_t *l, long deadline) {
  kh_error err;
  send_output(ch, l);
  while (!kh_channel_established(ch)) {
    uint8_t *frame;
    size_t len;
    int r = link_recv(l, deadline, &frame, &len);
    if (r == -1) kh_cli_die("handshake: DEADLINE_EXCEEDED: the peer did not answer in time");
    if (r == 0) kh_cli_die("handshake: the transport closed before the handshake finished");
    int ok = kh_channel_handshake(ch, frame, len, &err);
    free(frame);
    send_output(ch, l); /* the next frame, or an abort telling the peer why */
    if (!ok) kh_cli_die("handshake: %s: %s", kh_code_name(err.code), err.msg);
  }
  kh_channel_info info;
  kh_channel_get_info(ch, &info);
  fprintf(stderr, "channel: %s peer=%s local=%s\n", info.protocol, info.peer, info.local);
}

static void send_file(kh_channel *ch, link_t *l, const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) kh_cli_die("--send-file %s: %s", path, strerror(errno));
  uint8_t *buf = malloc(KH_CHANNEL_MAX_MESSAGE);
  if (buf == NULL) kh_cli_die("out of memory");
  size_t n = fread(buf, 1, KH_CHANNEL_MAX_MESSAGE, f);
  if (fgetc(f) != EOF) kh_cli_die("--send-file %s: over %u bytes", path, KH_CHANNEL_MAX_MESSAGE);
  fclose(f);
  seal_and_send(ch, l, buf, n);
  free(buf);
}

static int run(kh_channel *ch, link_t *l, const options *o, long deadline) {
  handshake(ch, l, deadline);
  for (size_t i = 0; i < o->n_sends; i++) seal_and_send(ch, l, o->sends[i], strlen(o->sends[i]));
  if (o->send_file != NULL) send_file(ch, l, o->send_file);
  FILE *out = NULL;
  if (o->out_file != NULL && (out = fopen(o->out_file, "w")) == NULL)
    kh_cli_die("--out %s: %s", o->out_file, strerror(errno));
  uint8_t *plain = malloc(KH_CHANNEL_MAX_MESSAGE);
  if (plain == NULL) kh_cli_die("out of memory");
  long opened = 0;
  int status = 0;
  while (o->expect < 0 || opened < o->expect) {
    uint8_t *frame;
    size_t len;
    int r = link_recv(l, deadline, &frame, &len);
    if (r == 0) {
      if (o->expect >= 0)
        status = kh_cli_fail("the transport closed after %ld of %ld messages", opened, o->expect);
      break;
    }
    if (r == -1) {
      status = kh_cli_fail("DEADLINE_EXCEEDED: %ld of %ld messages in time", opened, o->expect);
      break;
    }
    kh_error err;
    ssize_t n = kh_channel_open(ch, frame, len, plain, KH_CHANNEL_MAX_MESSAGE, &err);
    free(frame);
    if (n < 0 && !kh_channel_established(ch)) {
      status = kh_cli_fail("%s: %s", kh_code_name(err.code), err.msg);
      break;
    }
    if (n < 0) {
      fprintf(stderr, "reject: %s: %s\n", kh_code_name(err.code), err.msg);
      continue;
    }
    opened++;
    fprintf(stderr, "message: %.*s\n", (int)n, (const char *)plain);
    if (out != NULL) fprintf(out, "%.*s\n", (int)n, (const char *)plain), fflush(out);
    if (o->echo) {
      char *reply = malloc((size_t)n + 6);
      if (reply == NULL) kh_cli_die("out of memory");
      memcpy(reply, "echo: ", 6);
      memcpy(reply + 6, plain, (size_t)n);
      seal_and_send(ch, l, reply, (size_t)n + 6);
      free(reply);
    }
  }
  kh_channel_info info;
  kh_channel_get_info(ch, &info);
  fprintf(stderr, "channel: done sent=%llu opened=%llu rejected=%llu\n",
          (unsigned long long)info.sent, (unsigned long long)info.opened,
          (unsigned long long)info.rejected);
  if (out != NULL) fclose(out);
  free(plain);
  return status;
}

static int cmd_pubkey(int argc, char **argv) {
  options o;
  if (!parse(argc, argv, &o)) return 2;
  kh_error err;
  kh_client *kc = kh_client_new(o.sidecar, &err);
  if (kc == NULL) kh_cli_die("%s", err.msg);
  uint8_t key[KH_CHANNEL_KEY_LEN];
  if (!kh_channel_static_key(kc, o.ch.local_identity, key, (int)o.timeout_ms, &err))
    kh_cli_die("pubkey: %s: %s", kh_code_name(err.code), err.msg);
  for (size_t i = 0; i < sizeof(key); i++) printf("%02x", key[i]);
  printf("\n");
  kh_client_free(kc);
  return 0;
}

int kh_cli_channel(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[2], "--help") == 0) {
    usage(argc < 3 ? stderr : stdout);
    return argc < 3 ? 2 : 0;
  }
  if (strcmp(argv[2], "pubkey") == 0) return cmd_pubkey(argc, argv);
  int initiator = strcmp(argv[2], "initiate") == 0;
  if (!initiator && strcmp(argv[2], "respond") != 0) {
    fprintf(stderr, "keyhold: channel '%s': use initiate, respond or pubkey\n", argv[2]);
    return 2;
  }
  options o;
  if (!parse(argc, argv, &o)) return 2;
  long deadline = now_ms() + o.timeout_ms;
  kh_error err;
  kh_client *kc = kh_client_new(o.sidecar, &err);
  if (kc == NULL) kh_cli_die("%s", err.msg);
  link_t l;
  link_open(&l, &o);
  kh_channel *ch =
      kh_channel_new(kc, initiator ? KH_CHANNEL_INITIATOR : KH_CHANNEL_RESPONDER, &o.ch, &err);
  if (ch == NULL) kh_cli_die("handshake: %s: %s", kh_code_name(err.code), err.msg);
  int status = run(ch, &l, &o, deadline);
  kh_channel_free(ch);
  kh_client_free(kc);
  free(l.buf);
  kh_http_close(l.http);
  return status;
}
