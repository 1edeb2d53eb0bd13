/* pkcs11_module.c: see pkcs11_module.h. */
#include "pkcs11_module.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kh_log.h"

#define KH_P11_MAX_MODULES 8

typedef struct {
  char *file;
  CK_FUNCTION_LIST *f;
} module;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_left = PTHREAD_COND_INITIALIZER;
static module g_modules[KH_P11_MAX_MODULES];
static size_t g_count;
static int g_frozen;
static unsigned g_threads;

const char *kh_p11_rv(CK_RV rv, char *buf, size_t len) {
#define KH_RV(n) \
  { CKR_##n, "CKR_" #n }
  static const struct {
    CK_RV rv;
    const char *name;
  } names[] = {
      KH_RV(OK),
      KH_RV(HOST_MEMORY),
      KH_RV(SLOT_ID_INVALID),
      KH_RV(GENERAL_ERROR),
      KH_RV(FUNCTION_FAILED),
      KH_RV(ARGUMENTS_BAD),
      KH_RV(DEVICE_ERROR),
      KH_RV(DEVICE_MEMORY),
      KH_RV(DEVICE_REMOVED),
      KH_RV(ENCRYPTED_DATA_INVALID),
      KH_RV(ENCRYPTED_DATA_LEN_RANGE),
      KH_RV(DATA_LEN_RANGE),
      KH_RV(KEY_HANDLE_INVALID),
      KH_RV(KEY_TYPE_INCONSISTENT),
      KH_RV(KEY_FUNCTION_NOT_PERMITTED),
      KH_RV(MECHANISM_INVALID),
      KH_RV(MECHANISM_PARAM_INVALID),
      KH_RV(OBJECT_HANDLE_INVALID),
      KH_RV(OPERATION_ACTIVE),
      KH_RV(OPERATION_NOT_INITIALIZED),
      KH_RV(PIN_INCORRECT),
      KH_RV(PIN_LEN_RANGE),
      KH_RV(PIN_EXPIRED),
      KH_RV(PIN_LOCKED),
      KH_RV(SESSION_CLOSED),
      KH_RV(SESSION_COUNT),
      KH_RV(SESSION_HANDLE_INVALID),
      KH_RV(TOKEN_NOT_PRESENT),
      KH_RV(TOKEN_NOT_RECOGNIZED),
      KH_RV(USER_ALREADY_LOGGED_IN),
      KH_RV(USER_NOT_LOGGED_IN),
      KH_RV(USER_PIN_NOT_INITIALIZED),
      KH_RV(BUFFER_TOO_SMALL),
      KH_RV(CRYPTOKI_NOT_INITIALIZED),
      KH_RV(CRYPTOKI_ALREADY_INITIALIZED),
      KH_RV(ATTRIBUTE_TYPE_INVALID),
      KH_RV(ATTRIBUTE_SENSITIVE),
      KH_RV(SIGNATURE_INVALID),
  };
#undef KH_RV
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (names[i].rv == rv) return names[i].name;
  }
  snprintf(buf, len, "CKR 0x%lx", (unsigned long)rv);
  return buf;
}

/* The directories p11-kit reads module registrations from: the admin's
 * first, then the packages' (one NAME.module file per module). */
static const char *const k_module_dirs[] = {"/etc/pkcs11/modules", KH_P11_PACKAGE_MODULES};

/* module_line: the "module:" value of the registration file |f| (closed
 * here), or NULL. */
static char *module_line(FILE *f) {
  char line[1024], *out = NULL;
  while (out == NULL && fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "module:", 7) != 0) continue;
    char *v = line + 7;
    v += strspn(v, " \t");
    v[strcspn(v, "\r\n")] = '\0';
    if (*v == '\0') break;
    /* A bare file name is in p11-kit's module directory. */
    if (v[0] == '/')
      out = strdup(v);
    else if (asprintf(&out, "%s/%s", KH_P11_MODULE_DIR, v) < 0)
      out = NULL;
  }
  fclose(f);
  return out;
}

/* registered_file: the module file registered with p11-kit as |name| (the
 * registration's file name without ".module", as p11-kit names modules);
 * NULL with |err| naming the registered ones if none. The registration is
 * read, not loaded: p11_kit_modules_load would dlopen every registered
 * module into keyholdd. */
