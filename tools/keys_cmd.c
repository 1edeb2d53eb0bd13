/* keys_cmd.c: key operations from the shell (sealed messages, DPoP).
 *   keyhold pubkey --sidecar PATH [--identity ID]   the sealing key, hex
 *   keyhold seal --to HEX [--in FILE]               sender side: no sidecar
 *   keyhold open --sidecar PATH [--identity ID] [--in FILE]
 *   keyhold dpop --sidecar PATH --htm M --htu URI [--nonce N] [--ath-of TOKEN]
 * Messages go in on stdin (or --in) and out on stdout, raw bytes. */
#include "keys_cmd.h"

#include <getopt.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "keyhold.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage:\n"
          "  keyhold pubkey --sidecar PATH [--identity ID] [--access-token T]\n"
          "  keyhold seal --to HEX [--in FILE]\n"
          "  keyhold open --sidecar PATH [--identity ID] [--access-token T] [--in FILE]\n"
          "               [--envelope]   (a hybrid RSA envelope instead of a sealed box)\n"
          "  keyhold dpop --sidecar PATH [--identity ID] --htm METHOD --htu URI [--nonce N]\n"
          "               [--ath-of ACCESS_TOKEN] [--alg ES256|EdDSA]\n"
          "  keyhold dpop --sidecar PATH [--identity ID] --thumbprint [--alg ES256|EdDSA]\n"
          "pubkey prints the identity's sealing key (X25519, hex); seal writes a sealed box\n"
          "(crypto_box_seal) of stdin to it on stdout; open has keyholdd open one and\n"
          "writes the plaintext; dpop prints a DPoP proof (RFC 9449) signed in keyholdd,\n"
          "and the key's JWK thumbprint (jkt=...) on stderr. --sidecar defaults to\n"
          "$KEYHOLD_SIDECAR.\n");
}

typedef struct {
  const char *sidecar, *to, *in, *htm, *htu, *nonce, *ath_of, *alg;
  int thumbprint, envelope;
  kh_keyop_opts op;
} options;

static void parse(int argc, char **argv, options *o) {
  static const struct option opts[] = {
      {"sidecar", required_argument, NULL, 's'},
      {"identity", required_argument, NULL, 'i'},
      {"access-token", required_argument, NULL, 'T'},
      {"to", required_argument, NULL, 't'},
      {"in", required_argument, NULL, 'f'},
      {"timeout", required_argument, NULL, 'w'},
      {"htm", required_argument, NULL, 'm'},
      {"htu", required_argument, NULL, 'u'},
      {"nonce", required_argument, NULL, 'n'},
      {"ath-of", required_argument, NULL, 'a'},
      {"alg", required_argument, NULL, 'g'},
      {"thumbprint", no_argument, NULL, 'P'},
      {"envelope", no_argument, NULL, 'E'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  memset(o, 0, sizeof(*o));
  o->sidecar = getenv("KEYHOLD_SIDECAR");
  int c;
  optind = 2;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 's': o->sidecar = optarg; break;
      case 'i': o->op.local_identity = optarg; break;
      case 'T': o->op.access_token = optarg; break;
      case 't': o->to = optarg; break;
      case 'f': o->in = optarg; break;
      case 'm': o->htm = optarg; break;
      case 'u': o->htu = optarg; break;
      case 'n': o->nonce = optarg; break;
      case 'a': o->ath_of = optarg; break;
      case 'g': o->alg = optarg; break;
      case 'P': o->thumbprint = 1; break;
      case 'E': o->envelope = 1; break;
      case 'w': o->op.timeout_ms = (int)kh_cli_number("--timeout", optarg, 1, 600000); break;
      case 'h': usage(stdout); exit(0);
      default: usage(stderr); exit(2);
    }
  }
  if (optind != argc) {
    kh_cli_fail("%s: unexpected argument '%s'", argv[1], argv[optind]);
    exit(2);
  }
}

/* read_input: all of --in or stdin, at most |max| bytes. */
static uint8_t *read_input(const char *path, size_t max, size_t *len) {
  FILE *f = path ? fopen(path, "rb") : stdin;
  if (f == NULL) kh_cli_die("--in %s: cannot open", path);
  uint8_t *buf = malloc(max + 1);
  if (buf == NULL) kh_cli_die("%s", "out of memory");
  *len = fread(buf, 1, max + 1, f);
  if (path) fclose(f);
  if (*len > max) {
    free(buf);
    kh_cli_die("input over %zu bytes", max);
  }
  return buf;
}

