/* reflection.c: see reflection.h. Request and response go through
 * protobuf-c's generated reflection code; the embedded descriptors are
 * walked with a small protobuf wire reader rather than compiling
 * descriptor.proto, because only names are needed: FileDescriptorProto
 * {1 name, 2 package, 3 dependency, 4 message_type, 5 enum_type, 6 service,
 * 7 extension}, DescriptorProto {1 name, 2 field, 3 nested_type,
 * 4 enum_type, 6 extension, 8 oneof_decl}, EnumDescriptorProto {1 name,
 * 2 value}, ServiceDescriptorProto {1 name, 2 method}; every leaf
 * descriptor has its name in field 1. Names are matched afresh per request
 * (a few KiB of descriptors): no cache, no shared state. */
#include "reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"

/* from ls_proto_desc: each a FileDescriptorSet holding one FileDescriptorProto */
extern const unsigned char ls_desc_layerskip_v1[];
extern const size_t ls_desc_layerskip_v1_len;
extern const unsigned char ls_desc_grpc_health_v1[];
extern const size_t ls_desc_grpc_health_v1_len;
extern const unsigned char ls_desc_grpc_reflection_v1alpha[];
extern const size_t ls_desc_grpc_reflection_v1alpha_len;
extern const unsigned char ls_desc_grpc_reflection_v1[];
extern const size_t ls_desc_grpc_reflection_v1_len;

enum {
    LSD_GRPC_INVALID_ARGUMENT = 3,
    LSD_GRPC_NOT_FOUND = 5,
    LSD_GRPC_INTERNAL = 13,
};

#define LSD_N_FILES 4
#define LSD_NAME_MAX 512  /* longest fully qualified name looked up */
#define LSD_NEST_MAX 32   /* nested message depth walked */

static const char *const lsd_services[] = {
    "layerskip.v1.LayerSkip",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
};

typedef struct wire {
    const uint8_t *p, *end;
    bool bad;
} wire;

static bool wire_varint(wire *w, uint64_t *v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (w->p >= w->end) return false;
        uint8_t b = *w->p++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false;
}

/* Next field: its number, and for length-delimited fields the payload.
 * Other wire types are skipped over (data NULL). false at the end of the
 * message or on malformed input (wire_ok tells which). */
static bool wire_next(wire *w, uint32_t *field, const uint8_t **data, size_t *len) {
    if (w->bad || w->p >= w->end) return false;
    uint64_t key, v;
    if (!wire_varint(w, &key)) goto bad;
    *field = (uint32_t)(key >> 3);
    *data = NULL;
    *len = 0;
    switch (key & 7) {
    case 0:
        if (!wire_varint(w, &v)) goto bad;
        return true;
    case 1:
        if (w->end - w->p < 8) goto bad;
        w->p += 8;
        return true;
    case 2:
        if (!wire_varint(w, &v) || v > (uint64_t)(w->end - w->p)) goto bad;
        *data = w->p;
        *len = (size_t)v;
        w->p += v;
        return true;
    case 5:
        if (w->end - w->p < 4) goto bad;
        w->p += 4;
        return true;
    default: /* groups (3, 4) do not occur in our descriptors */
        goto bad;
    }
bad:
    w->bad = true;
    w->p = w->end;
    return false;
}

static bool wire_ok(const wire *w) { return !w->bad && w->p == w->end; }

/* field 1 (the name) of a descriptor message; false if absent */
static bool desc_name(const uint8_t *msg, size_t len, const uint8_t **name, size_t *name_len) {
    wire w = {msg, msg + len, false};
    uint32_t f;
    const uint8_t *d;
    size_t n;
    while (wire_next(&w, &f, &d, &n)) {
        if (f == 1 && d) {
            *name = d;
            *name_len = n;
            return true;
        }
    }
    return false;
}

/* An embedded file: its FileDescriptorProto (the FileDescriptorSet's only
 * field 1) and name. */
typedef struct lsd_file {
    const uint8_t *proto;
    size_t proto_len;
    const uint8_t *name;
    size_t name_len;
} lsd_file;

