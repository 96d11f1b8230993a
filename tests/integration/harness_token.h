/* A SoftHSM2 token for the network's keys (deploy/mpnet, MP_PKCS11_*; docs/keys.md "Tested"),
 * shared by the suites that sign with keys in a token (sign_pool, merchant_sign_pool). */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* A fresh token in a new directory made from tmpl ("/tmp/NAME.XXXXXX", changed in place);
 * MP_PKCS11_MODULE, MP_PKCS11_TOKEN and MP_PKCS11_PIN_FILE set for deploy/mpnet. */
void token_make(char *tmpl);
/* SoftHSM2 leaks a little per signature (tests/lsan.supp says what): under ASan the daemons
 * unwind through it (slow unwinding) and that leak is suppressed by the module's name. */
void token_suppress_leaks(void);
/* The token's directory removed. */
void token_remove(const char *dir);
/* The daemon's key_file in its config.ini (under the network's dir) is a PKCS#11 URI. */
bool token_holds_key(const char *config_path);