static char *registered_file(const char *name, const char *where, kh_error *err) {
  char conf[512];
  if (name[0] == '\0' || name[0] == '.' ||
      strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
          strlen(name)) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: module-name=%s: not a module name", where, name);
    return NULL;
  }
  for (size_t i = 0; i < sizeof(k_module_dirs) / sizeof(k_module_dirs[0]); i++) {
    snprintf(conf, sizeof(conf), "%s/%s.module", k_module_dirs[i], name);
    FILE *f = fopen(conf, "r"); /* read-only opens pass the sandbox */
    if (f == NULL) continue;
    char *file = module_line(f);
    if (file == NULL)
      kh_err(err, KH_ERR_INVALID_ARGUMENT, "%s: %s has no module: line", where, conf);
    return file;
  }
  char names[256] = "";
  size_t used = 0;
  for (size_t i = 0; i < sizeof(k_module_dirs) / sizeof(k_module_dirs[0]); i++) {
    DIR *d = opendir(k_module_dirs[i]);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      size_t n = strlen(e->d_name);
      if (n > 7 && strcmp(e->d_name + n - 7, ".module") == 0 && used < sizeof(names))
        used += snprintf(names + used, sizeof(names) - used, "%s%.*s", used ? ", " : "",
                         (int)(n - 7), e->d_name);
    }
    if (d != NULL) closedir(d);
  }
  kh_err(err, KH_ERR_NOT_FOUND,
         "%s: no PKCS#11 module registered with p11-kit as %s (there are: %s)", where, name,
         used ? names : "none");
  return NULL;
}

/* load_remote: |file| run by p11-kit-remote in a process of its own, and
 * p11-kit's client module, loaded here, speaking p11-kit's RPC protocol to
 * it over a socket pair (forked at C_Initialize). The client module reads
 * the command from P11_KIT_SERVER_ADDRESS when it is loaded; nothing else
 * runs yet (modules load before keyholdd starts its threads). */
static CK_FUNCTION_LIST *load_remote(const char *file, const char *where, kh_error *err) {
  char cmd[1024];
  if (file[0] != '/' || strpbrk(file, " \t\n'\"\\") != NULL)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: PKCS#11 module path %s: must be absolute, without spaces or quotes", where,
                  file),
           NULL;
  if (access(file, R_OK) != 0)
    return kh_err(err, KH_ERR_NOT_FOUND, "%s: PKCS#11 module %s: %s", where, file, strerror(errno)),
           NULL;
  if (access(KH_P11_REMOTE, X_OK) != 0 || access(KH_P11_CLIENT, R_OK) != 0)
    return kh_err(err, KH_ERR_NOT_FOUND,
                  "%s: PKCS#11 keys need p11-kit's %s and %s (Debian: p11-kit, p11-kit-modules)",
                  where, KH_P11_REMOTE, KH_P11_CLIENT),
           NULL;
  snprintf(cmd, sizeof(cmd), "|%s %s", KH_P11_REMOTE, file);
  const char *before = getenv("P11_KIT_SERVER_ADDRESS");
  char *saved = before ? strdup(before) : NULL;
  setenv("P11_KIT_SERVER_ADDRESS", cmd, 1);
  CK_FUNCTION_LIST *f = p11_kit_module_load(KH_P11_CLIENT, 0);
  if (saved != NULL)
    setenv("P11_KIT_SERVER_ADDRESS", saved, 1), free(saved);
  else
    unsetenv("P11_KIT_SERVER_ADDRESS");
  if (f == NULL)
    kh_err(err, KH_ERR_NOT_FOUND, "%s: cannot load p11-kit's client module for %s: %s", where, file,
           p11_kit_message() ? p11_kit_message() : "unknown error");
  return f;
}

/* load_locked: the module in |file|, loaded and initialized once. */
static CK_FUNCTION_LIST *load_locked(const char *file, const char *where, kh_error *err) {
  for (size_t i = 0; i < g_count; i++) {
    if (strcmp(g_modules[i].file, file) == 0) return g_modules[i].f;
  }
  if (g_frozen) {
    kh_err(err, KH_ERR_FAILED_PRECONDITION,
           "%s: PKCS#11 module %s was not loaded at start-up and the sandbox allows no new code; "
           "restart keyholdd",
           where, file);
    return NULL;
  }
  if (g_count == KH_P11_MAX_MODULES) {
    kh_err(err, KH_ERR_RESOURCE_EXHAUSTED, "%s: more than %d PKCS#11 modules", where,
           KH_P11_MAX_MODULES);
    return NULL;
  }
  CK_FUNCTION_LIST *f = load_remote(file, where, err);
  if (f == NULL) return NULL;
  CK_RV rv = p11_kit_module_initialize(f);
  if (rv != CKR_OK) {
    char b[32];
    kh_err(err, KH_ERR_UNAVAILABLE, "%s: PKCS#11 module %s: C_Initialize: %s", where, file,
           kh_p11_rv(rv, b, sizeof(b)));
    p11_kit_module_release(f);
    return NULL;
  }
  char *copy = strdup(file);
  if (copy == NULL) {
    p11_kit_module_finalize(f);
    p11_kit_module_release(f);
    kh_err(err, KH_ERR_NOMEM, "out of memory");
    return NULL;
  }
  g_modules[g_count++] = (module){.file = copy, .f = f};
  kh_log(KH_LOG_INFO, "pkcs11: loaded module %s", file);
  return f;
}