static bool load_files(lsd_file files[LSD_N_FILES]) {
    const unsigned char *sets[LSD_N_FILES] = {ls_desc_layerskip_v1, ls_desc_grpc_health_v1,
                                              ls_desc_grpc_reflection_v1, ls_desc_grpc_reflection_v1alpha};
    const size_t lens[LSD_N_FILES] = {ls_desc_layerskip_v1_len, ls_desc_grpc_health_v1_len,
                                      ls_desc_grpc_reflection_v1_len, ls_desc_grpc_reflection_v1alpha_len};
    for (int i = 0; i < LSD_N_FILES; i++) {
        wire w = {sets[i], sets[i] + lens[i], false};
        uint32_t f;
        const uint8_t *d;
        size_t n;
        int found = 0;
        while (wire_next(&w, &f, &d, &n)) {
            if (f == 1 && d) {
                files[i].proto = d;
                files[i].proto_len = n;
                found++;
            }
        }
        if (!wire_ok(&w) || found != 1) return false;
        if (!desc_name(files[i].proto, files[i].proto_len, &files[i].name, &files[i].name_len)) return false;
    }
    return true;
}

static bool bytes_eq(const uint8_t *a, size_t n, const char *s) {
    return strlen(s) == n && memcmp(a, s, n) == 0;
}

/* scope + "." + name (no dot when scope is empty) into out; false if too long */
static bool join_name(char *out, const char *scope, const uint8_t *name, size_t name_len) {
    size_t s = strlen(scope);
    size_t total = s + (s ? 1 : 0) + name_len;
    if (total >= LSD_NAME_MAX) return false;
    memcpy(out, scope, s);
    if (s) out[s++] = '.';
    memcpy(out + s, name, name_len);
    out[total] = '\0';
    return true;
}

/* Does any child (field number `which`) of msg have full name scope.NAME == sym? */
static bool child_named(const uint8_t *msg, size_t len, uint32_t which, const char *scope, const char *sym) {
    wire w = {msg, msg + len, false};
    uint32_t f;
    const uint8_t *d;
    size_t n;
    char full[LSD_NAME_MAX];
    while (wire_next(&w, &f, &d, &n)) {
        const uint8_t *name;
        size_t name_len;
        if (f == which && d && desc_name(d, n, &name, &name_len) && join_name(full, scope, name, name_len) &&
            strcmp(full, sym) == 0) {
            return true;
        }
    }
    return false;
}

/* EnumDescriptorProto in `scope`; its values live in the same scope as the enum */
static bool enum_has(const uint8_t *e, size_t len, const char *scope, const char *sym) {
    const uint8_t *name;
    size_t name_len;
    char full[LSD_NAME_MAX];
    if (!desc_name(e, len, &name, &name_len) || !join_name(full, scope, name, name_len)) return false;
    return strcmp(full, sym) == 0 || child_named(e, len, 2, scope, sym);
}

static bool service_has(const uint8_t *s, size_t len, const char *scope, const char *sym) {
    const uint8_t *name;
    size_t name_len;
    char full[LSD_NAME_MAX];
    if (!desc_name(s, len, &name, &name_len) || !join_name(full, scope, name, name_len)) return false;
    return strcmp(full, sym) == 0 || child_named(s, len, 2, full, sym);
}

static bool message_has(const uint8_t *msg, size_t len, const char *scope, const char *sym, int depth) {
    const uint8_t *name;
    size_t name_len;
    char full[LSD_NAME_MAX];
    if (depth > LSD_NEST_MAX || !desc_name(msg, len, &name, &name_len) || !join_name(full, scope, name, name_len)) {
        return false;
    }
    if (strcmp(full, sym) == 0) return true;
    size_t fl = strlen(full);
    if (strncmp(sym, full, fl) != 0 || sym[fl] != '.') return false; /* not inside this message */
    wire w = {msg, msg + len, false};
    uint32_t f;
    const uint8_t *d;
    size_t n;
    while (wire_next(&w, &f, &d, &n)) {
        if (!d) continue;
        if (f == 3 && message_has(d, n, full, sym, depth + 1)) return true;
        if (f == 4 && enum_has(d, n, full, sym)) return true;
    }
    /* fields (2), extensions (6) and oneofs (8) */
    return child_named(msg, len, 2, full, sym) || child_named(msg, len, 6, full, sym) ||
           child_named(msg, len, 8, full, sym);
}

