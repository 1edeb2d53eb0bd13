/* p11_fault: a PKCS#11 module for tests that forwards every call to a real
 * module and can make C_Sign slow or fail, so tests can show what keyholdd
 * does with a token that stalls or breaks. Not a product.
 *
 *   KH_P11_FAULT_MODULE  the real module (e.g. libsofthsm2.so)
 *   KH_P11_FAULT_FILE    read before each C_Sign: "delay MS" sleeps MS
 *                        milliseconds first, "fail" answers CKR_DEVICE_ERROR,
 *                        anything else (or no file) passes through. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST g_list;
static CK_FUNCTION_LIST_PTR g_real;
static CK_C_Sign g_real_sign;

static CK_RV fault_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG in_len, CK_BYTE_PTR out,
                        CK_ULONG_PTR out_len) {
  const char *path = getenv("KH_P11_FAULT_FILE");
  FILE *f = path ? fopen(path, "r") : NULL;
  char line[64] = "";
  if (f != NULL) {
    if (fgets(line, sizeof(line), f) == NULL) line[0] = '\0';
    fclose(f);
  }
  long ms = 0;
  if (sscanf(line, "delay %ld", &ms) == 1 && ms > 0) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  } else if (strncmp(line, "fail", 4) == 0) {
    return CKR_DEVICE_ERROR;
  }
  return g_real_sign(s, in, in_len, out, out_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out) {
  if (g_real == NULL) {
    const char *real = getenv("KH_P11_FAULT_MODULE");
    void *h = real ? dlopen(real, RTLD_NOW | RTLD_LOCAL) : NULL;
    CK_C_GetFunctionList get = h ? (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList") : NULL;
    if (get == NULL || get(&g_real) != CKR_OK) return CKR_GENERAL_ERROR;
    g_list = *g_real;
    g_real_sign = g_real->C_Sign;
    g_list.C_Sign = fault_sign;
  }
  *out = &g_list;
  return CKR_OK;
}
