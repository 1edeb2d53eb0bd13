/* sign_bench: signatures per second through a key on a PKCS#11 token
 * (SoftHSM2, reached through p11-kit-remote as keyholdd does) against the
 * same key type in a PEM file, both loaded by kh_key_file_load and signed
 * with kh_key_sign (the key's first scheme, kh_key_sigalgs) over a 32-byte
 * message (issue 13):
 *   RESULT sign_p256_token ours=<token signs/s> baseline=<file key signs/s>
 *     unit=ops/s ratio=<r>
 *   RESULT sign_rsa2048_token ...                 (the same, RSA-2048)
 *   RESULT sign_p256_token_4threads ...           (4 threads signing at once
 *     on each key; the token backend pools 4 sessions)
 * No targets. Token and file key take turns in slices of ~50 ms over
 * SECONDS_PER_CASE each (the order flipped every slice), so drift and bursts
 * on a shared machine hit them alike; each figure is the median of its
 * slices. Set-up (a SoftHSM2 config and token in a scratch directory, keys
 * from pkcs11-tool and openssl genpkey, certificates from the openssl CLI)
 * shells out; the timed loops never do.
 * Usage: sign_bench [SECONDS_PER_CASE]  (default 1.0) */
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench_proc.h"
#include "kh_log.h"
#include "key.h"
#include "pkcs11_module.h"

#define MODULE_REG "/usr/share/p11-kit/modules/softhsm2.module"
#define TOKEN "keyhold-bench"
#define PIN "4711"
#define SLICE 0.05
#define MAX_SLICES 64
#define MAX_THREADS 4

static char g_tmp[64];
static char g_module[PATH_MAX]; /* the SoftHSM2 library, for pkcs11-tool */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("sign_bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  bp_remove_scratch(g_tmp, "sign_bench");
  exit(1);
}

/* sh runs one set-up command (sh -c) with its output in setup.log; on
 * failure it shows the command and the end of the log, and dies. */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[4 * PATH_MAX], full[5 * PATH_MAX];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof(cmd)) die("set-up command too long");
  snprintf(full, sizeof(full), "( %s ) >>%s/setup.log 2>&1", cmd, g_tmp);
  if (system(full) != 0) {
    snprintf(full, sizeof(full), "tail -n 5 %s/setup.log >&2", g_tmp);
    if (system(full) != 0) fprintf(stderr, "sign_bench: no set-up log\n");
    die("set-up step failed: %s", cmd);
  }
}

static void need_tool(const char *tool, const char *package) {
  char cmd[256];
  snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
  if (system(cmd) != 0)
    die("%s missing (Debian package %s; run tools/install-deps.sh)", tool, package);
}

/* find_module: the "module:" line of SoftHSM2's p11-kit registration, the
 * same file the URIs' module-name=softhsm2 resolves through. */
static void find_module(void) {
  FILE *f = fopen(MODULE_REG, "r");
  char line[PATH_MAX + 16];
  if (f == NULL) die("%s missing: SoftHSM2 is not registered with p11-kit (softhsm2)", MODULE_REG);
  while (g_module[0] == '\0' && fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "module:", 7) != 0) continue;
    char *v = line + 7 + strspn(line + 7, " \t");
    v[strcspn(v, "\r\n")] = '\0';
    snprintf(g_module, sizeof(g_module), "%s", v);
  }
  fclose(f);
  if (g_module[0] != '/' || access(g_module, R_OK) != 0)
    die("%s names no readable module (%s)", MODULE_REG, g_module);
}

static void write_file(const char *name, const char *text) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s", g_tmp, name);
  FILE *f = fopen(path, "w");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) die("cannot write %s", path);
  if (chmod(path, 0600) != 0) die("chmod %s", path);
}

/* A key type: its names for pkcs11-tool and openssl genpkey. */
typedef struct {
  const char *name, *p11_type, *genpkey, *id;
} kind;

static const kind k_p256 = {"p256", "EC:prime256v1",
                            "-algorithm EC -pkeyopt ec_paramgen_curve:P-256", "01"};
static const kind k_rsa = {"rsa2048", "rsa:2048", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
                           "02"};

/* cert makes NAME.crt for the public key in NAME.pub.pem, issued by the
 * scratch CA (-force_pubkey: a token's private key never leaves it). */