/* full name scope.NAME of descriptor d equals sym */
static bool named(const uint8_t *d, size_t len, const char *scope, const char *sym) {
    const uint8_t *name;
    size_t name_len;
    char full[LSD_NAME_MAX];
    return desc_name(d, len, &name, &name_len) && join_name(full, scope, name, name_len) && strcmp(full, sym) == 0;
}

/* a message type (top level or nested) named sym */
static bool message_type_named(const uint8_t *msg, size_t len, const char *scope, const char *sym, int depth) {
    const uint8_t *name;
    size_t name_len;
    char full[LSD_NAME_MAX];
    if (depth > LSD_NEST_MAX || !desc_name(msg, len, &name, &name_len) || !join_name(full, scope, name, name_len)) {
        return false;
    }
    if (strcmp(full, sym) == 0) return true;
    wire w = {msg, msg + len, false};
    uint32_t f;
    const uint8_t *d;
    size_t n;
    while (wire_next(&w, &f, &d, &n)) {
        if (f == 3 && d && message_type_named(d, n, full, sym, depth + 1)) return true;
    }
    return false;
}

/* Does the file declare sym? messages_only: sym must name a message type
 * (all_extension_numbers_of_type), otherwise any symbol. */
static bool file_has_symbol(const lsd_file *file, const char *sym, bool messages_only) {
    wire w = {file->proto, file->proto + file->proto_len, false};
    uint32_t f;
    const uint8_t *d;
    size_t n;
    char package[LSD_NAME_MAX] = "";
    while (wire_next(&w, &f, &d, &n)) {
        if (f == 2 && d) {
            if (n >= sizeof package) return false;
            memcpy(package, d, n);
            package[n] = '\0';
        }
    }
    w = (wire){file->proto, file->proto + file->proto_len, false};
    while (wire_next(&w, &f, &d, &n)) {
        if (!d) continue;
        if (messages_only) {
            if (f == 4 && message_type_named(d, n, package, sym, 0)) return true;
            continue;
        }
        if (f == 4 && message_has(d, n, package, sym, 0)) return true;
        if (f == 5 && enum_has(d, n, package, sym)) return true;
        if (f == 6 && service_has(d, n, package, sym)) return true;
        if (f == 7 && named(d, n, package, sym)) return true;
    }
    return false;
}

/* The file and its embedded dependencies (transitively), each once, into
 * order[]; returns how many. */
static int file_closure(const lsd_file files[LSD_N_FILES], int root, int order[LSD_N_FILES]) {
    int n = 0;
    order[n++] = root;
    for (int k = 0; k < n; k++) {
        const lsd_file *file = &files[order[k]];
        wire w = {file->proto, file->proto + file->proto_len, false};
        uint32_t f;
        const uint8_t *d;
        size_t len;
        while (wire_next(&w, &f, &d, &len)) {
            if (f != 3 || !d) continue;
            for (int j = 0; j < LSD_N_FILES; j++) {
                if (files[j].name_len != len || memcmp(files[j].name, d, len) != 0) continue;
                bool seen = false;
                for (int q = 0; q < n; q++) seen = seen || order[q] == j;
                if (!seen && n < LSD_N_FILES) order[n++] = j;
            }
        }
    }
    return n;
}

