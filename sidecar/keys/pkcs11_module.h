/* pkcs11_module.h: PKCS#11 modules, found and loaded through p11-kit, kept
 * for the life of keyholdd, and the token a URI names (RFC 7512).
 *
 * A module is named by the URI's module-path= (a file) or module-name= (a
 * module registered with p11-kit, /usr/share/p11-kit/modules/NAME.module
 * on Debian). Each file is loaded and C_Initialize'd once, on first use,
 * and finalized by kh_p11_shutdown. Modules are code: kh_p11_freeze (called
 * before the sandbox, which forbids mapping new code) makes a later URI
 * naming a module not yet loaded fail with a clear error instead. */
#ifndef KH_PKCS11_MODULE_H
#define KH_PKCS11_MODULE_H

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include "kh_error.h"

/* kh_p11_module_for loads (or finds loaded) the module |uri| names. |where|
 * starts messages (the file the URI came from). */
KH_MUST_USE CK_FUNCTION_LIST *kh_p11_module_for(P11KitUri *uri, const char *where, kh_error *err);

/* kh_p11_find_token: the one slot of |f| holding a token that matches
 * |uri|'s token (and slot) attributes. NOT_FOUND when none does,
 * INVALID_ARGUMENT when several do. */
KH_MUST_USE int kh_p11_find_token(CK_FUNCTION_LIST *f, P11KitUri *uri, const char *where,
                                  CK_SLOT_ID *out, kh_error *err);

/* kh_p11_rv: "CKR_PIN_INCORRECT"-style name (or hex) of a PKCS#11 result. */
const char *kh_p11_rv(CK_RV rv, char *buf, size_t len);

/* Backend threads register while they may call into a module, so that
 * shutdown finalizes no module under a running call. */
void kh_p11_thread_enter(void);
void kh_p11_thread_leave(void);

void kh_p11_freeze(void);
/* kh_p11_shutdown waits (at most 2 s) for backend threads to leave, then
 * finalizes and releases every module. */
void kh_p11_shutdown(void);

#endif /* KH_PKCS11_MODULE_H */