static void cert(const char *name, int serial) {
  const char *d = g_tmp;
  sh("openssl req -new -key %s/ca.key -subj /CN=%s -out %s/%s.csr && "
     "openssl x509 -req -in %s/%s.csr -CA %s/ca.crt -CAkey %s/ca.key -set_serial %d -days 2 "
     "-force_pubkey %s/%s.pub.pem -out %s/%s.crt",
     d, name, d, name, d, name, d, d, serial, d, name, d, name);
}

/* setup: a SoftHSM2 token in the scratch directory with a key of
 * each kind, their certificates and URIs (NAME-token.key), and the same
 * kinds as PEM files with theirs (NAME-file.key). */
static void setup(void) {
  const char *d = g_tmp;
  char text[PATH_MAX + 128], conf[128];
  snprintf(text, sizeof(text),
           "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", d);
  write_file("softhsm2.conf", text);
  write_file("pin", PIN "\n");
  snprintf(conf, sizeof(conf), "%s/softhsm2.conf", d);
  setenv("SOFTHSM2_CONF", conf, 1); /* for the CLIs and p11-kit-remote alike */
  sh("mkdir -p %s/tokens && softhsm2-util --init-token --free --label " TOKEN
     " --so-pin 1234 --pin " PIN,
     d);
  sh("openssl genpkey %s -out %s/ca.key && "
     "openssl req -x509 -new -key %s/ca.key -subj /CN=sign-bench-ca -days 2 -out %s/ca.crt",
     k_p256.genpkey, d, d, d);
  const kind *kinds[] = {&k_p256, &k_rsa};
  int serial = 1;
  for (size_t i = 0; i < 2; i++) {
    const kind *k = kinds[i];
    sh("pkcs11-tool --module %s --token-label " TOKEN " --login --pin " PIN
       " --keypairgen --key-type %s --label %s --id %s",
       g_module, k->p11_type, k->name, k->id);
    sh("pkcs11-tool --module %s --token-label " TOKEN
       " --read-object --type pubkey --id %s -o %s/%s-token.pub.der && "
       "openssl pkey -pubin -inform DER -in %s/%s-token.pub.der -out %s/%s-token.pub.pem",
       g_module, k->id, d, k->name, d, k->name, d, k->name);
    snprintf(text, sizeof(text),
             "pkcs11:token=" TOKEN
             ";object=%s;type=private?module-name=softhsm2&"
             "pin-source=file:%s/pin\n",
             k->name, d);
    char key[64];
    snprintf(key, sizeof(key), "%s-token.key", k->name);
    write_file(key, text);
    snprintf(key, sizeof(key), "%s-token", k->name);
    cert(key, serial++);
    sh("openssl genpkey %s -out %s/%s-file.key && chmod 600 %s/%s-file.key && "
       "openssl pkey -in %s/%s-file.key -pubout -out %s/%s-file.pub.pem",
       k->genpkey, d, k->name, d, k->name, d, k->name, d, k->name);
    snprintf(key, sizeof(key), "%s-file", k->name);
    cert(key, serial++);
  }
}

/* load: NAME.key through kh_key_file_load, against NAME.crt's public key;
 * it must come from the |backend| expected ("pkcs11" or "file"). */
static kh_key *load(const char *name, const char *backend) {
  char path[128];
  snprintf(path, sizeof(path), "%s/%s.crt", g_tmp, name);
  FILE *f = fopen(path, "r");
  X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
  if (f != NULL) fclose(f);
  EVP_PKEY *pub = x ? X509_get_pubkey(x) : NULL;
  X509_free(x);
  if (pub == NULL) die("%s: no certificate", path);
  snprintf(path, sizeof(path), "%s/%s.key", g_tmp, name);
  kh_error err;
  kh_key *k = kh_key_file_load(path, pub, &err);
  EVP_PKEY_free(pub);
  if (k == NULL) die("%s", err.msg);
  if (strcmp(kh_key_backend(k), backend) != 0)
    die("%s: loaded by the %s backend, not %s", path, kh_key_backend(k), backend);
  return k;
}

/* --- timing ---------------------------------------------------------------- */

/* One signer: signs with |k| until |until| (bp_now), counting. */
typedef struct {
  const kh_key *k;
  uint16_t sigalg;
  double until;
  long n;
  int failed;
  kh_error err;
} signer;

static void *sign_loop(void *arg) {
  signer *s = arg;
  uint8_t msg[32], sig[KH_MAX_SIGNATURE];
  memset(msg, 0x6b, sizeof(msg));
  do {
    size_t len = 0;
    if (!kh_key_sign(s->k, s->sigalg, msg, sizeof(msg), sig, &len, sizeof(sig), &s->err)) {
      s->failed = 1;
      break;
    }
    s->n++;
  } while (bp_now() < s->until);
  return NULL;
}

