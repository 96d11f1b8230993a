/* Short names for the generated protobuf-c types of proto/micropay.proto. */
#pragma once
#include <stdbool.h>

#include "micropay.pb-c.h"

typedef Micropay__V1__Envelope MpEnvelope;
typedef Micropay__V1__Signed MpSigned;
typedef Micropay__V1__Status MpStatus;
typedef Micropay__V1__Point MpPoint;
typedef Micropay__V1__StatusCode MpCode;

#define MP_ST(name)	    MICROPAY__V1__STATUS_CODE__##name
#define MP_BODY(name)	    MICROPAY__V1__ENVELOPE__BODY_##name
#define MP_PROTOCOL_VERSION 1

/* The protocol name of a status code ("OK", "BAD_SIG", ...). */
const char *mp_code_name(MpCode code);
/* The value of enum desc named prefix + name (a database state such as "OPEN" for
 * DisputeState's "DISPUTE_OPEN"); none (NULL name, unknown name): fallback. */
int mp_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name,
		  int fallback);

static inline bool mp_bytes_len_is(ProtobufCBinaryData b, size_t len)
{
	return b.len == len && (len == 0 || b.data != NULL);
}
