#include "proto.h"

#include <stdio.h>

const char *mp_code_name(MpCode code)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&micropay__v1__status_code__descriptor, code);
	return v ? v->name : "UNKNOWN_CODE";
}

int mp_enum_value(const ProtobufCEnumDescriptor *desc, const char *prefix, const char *name,
		  int fallback)
{
	char full[128];
	if (!name || snprintf(full, sizeof(full), "%s%s", prefix, name) >= (int)sizeof(full))
		return fallback;
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(desc, full);
	return v ? v->value : fallback;
}