/* rate: signatures per second of |threads| threads signing with |k| for
 * |secs| (the calling thread alone when |threads| is 1). */
static double rate(const kh_key *k, int threads, double secs) {
  signer s[MAX_THREADS];
  pthread_t t[MAX_THREADS];
  uint16_t sigalg;
  if (kh_key_sigalgs(k, &sigalg, 1) != 1) die("a key with no signature scheme");
  double t0 = bp_now();
  for (int i = 0; i < threads; i++) s[i] = (signer){.k = k, .sigalg = sigalg, .until = t0 + secs};
  if (threads == 1) {
    sign_loop(&s[0]);
  } else {
    for (int i = 0; i < threads; i++)
      if (pthread_create(&t[i], NULL, sign_loop, &s[i]) != 0) die("pthread_create");
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
  }
  double took = bp_now() - t0;
  long n = 0;
  for (int i = 0; i < threads; i++) {
    if (s[i].failed) die("kh_key_sign (%s key): %s", kh_key_backend(k), s[i].err.msg);
    n += s[i].n;
  }
  return (double)n / took;
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), bp_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A comparison's result: ours (token) and baseline (file), signs/s. */
typedef struct {
  const char *name;
  double ours, baseline;
} result;

/* compare alternates |token| and |file| in slices of ~SLICE seconds,
 * |secs| each in all, flipping which goes first every slice. */
static result compare(const char *name, const kh_key *token, const kh_key *file, int threads,
                      double secs) {
  int slices = (int)(secs / SLICE);
  if (slices < 2) slices = 2;
  if (slices > MAX_SLICES) slices = MAX_SLICES;
  double tok[MAX_SLICES], fil[MAX_SLICES];
  rate(token, threads, secs / slices / 4); /* warm: sessions busy, caches filled */
  rate(file, threads, secs / slices / 4);
  for (int i = 0; i < slices; i++) {
    if (i % 2) {
      fil[i] = rate(file, threads, secs / slices);
      tok[i] = rate(token, threads, secs / slices);
    } else {
      tok[i] = rate(token, threads, secs / slices);
      fil[i] = rate(file, threads, secs / slices);
    }
  }
  result r = {name, median(tok, slices), median(fil, slices)};
  uint16_t sigalg = 0;
  if (kh_key_sigalgs(token, &sigalg, 1) != 1) die("a key with no signature scheme");
  printf("%s: %s, %d thread%s, %d slices: token %.0f signs/s (%.1f us a call), file %.0f signs/s\n",
         name, SSL_get_signature_algorithm_name(sigalg, 0), threads, threads > 1 ? "s" : "", slices,
         r.ours, 1e6 * threads / r.ours, r.baseline);
  fflush(stdout);
  return r;
}

int main(int argc, char **argv) {
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  if (argc > 2 || secs <= 0) die("usage: sign_bench [SECONDS_PER_CASE]");
  kh_log_init("sign_bench");
  need_tool("softhsm2-util", "softhsm2");
  need_tool("pkcs11-tool", "opensc");
  need_tool("openssl", "openssl");
  find_module();
  snprintf(g_tmp, sizeof(g_tmp), "/tmp/kh-signbench.XXXXXX");
  if (mkdtemp(g_tmp) == NULL) {
    g_tmp[0] = '\0';
    die("mkdtemp");
  }
  setup();

  kh_key *p256_token = load("p256-token", "pkcs11"), *p256_file = load("p256-file", "file");
  kh_key *rsa_token = load("rsa2048-token", "pkcs11"), *rsa_file = load("rsa2048-file", "file");
  result r[3];
  r[0] = compare("sign_p256_token", p256_token, p256_file, 1, secs);
  r[1] = compare("sign_rsa2048_token", rsa_token, rsa_file, 1, secs);
  r[2] = compare("sign_p256_token_4threads", p256_token, p256_file, MAX_THREADS, secs);
  kh_key_free(p256_token), kh_key_free(p256_file);
  kh_key_free(rsa_token), kh_key_free(rsa_file);
  kh_p11_shutdown(); /* the token's threads leave; p11-kit-remote ends */
  bp_remove_scratch(g_tmp, "sign_bench");
  for (int i = 0; i < 3; i++)
    printf("RESULT %s ours=%.0f baseline=%.0f unit=ops/s ratio=%.3f\n", r[i].name, r[i].ours,
           r[i].baseline, r[i].ours / r[i].baseline);
  return 0;
}
