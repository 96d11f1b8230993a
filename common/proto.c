#include "proto.h"

const char *mp_code_name(MpCode code)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&micropay__v1__status_code__descriptor, code);
	return v ? v->name : "UNKNOWN_CODE";
}