CK_FUNCTION_LIST *kh_p11_module_for(P11KitUri *uri, const char *where, kh_error *err) {
  const char *path = p11_kit_uri_get_module_path(uri);
  const char *name = p11_kit_uri_get_module_name(uri);
  char *file = NULL;
  if (path == NULL && name == NULL) {
    kh_err(err, KH_ERR_INVALID_ARGUMENT,
           "%s: the PKCS#11 URI names no module: add ?module-name=NAME (registered with p11-kit) "
           "or ?module-path=FILE",
           where);
    return NULL;
  }
  if (path == NULL && (file = registered_file(name, where, err)) == NULL) return NULL;
  pthread_mutex_lock(&g_mu);
  CK_FUNCTION_LIST *f = load_locked(path ? path : file, where, err);
  pthread_mutex_unlock(&g_mu);
  free(file);
  return f;
}

int kh_p11_find_token(CK_FUNCTION_LIST *f, P11KitUri *uri, const char *where, CK_SLOT_ID *out,
                      kh_error *err) {
  CK_SLOT_ID slots[64];
  CK_ULONG n = sizeof(slots) / sizeof(slots[0]);
  char b[32];
  CK_RV rv = f->C_GetSlotList(CK_TRUE, slots, &n);
  if (rv != CKR_OK)
    return kh_err(err, KH_ERR_UNAVAILABLE, "%s: C_GetSlotList: %s", where,
                  kh_p11_rv(rv, b, sizeof(b)));
  size_t found = 0;
  for (CK_ULONG i = 0; i < n; i++) {
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    if (f->C_GetSlotInfo(slots[i], &si) != CKR_OK || !p11_kit_uri_match_slot_info(uri, &si))
      continue;
    if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK || !p11_kit_uri_match_token_info(uri, &ti))
      continue;
    if (!(ti.flags & CKF_TOKEN_INITIALIZED)) continue;
    if (found++ == 0) *out = slots[i];
  }
  if (found == 0)
    return kh_err(err, KH_ERR_NOT_FOUND, "%s: no token matching the PKCS#11 URI is present", where);
  if (found > 1)
    return kh_err(err, KH_ERR_INVALID_ARGUMENT,
                  "%s: %zu tokens match the PKCS#11 URI; name one (token=, serial=)", where, found);
  return 1;
}

void kh_p11_thread_enter(void) {
  pthread_mutex_lock(&g_mu);
  g_threads++;
  pthread_mutex_unlock(&g_mu);
}

void kh_p11_thread_leave(void) {
  pthread_mutex_lock(&g_mu);
  g_threads--;
  pthread_cond_broadcast(&g_left);
  pthread_mutex_unlock(&g_mu);
}

void kh_p11_freeze(void) {
  pthread_mutex_lock(&g_mu);
  g_frozen = 1;
  pthread_mutex_unlock(&g_mu);
}

void kh_p11_shutdown(void) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2;
  pthread_mutex_lock(&g_mu);
  while (g_threads > 0 && pthread_cond_timedwait(&g_left, &g_mu, &until) != ETIMEDOUT) {
  }
  if (g_threads > 0) {
    /* A token call that never returned: finalizing under it could crash. */
    kh_log(KH_LOG_WARN, "pkcs11: %u token calls still running at exit; modules left loaded",
           g_threads);
  } else {
    for (size_t i = 0; i < g_count; i++) {
      p11_kit_module_finalize(g_modules[i].f);
      p11_kit_module_release(g_modules[i].f);
      free(g_modules[i].file);
    }
    g_count = 0;
  }
  pthread_mutex_unlock(&g_mu);
}
