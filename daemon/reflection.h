/* reflection.h: answers of the gRPC server reflection service
 * (grpc.reflection.v1 and v1alpha ServerReflectionInfo; both versions share
 * the wire format, so one function answers both). A pure function over the
 * descriptor sets embedded at build time (proto/ ls_proto_desc): no gRPC
 * calls, no state, safe from any thread. server.c owns the bidi stream and
 * calls this once per request message. */
#ifndef LSD_REFLECTION_H
#define LSD_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

/* req: one serialized ServerReflectionRequest. Answers
 *  - list_services: layerskip.v1.LayerSkip, grpc.health.v1.Health,
 *    grpc.reflection.v1.ServerReflection, grpc.reflection.v1alpha.ServerReflection;
 *  - file_by_filename ("layerskip/v1/layerskip.proto", ...) and
 *    file_containing_symbol (fully qualified names of services, methods,
 *    messages, enums, enum values, fields, oneofs, nested types) with the
 *    file's serialized FileDescriptorProto followed by those of its
 *    embedded dependencies;
 *  - all_extension_numbers_of_type: an empty list for a known message (our
 *    files declare no extensions), NOT_FOUND otherwise;
 *  - error_response NOT_FOUND (5) for unknown names and for
 *    file_containing_extension, INVALID_ARGUMENT (3) for a request that
 *    sets no question.
 * valid_host and original_request are echoed. Returns 0 with a malloc'd
 * serialized ServerReflectionResponse in *resp / *resp_len (caller frees),
 * or -1 if req is not a valid message (or out of memory). */
int lsd_reflection_answer(const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len);

#endif