static kh_client *client(const options *o) {
  if (o->sidecar == NULL) {
    kh_cli_fail("%s", "--sidecar PATH is required (or KEYHOLD_SIDECAR)");
    exit(2);
  }
  kh_error err;
  kh_client *kc = kh_client_new(o->sidecar, &err);
  if (kc == NULL) kh_cli_die("%s", err.msg);
  return kc;
}

static int cmd_pubkey(const options *o) {
  kh_client *kc = client(o);
  kh_error err;
  uint8_t key[KH_SEALING_KEY_LEN];
  int rc = 0;
  if (!kh_sealing_key(kc, &o->op, key, &err))
    rc = kh_cli_fail("pubkey: %s [%s]", err.msg, kh_code_name(err.code));
  for (size_t i = 0; rc == 0 && i < sizeof(key); i++) printf("%02x", key[i]);
  if (rc == 0) printf("\n");
  kh_client_free(kc);
  return rc;
}

static int cmd_seal(const options *o) {
  if (o->to == NULL) {
    kh_cli_fail("%s", "seal: --to HEX (the recipient's sealing key, keyhold pubkey) is required");
    return 2;
  }
  long klen = 0;
  uint8_t *key = OPENSSL_hexstr2buf(o->to, &klen);
  if (key == NULL || klen != crypto_box_PUBLICKEYBYTES)
    kh_cli_die("seal: --to: %d hex digits expected", 2 * crypto_box_PUBLICKEYBYTES);
  size_t len;
  uint8_t *msg = read_input(o->in, KH_SEALED_MAX - crypto_box_SEALBYTES, &len);
  uint8_t *box = malloc(len + crypto_box_SEALBYTES);
  if (box == NULL || sodium_init() < 0 || crypto_box_seal(box, msg, len, key) != 0)
    kh_cli_die("%s", "seal: failed");
  fwrite(box, 1, len + crypto_box_SEALBYTES, stdout);
  sodium_memzero(msg, len);
  free(msg);
  free(box);
  OPENSSL_free(key);
  return 0;
}

static int cmd_open(const options *o) {
  size_t len;
  uint8_t *box = read_input(o->in, KH_SEALED_MAX, &len);
  kh_client *kc = client(o);
  uint8_t *pt = malloc(len + 1);
  kh_error err;
  ssize_t n = pt == NULL    ? -1
              : o->envelope ? kh_open_envelope(kc, &o->op, box, len, pt, len, &err)
                            : kh_open_sealed(kc, &o->op, box, len, pt, len, &err);
  int rc = 0;
  if (n < 0)
    rc = kh_cli_fail("open: %s [%s]", pt ? err.msg : "out of memory", kh_code_name(err.code));
  else
    fwrite(pt, 1, (size_t)n, stdout), sodium_memzero(pt, (size_t)n);
  free(pt);
  free(box);
  kh_client_free(kc);
  return rc;
}

static int cmd_thumbprint(const options *o) {
  kh_client *kc = client(o);
  kh_error err;
  char jkt[64];
  int rc = 0;
  if (!kh_dpop_thumbprint(kc, &o->op, o->alg, jkt, &err))
    rc = kh_cli_fail("dpop --thumbprint: %s [%s]", err.msg, kh_code_name(err.code));
  else
    printf("%s\n", jkt);
  kh_client_free(kc);
  return rc;
}

static int cmd_dpop(const options *o) {
  if (o->thumbprint) return cmd_thumbprint(o);
  if (o->htm == NULL || o->htu == NULL) {
    kh_cli_fail("%s", "dpop: --htm METHOD and --htu URI are required");
    return 2;
  }
  uint8_t ath[32];
  if (o->ath_of != NULL) crypto_hash_sha256(ath, (const uint8_t *)o->ath_of, strlen(o->ath_of));
  kh_client *kc = client(o);
  kh_error err;
  char proof[8192], jkt[64];
  if (!kh_dpop_proof(kc, &o->op, o->alg, o->htm, o->htu, o->nonce, o->ath_of ? ath : NULL, proof,
                     sizeof(proof), jkt, &err)) {
    kh_client_free(kc);
    return kh_cli_fail("dpop: %s [%s]", err.msg, kh_code_name(err.code));
  }
  printf("%s\n", proof);
  fprintf(stderr, "jkt=%s\n", jkt);
  kh_client_free(kc);
  return 0;
}

int kh_cli_keys(int argc, char **argv) {
  options o;
  parse(argc, argv, &o);
  if (strcmp(argv[1], "dpop") == 0) return cmd_dpop(&o);
  if (strcmp(argv[1], "pubkey") == 0) return cmd_pubkey(&o);
  if (strcmp(argv[1], "seal") == 0) return cmd_seal(&o);
  return cmd_open(&o);
}