int lsd_reflection_answer(const uint8_t *req_bytes, size_t req_len, uint8_t **resp, size_t *resp_len) {
    if (!resp || !resp_len) return -1;
    *resp = NULL;
    *resp_len = 0;
    Grpc__Reflection__V1__ServerReflectionRequest *req =
        grpc__reflection__v1__server_reflection_request__unpack(NULL, req_len, req_bytes ? req_bytes : (const uint8_t *)"");
    if (!req) return -1;

    Grpc__Reflection__V1__ServerReflectionResponse out = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Grpc__Reflection__V1__FileDescriptorResponse fdr = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    Grpc__Reflection__V1__ListServiceResponse lsr = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ExtensionNumberResponse enr = GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    Grpc__Reflection__V1__ErrorResponse er = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse svc[sizeof lsd_services / sizeof lsd_services[0]];
    Grpc__Reflection__V1__ServiceResponse *svc_ptr[sizeof lsd_services / sizeof lsd_services[0]];
    ProtobufCBinaryData blobs[LSD_N_FILES];
    char msg[LSD_NAME_MAX + 200];
    out.valid_host = req->host;
    out.original_request = req;

    lsd_file files[LSD_N_FILES];
    int found = -1;
    const char *asked = "";
    bool files_ok = load_files(files);

    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        for (size_t i = 0; i < sizeof lsd_services / sizeof lsd_services[0]; i++) {
            grpc__reflection__v1__service_response__init(&svc[i]);
            svc[i].name = (char *)lsd_services[i];
            svc_ptr[i] = &svc[i];
        }
        lsr.n_service = sizeof lsd_services / sizeof lsd_services[0];
        lsr.service = svc_ptr;
        out.message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        out.list_services_response = &lsr;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        asked = req->file_by_filename ? req->file_by_filename : "";
        for (int i = 0; files_ok && i < LSD_N_FILES && found < 0; i++) {
            if (bytes_eq(files[i].name, files[i].name_len, asked)) found = i;
        }
        if (found < 0) {
            snprintf(msg, sizeof msg, "file '%.*s' not found: this server has layerskip/v1/layerskip.proto, "
                     "grpc/health/v1/health.proto, grpc/reflection/v1/reflection.proto and "
                     "grpc/reflection/v1alpha/reflection.proto", LSD_NAME_MAX, asked);
        }
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        asked = req->file_containing_symbol ? req->file_containing_symbol : "";
        for (int i = 0; files_ok && i < LSD_N_FILES && found < 0 && *asked; i++) {
            if (file_has_symbol(&files[i], asked, false)) found = i;
        }
        if (found < 0) {
            snprintf(msg, sizeof msg, "symbol '%.*s' not found: give a fully qualified name such as "
                     "layerskip.v1.LayerSkip or layerskip.v1.GenerateRequest", LSD_NAME_MAX, asked);
        }
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
        asked = req->all_extension_numbers_of_type ? req->all_extension_numbers_of_type : "";
        bool known = false;
        for (int i = 0; files_ok && i < LSD_N_FILES && !known && *asked; i++) {
            known = file_has_symbol(&files[i], asked, true);
        }
        if (known) {
            enr.base_type_name = (char *)asked;
            out.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
            out.all_extension_numbers_response = &enr;
        } else {
            snprintf(msg, sizeof msg, "message type '%.*s' not found: give a fully qualified message name "
                     "such as layerskip.v1.GenerateRequest", LSD_NAME_MAX, asked);
        }
        break;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        snprintf(msg, sizeof msg, "no extensions: the files served here declare none");
        break;
    default:
        snprintf(msg, sizeof msg, "empty reflection request: set one of file_by_filename, "
                 "file_containing_symbol, list_services, all_extension_numbers_of_type");
        break;
    }

    if (out.message_response_case == GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET) {
        if (found >= 0) {
            int order[LSD_N_FILES];
            int n = file_closure(files, found, order);
            for (int k = 0; k < n; k++) {
                blobs[k].data = (uint8_t *)files[order[k]].proto;
                blobs[k].len = files[order[k]].proto_len;
            }
            fdr.n_file_descriptor_proto = (size_t)n;
            fdr.file_descriptor_proto = blobs;
            out.message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
            out.file_descriptor_response = &fdr;
        } else {
            if (!files_ok) {
                er.error_code = LSD_GRPC_INTERNAL;
                snprintf(msg, sizeof msg, "the embedded descriptor sets are damaged: rebuild proto/ (ls_proto_desc)");
            } else if (req->message_request_case ==
                       GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET) {
                er.error_code = LSD_GRPC_INVALID_ARGUMENT;
            } else {
                er.error_code = LSD_GRPC_NOT_FOUND;
            }
            er.error_message = msg;
            out.message_response_case = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
            out.error_response = &er;
        }
    }

    /* the echoed request drops fields this server does not know: protobuf-c
     * keeps them (even field number 0) and would send back bytes a client
     * cannot parse (found by fuzz_daemon_reflection) */
    const unsigned n_unknown = req->base.n_unknown_fields;
    req->base.n_unknown_fields = 0;
    size_t n = grpc__reflection__v1__server_reflection_response__get_packed_size(&out);
    uint8_t *buf = malloc(n ? n : 1);
    int rc = -1;
    if (buf) {
        *resp_len = grpc__reflection__v1__server_reflection_response__pack(&out, buf);
        *resp = buf;
        rc = 0;
    }
    req->base.n_unknown_fields = n_unknown; /* so that they are freed */
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return rc;
}
