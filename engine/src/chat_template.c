/* chat_template.c: a Jinja2 subset for chat templates (see chat_template.h).
 *
 * Source -> tokens (whitespace control applied to the text between tags) ->
 * a tree of statements and expressions (the template's arena) -> rendered by
 * walking the tree (the render's arena). Errors unwind with longjmp to the
 * entry point; everything a parse or a render allocates lives in its arena,
 * so nothing leaks on the way out.
 *
 * Values follow Python's: printing (str/repr), truthiness, `+` on strings
 * and lists, `/` giving floats, `//` and `%` flooring, `in` on strings,
 * lists and dicts. Undefined prints as "", is false, iterates as empty and
 * has length 0; an attribute of it is an error, as with Jinja2's default
 * Undefined.
 *
 * Filters: abs, capitalize, count, d, default, dictsort, e, escape, first,
 * float, indent, int, items, join, last, length, list, lower, map, max, min,
 * reject, rejectattr, replace, reverse, round, safe, select, selectattr,
 * sort, string, sum, title, tojson, trim, unique, upper, wordcount.
 * Tests: boolean, callable, defined, divisibleby, eq, equalto, even, false,
 * float, ge, gt, in, integer, iterable, le, lower, lt, mapping, ne, none,
 * number, odd, sameas, sequence, string, true, undefined, upper (and the
 * operators ==, !=, <, <=, >, >= as test names).
 * Methods: str.strip/lstrip/rstrip/split/splitlines/startswith/endswith/
 * upper/lower/title/capitalize/replace/find/count/join/format (no format
 * specs); dict.items/keys/values/get. */
#include "layerskip/chat_template.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ arena */

typedef struct ablock {
    struct ablock *next;
    size_t used, cap;
    max_align_t data[];
} ablock;

typedef struct arena {
    ablock *head;
    size_t total, limit;
} arena;

static void arena_free(arena *a) {
    for (ablock *b = a->head, *n; b; b = n) {
        n = b->next;
        free(b);
    }
    a->head = NULL;
    a->total = 0;
}

/* NULL when over the limit or out of memory */
static void *arena_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->total + cap > a->limit) return NULL;
        ablock *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
        a->total += cap;
    }
    void *p = (char *)a->head->data + a->head->used;
    a->head->used += n;
    memset(p, 0, n);
    return p;
}

/* ------------------------------------------------------------ shared types */

typedef struct str {
    const char *p;
    size_t n;
} str;

static bool str_eq(str a, const char *b) { return a.n == strlen(b) && memcmp(a.p, b, a.n) == 0; }
static bool str_eqs(str a, str b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }

typedef enum {
    V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_MACRO, V_FUNC, V_METHOD
} vtype;

typedef struct val val;
typedef struct vlist vlist;
typedef struct vdict vdict;
typedef struct node node;
typedef struct vmethod vmethod;

struct val {
    vtype t;
    union {
        bool b;
        long long i;
        double f;
        str s; /* V_STR; V_UNDEF: the name, for messages */
        vlist *l;
        vdict *d;
        const node *macro;
        int fn;
        vmethod *m;
    };
};

struct vlist {
    int n, cap;
    bool tuple; /* printed ( ) */
    val *items;
};

struct vdict {
    int n, cap;
    bool ns; /* a namespace(): attributes may be set */
    val *keys; /* strings, or numbers (Python's dict keys: any hashable) */
    val *vals;
};

struct vmethod {
    val recv;
    str name;
};

/* ------------------------------------------------------------ tree */

enum {
    E_LIT, E_NAME, E_ATTR, E_INDEX, E_SLICE, E_CALL, E_FILTER, E_TEST, E_NOT, E_NEG, E_POS, E_BIN, E_AND, E_OR,
    E_COND, E_LIST, E_TUPLE, E_DICT
};
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT,
       OP_GE, OP_IN, OP_NOTIN };

typedef struct expr expr;
struct expr {
    int k, op, line;
    bool neg;      /* E_TEST: is not */
    str s;         /* name, attribute, filter or test name */
    val v;         /* E_LIT */
    expr *a, *b, *c, *d;
    expr **args;   /* call/filter/test arguments, list items, dict keys and values (alternating) */
    str *kw;       /* keyword of each argument (n == 0: positional) */
    int nargs;
};

enum { S_TEXT, S_OUT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_BREAK, S_CONTINUE, S_BODY, S_FILTERBLOCK };

typedef struct body {
    node **items;
    int n;
} body;

struct node {
    int k, line;
    str s;           /* S_TEXT; S_SET/S_SETBLOCK/S_MACRO: the name */
    str attr;        /* S_SET: ns.attr */
    expr *e;         /* S_OUT, S_SET value, S_FOR iterable */
    expr *cond;      /* S_FOR filter */
    expr **conds;    /* S_IF: one per branch */
    body *bodies;    /* S_IF: one per branch (+1 for else) */
    int nbranch;
    bool has_else;
    body b, else_b;  /* S_FOR, S_SETBLOCK, S_MACRO, S_BODY */
    str *targets;    /* S_FOR loop names; S_MACRO parameter names */
    expr **defaults; /* S_MACRO: a default per parameter or NULL */
    int ntargets;
};

struct ls_chat_template {
    arena a;
    body root;
};

/* ------------------------------------------------------------ lexer */

enum { T_EOF, T_TEXT, T_VAR_B, T_VAR_E, T_BLK_B, T_BLK_E, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct tok {
    int k, line;
    str s;   /* T_TEXT, T_NAME, T_OP; T_STR: the unescaped string */
    long long i;
    double f;
} tok;

typedef struct parser {
    arena *a;
    const char *src;
    size_t len;
    tok *toks;
    int n, cap, pos;
    jmp_buf jb;
    ls_status st;
    ls_err *err;
    int depth;
} parser;

static _Noreturn void perr(parser *p, ls_status st, int line, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ls_err_set(p->err, st, "chat template line %d: %s", line, msg);
    p->st = st;
    longjmp(p->jb, 1);
}

static void *palloc(parser *p, size_t n) {
    void *q = arena_alloc(p->a, n);
    if (!q) {
        ls_err_set(p->err, LS_ERR_NOMEM, "chat template: out of memory while parsing");
        p->st = LS_ERR_NOMEM;
        longjmp(p->jb, 1);
    }
    return q;
}

static void push_tok(parser *p, tok t) {
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 256;
        tok *nt = palloc(p, sizeof(tok) * (size_t)cap);
        if (p->n) memcpy(nt, p->toks, sizeof(tok) * (size_t)p->n);
        p->toks = nt;
        p->cap = cap;
    }
    p->toks[p->n++] = t;
}

static int line_at(const parser *p, size_t off) {
    int line = 1;
    for (size_t i = 0; i < off && i < p->len; i++) line += p->src[i] == '\n';
    return line;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* append one UTF-8 code point */
static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* tokens inside a tag, from *i up to its closer ("}}" or "%}", with an
 * optional '-' or '+' before it); returns the closer's modifier */
static char lex_tag(parser *p, size_t *i, char closer, int line) {
    const char *s = p->src;
    size_t n = p->len;
    int depth = 0; /* open ( [ {: "}}" inside a dict literal is not the closer */
    for (;;) {
        while (*i < n && is_ws(s[*i])) (*i)++;
        if (*i >= n) perr(p, LS_ERR_FORMAT, line, "a tag is not closed (missing '%c}')", closer);
        char c = s[*i];
        /* the closer, with its modifier */
        if (depth == 0 && (c == '-' || c == '+') && *i + 2 < n && s[*i + 1] == closer && s[*i + 2] == '}') {
            *i += 3;
            return c;
        }
        if (depth == 0 && c == closer && *i + 1 < n && s[*i + 1] == '}') {
            *i += 2;
            return 0;
        }
        tok t = {.line = line_at(p, *i)};
        if (isalpha((unsigned char)c) || c == '_') {
            size_t b = *i;
            while (*i < n && (isalnum((unsigned char)s[*i]) || s[*i] == '_')) (*i)++;
            t.k = T_NAME;
            t.s = (str){s + b, *i - b};
        } else if (isdigit((unsigned char)c)) {
            size_t b = *i;
            bool fl = false;
            while (*i < n && (isdigit((unsigned char)s[*i]) || s[*i] == '_')) (*i)++;
            if (*i + 1 < n && s[*i] == '.' && isdigit((unsigned char)s[*i + 1])) {
                fl = true;
                (*i)++;
                while (*i < n && (isdigit((unsigned char)s[*i]) || s[*i] == '_')) (*i)++;
            }
            if (*i < n && (s[*i] == 'e' || s[*i] == 'E')) {
                size_t j = *i + 1;
                if (j < n && (s[j] == '+' || s[j] == '-')) j++;
                if (j < n && isdigit((unsigned char)s[j])) {
                    fl = true;
                    *i = j;
                    while (*i < n && isdigit((unsigned char)s[*i])) (*i)++;
                }
            }
            char buf[64];
            size_t m = 0;
            for (size_t j = b; j < *i && m < sizeof buf - 1; j++)
                if (s[j] != '_') buf[m++] = s[j];
            buf[m] = 0;
            if (fl) {
                t.k = T_FLOAT;
                t.f = strtod(buf, NULL);
            } else {
                t.k = T_INT;
                t.i = strtoll(buf, NULL, 10);
                if (m > 18) perr(p, LS_ERR_UNSUPPORTED, t.line, "integer literal %s is too large", buf);
            }
        } else if (c == '\'' || c == '"') {
            size_t j = *i + 1;
            char *o = palloc(p, n - *i + 1), *w = o;
            for (;;) {
                if (j >= n) perr(p, LS_ERR_FORMAT, t.line, "a string literal is not closed");
                char d = s[j];
                if (d == c) break;
                if (d == '\\' && j + 1 < n) {
                    char e = s[++j];
                    unsigned cp = 0;
                    int hex = 0;
                    switch (e) {
                    case 'n': *w++ = '\n'; break;
                    case 't': *w++ = '\t'; break;
                    case 'r': *w++ = '\r'; break;
                    case '0': *w++ = '\0'; break;
                    case 'b': *w++ = '\b'; break;
                    case 'f': *w++ = '\f'; break;
                    case 'v': *w++ = '\v'; break;
                    case '\\': *w++ = '\\'; break;
                    case '\'': *w++ = '\''; break;
                    case '"': *w++ = '"'; break;
                    case '\n': break; /* a continued line */
                    case 'x': hex = 2; break;
                    case 'u': hex = 4; break;
                    case 'U': hex = 8; break;
                    default: *w++ = '\\'; *w++ = e; break; /* Python keeps unknown escapes */
                    }
                    if (hex) {
                        for (int h = 0; h < hex; h++) {
                            char x = j + 1 < n ? s[j + 1] : 0;
                            if (!isxdigit((unsigned char)x))
                                perr(p, LS_ERR_FORMAT, t.line, "a \\%c escape needs %d hex digits", e, hex);
                            cp = cp * 16 + (unsigned)(isdigit((unsigned char)x) ? x - '0' : (tolower(x) - 'a' + 10));
                            j++;
                        }
                        if (cp > 0x10FFFF) perr(p, LS_ERR_FORMAT, t.line, "escape beyond U+10FFFF");
                        w += put_utf8(w, cp);
                    }
                    j++;
                    continue;
                }
                *w++ = d;
                j++;
            }
            *i = j + 1;
            t.k = T_STR;
            t.s = (str){o, (size_t)(w - o)};
        } else {
            static const char *ops2[] = {"==", "!=", "<=", ">=", "//", "**"};
            t.k = T_OP;
            t.s = (str){s + *i, 1};
            for (size_t k = 0; k < sizeof ops2 / sizeof ops2[0]; k++)
                if (*i + 1 < n && s[*i] == ops2[k][0] && s[*i + 1] == ops2[k][1]) t.s.n = 2;
            if (t.s.n == 1 && !strchr("+-*/%~<>=()[]{}.,:|", c))
                perr(p, LS_ERR_FORMAT, t.line, "unexpected character '%c' in a tag", c);
            if (t.s.n == 1 && (c == '(' || c == '[' || c == '{')) depth++;
            if (t.s.n == 1 && (c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            *i += t.s.n;
        }
        push_tok(p, t);
    }
}

/* the whole source to tokens, with trim_blocks, lstrip_blocks and the
 * '-' / '+' modifiers applied to the text between tags */
static void lex(parser *p) {
    const char *s = p->src;
    size_t n = p->len, i = 0;
    bool strip_next = false, trim_nl = false;
    while (i <= n) {
        size_t j = i;
        while (j + 1 < n && !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#'))) j++;
        if (j + 1 >= n) j = n;
        size_t tb = i, te = j; /* the text before the tag */
        if (strip_next) {
            while (tb < te && is_ws(s[tb])) tb++;
        } else if (trim_nl && tb < te && s[tb] == '\n') {
            tb++;
        }
        char kind = j < n ? s[j + 1] : 0;
        char mod = j < n && j + 2 < n ? s[j + 2] : 0;
        if (j < n && mod == '-') {
            while (te > tb && is_ws(s[te - 1])) te--;
        } else if (j < n && (kind == '%' || kind == '#') && mod != '+') {
            /* lstrip_blocks: spaces and tabs from the line's start to the tag */
            size_t k = te;
            while (k > tb && (s[k - 1] == ' ' || s[k - 1] == '\t')) k--;
            if ((k > tb && s[k - 1] == '\n') || (k == tb && (k == 0 || s[k - 1] == '\n'))) te = k;
        }
        if (te > tb) push_tok(p, (tok){.k = T_TEXT, .line = line_at(p, tb), .s = {s + tb, te - tb}});
        if (j >= n) break;
        int line = line_at(p, j);
        i = j + 2 + ((mod == '-' || mod == '+') ? 1 : 0);
        char endmod;
        if (kind == '#') {
            size_t k = i;
            while (k + 1 < n && !(s[k] == '#' && s[k + 1] == '}')) k++;
            if (k + 1 >= n) perr(p, LS_ERR_FORMAT, line, "a comment is not closed (missing '#}')");
            endmod = k > i && (s[k - 1] == '-' || s[k - 1] == '+') ? s[k - 1] : 0;
            i = k + 2;
        } else if (kind == '{') {
            push_tok(p, (tok){.k = T_VAR_B, .line = line});
            endmod = lex_tag(p, &i, '}', line);
            push_tok(p, (tok){.k = T_VAR_E, .line = line});
        } else {
            /* {% raw %}: the text up to {% endraw %} as it is */
            size_t k = i;
            while (k < n && is_ws(s[k])) k++;
            if (k + 3 <= n && memcmp(s + k, "raw", 3) == 0 && (k + 3 == n || !isalnum((unsigned char)s[k + 3]))) {
                perr(p, LS_ERR_UNSUPPORTED, line, "{%% raw %%} is not supported");
            }
            push_tok(p, (tok){.k = T_BLK_B, .line = line});
            endmod = lex_tag(p, &i, '%', line);
            push_tok(p, (tok){.k = T_BLK_E, .line = line});
        }
        strip_next = endmod == '-';
        trim_nl = kind != '{' && endmod != '+' && endmod != '-';
    }
    push_tok(p, (tok){.k = T_EOF, .line = line_at(p, n)});
}

/* ------------------------------------------------------------ parser */

#define MAX_DEPTH 200

static tok *peek(parser *p) { return &p->toks[p->pos]; }
static tok *next_tok(parser *p) {
    tok *t = &p->toks[p->pos];
    if (t->k != T_EOF) p->pos++;
    return t;
}
static bool is_op(const tok *t, const char *op) { return t->k == T_OP && str_eq(t->s, op); }
static bool is_name(const tok *t, const char *name) { return t->k == T_NAME && str_eq(t->s, name); }

static const char *tok_desc(const tok *t, char *buf, size_t len) {
    switch (t->k) {
    case T_EOF: return "the end of the template";
    case T_TEXT: return "text";
    case T_VAR_B: return "'{{'";
    case T_VAR_E: return "'}}'";
    case T_BLK_B: return "'{%'";
    case T_BLK_E: return "'%}'";
    case T_STR: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default:
        snprintf(buf, len, "'%.*s'", (int)(t->s.n > 40 ? 40 : t->s.n), t->s.p);
        return buf;
    }
}

static void expect_op(parser *p, const char *op) {
    tok *t = next_tok(p);
    if (!is_op(t, op)) {
        char b[64];
        perr(p, LS_ERR_FORMAT, t->line, "expected '%s', found %s", op, tok_desc(t, b, sizeof b));
    }
}

static str expect_name(parser *p) {
    tok *t = next_tok(p);
    if (t->k != T_NAME) {
        char b[64];
        perr(p, LS_ERR_FORMAT, t->line, "expected a name, found %s", tok_desc(t, b, sizeof b));
    }
    return t->s;
}

static expr *mk(parser *p, int k, int line) {
    expr *e = palloc(p, sizeof *e);
    e->k = k;
    e->line = line;
    return e;
}

typedef struct exprvec {
    expr **v;
    str *kw;
    int n, cap;
} exprvec;

static void ev_push(parser *p, exprvec *ev, expr *e, str kw) {
    if (ev->n == ev->cap) {
        int cap = ev->cap ? ev->cap * 2 : 4;
        expr **nv = palloc(p, sizeof(expr *) * (size_t)cap);
        str *nk = palloc(p, sizeof(str) * (size_t)cap);
        if (ev->n) {
            memcpy(nv, ev->v, sizeof(expr *) * (size_t)ev->n);
            memcpy(nk, ev->kw, sizeof(str) * (size_t)ev->n);
        }
        ev->v = nv;
        ev->kw = nk;
        ev->cap = cap;
    }
    ev->v[ev->n] = e;
    ev->kw[ev->n++] = kw;
}

static expr *parse_expr(parser *p);
static expr *parse_or(parser *p);
static expr *parse_unary(parser *p, bool with_filter);
static expr *parse_primary(parser *p);

/* "(a, b, k=v)": the '(' is taken */
static void parse_args(parser *p, expr *e) {
    exprvec ev = {0};
    if (!is_op(peek(p), ")")) {
        for (;;) {
            str kw = {0};
            if (peek(p)->k == T_NAME && is_op(&p->toks[p->pos + 1], "=")) {
                kw = next_tok(p)->s;
                next_tok(p);
            } else if (is_op(peek(p), "*")) {
                perr(p, LS_ERR_UNSUPPORTED, peek(p)->line, "*args in a call is not supported");
            }
            ev_push(p, &ev, parse_expr(p), kw);
            if (!is_op(peek(p), ",")) break;
            next_tok(p);
            if (is_op(peek(p), ")")) break;
        }
    }
    expect_op(p, ")");
    e->args = ev.v;
    e->kw = ev.kw;
    e->nargs = ev.n;
}

/* e(args): the '(' is next */
static expr *parse_call(parser *p, expr *e) {
    expr *x = mk(p, E_CALL, next_tok(p)->line);
    x->a = e;
    parse_args(p, x);
    return x;
}

static expr *parse_postfix(parser *p, expr *e) {
    for (;;) {
        tok *t = peek(p);
        if (is_op(t, ".")) {
            next_tok(p);
            tok *n = next_tok(p);
            if (n->k != T_NAME && n->k != T_INT) {
                char b[64];
                perr(p, LS_ERR_FORMAT, n->line, "expected an attribute name after '.', found %s",
                     tok_desc(n, b, sizeof b));
            }
            expr *x = mk(p, n->k == T_INT ? E_INDEX : E_ATTR, n->line);
            x->a = e;
            if (n->k == T_INT) {
                x->b = mk(p, E_LIT, n->line);
                x->b->v = (val){.t = V_INT, .i = n->i};
            } else {
                x->s = n->s;
            }
            e = x;
        } else if (is_op(t, "[")) {
            next_tok(p);
            expr *idx[3] = {NULL, NULL, NULL};
            int parts = 0;
            bool slice = false;
            for (;;) {
                if (is_op(peek(p), ":")) {
                    slice = true;
                    next_tok(p);
                    if (++parts > 2) perr(p, LS_ERR_FORMAT, t->line, "a slice has at most 3 parts");
                    continue;
                }
                if (is_op(peek(p), "]")) break;
                if (idx[parts]) perr(p, LS_ERR_FORMAT, t->line, "expected ':' or ']' in a subscript");
                idx[parts] = parse_expr(p);
            }
            expect_op(p, "]");
            expr *x = mk(p, slice ? E_SLICE : E_INDEX, t->line);
            x->a = e;
            x->b = idx[0];
            x->c = idx[1];
            x->d = idx[2];
            if (!slice && !x->b) perr(p, LS_ERR_FORMAT, t->line, "an empty subscript []");
            e = x;
        } else if (is_op(t, "(")) {
            e = parse_call(p, e);
        } else {
            return e;
        }
    }
}

/* a test's single argument without parentheses ("x is divisibleby 3") */
static bool starts_test_arg(const tok *t) {
    if (t->k == T_STR || t->k == T_INT || t->k == T_FLOAT) return true;
    if (t->k != T_NAME) return false;
    static const char *stop[] = {"else", "or", "and", "if", "is", "in", "not", "for", "recursive"};
    for (size_t i = 0; i < sizeof stop / sizeof stop[0]; i++)
        if (str_eq(t->s, stop[i])) return false;
    return true;
}

static expr *parse_filters(parser *p, expr *e) {
    for (;;) {
        tok *t = peek(p);
        if (is_op(t, "|")) {
            next_tok(p);
            expr *x = mk(p, E_FILTER, t->line);
            x->a = e;
            x->s = expect_name(p);
            if (is_op(peek(p), ".")) /* dotted filter names are not used by templates */
                perr(p, LS_ERR_UNSUPPORTED, t->line, "dotted filter names are not supported");
            if (is_op(peek(p), "(")) {
                next_tok(p);
                parse_args(p, x);
            }
            e = x;
        } else if (is_name(t, "is")) {
            next_tok(p);
            expr *x = mk(p, E_TEST, t->line);
            x->a = e;
            if (is_name(peek(p), "not")) {
                next_tok(p);
                x->neg = true;
            }
            tok *n = next_tok(p);
            if (n->k == T_NAME) x->s = n->s;
            else if (n->k == T_OP && (str_eq(n->s, "==") || str_eq(n->s, "!=") || str_eq(n->s, "<") ||
                                      str_eq(n->s, "<=") || str_eq(n->s, ">") || str_eq(n->s, ">=")))
                x->s = n->s;
            else {
                char b[64];
                perr(p, LS_ERR_FORMAT, n->line, "expected a test name after 'is', found %s", tok_desc(n, b, sizeof b));
            }
            /* "x is none" is the test none; "x is sameas none" has an argument */
            if (is_op(peek(p), "(")) {
                next_tok(p);
                parse_args(p, x);
            } else if (starts_test_arg(peek(p)) && !str_eq(x->s, "none") && !str_eq(x->s, "true") &&
                       !str_eq(x->s, "false") && !str_eq(x->s, "defined") && !str_eq(x->s, "undefined")) {
                exprvec ev = {0};
                ev_push(p, &ev, parse_primary(p), (str){0});
                x->args = ev.v;
                x->kw = ev.kw;
                x->nargs = 1;
            }
            e = x;
        } else if (is_op(t, "(")) {
            e = parse_call(p, e);
        } else {
            return e;
        }
    }
}

static expr *parse_primary(parser *p) {
    tok *t = next_tok(p);
    expr *e;
    switch (t->k) {
    case T_NAME:
        e = mk(p, E_LIT, t->line);
        if (str_eq(t->s, "true") || str_eq(t->s, "True")) e->v = (val){.t = V_BOOL, .b = true};
        else if (str_eq(t->s, "false") || str_eq(t->s, "False")) e->v = (val){.t = V_BOOL, .b = false};
        else if (str_eq(t->s, "none") || str_eq(t->s, "None")) e->v = (val){.t = V_NONE};
        else {
            e->k = E_NAME;
            e->s = t->s;
        }
        break;
    case T_STR: {
        /* adjacent literals join, as in Python */
        str s = t->s;
        while (peek(p)->k == T_STR) {
            str b = next_tok(p)->s;
            char *j = palloc(p, s.n + b.n + 1);
            memcpy(j, s.p, s.n);
            memcpy(j + s.n, b.p, b.n);
            s = (str){j, s.n + b.n};
        }
        e = mk(p, E_LIT, t->line);
        e->v = (val){.t = V_STR, .s = s};
        break;
    }
    case T_INT:
        e = mk(p, E_LIT, t->line);
        e->v = (val){.t = V_INT, .i = t->i};
        break;
    case T_FLOAT:
        e = mk(p, E_LIT, t->line);
        e->v = (val){.t = V_FLOAT, .f = t->f};
        break;
    case T_OP:
        if (str_eq(t->s, "(")) {
            if (is_op(peek(p), ")")) {
                next_tok(p);
                e = mk(p, E_TUPLE, t->line);
                break;
            }
            expr *first = parse_expr(p);
            if (is_op(peek(p), ",")) {
                exprvec ev = {0};
                ev_push(p, &ev, first, (str){0});
                while (is_op(peek(p), ",")) {
                    next_tok(p);
                    if (is_op(peek(p), ")")) break;
                    ev_push(p, &ev, parse_expr(p), (str){0});
                }
                e = mk(p, E_TUPLE, t->line);
                e->args = ev.v;
                e->nargs = ev.n;
            } else {
                e = first;
            }
            expect_op(p, ")");
            break;
        }
        if (str_eq(t->s, "[")) {
            exprvec ev = {0};
            while (!is_op(peek(p), "]")) {
                ev_push(p, &ev, parse_expr(p), (str){0});
                if (!is_op(peek(p), ",")) break;
                next_tok(p);
            }
            expect_op(p, "]");
            e = mk(p, E_LIST, t->line);
            e->args = ev.v;
            e->nargs = ev.n;
            break;
        }
        if (str_eq(t->s, "{")) {
            exprvec ev = {0};
            while (!is_op(peek(p), "}")) {
                ev_push(p, &ev, parse_expr(p), (str){0});
                expect_op(p, ":");
                ev_push(p, &ev, parse_expr(p), (str){0});
                if (!is_op(peek(p), ",")) break;
                next_tok(p);
            }
            expect_op(p, "}");
            e = mk(p, E_DICT, t->line);
            e->args = ev.v;
            e->nargs = ev.n;
            break;
        }
        /* fall through */
    default: {
        char b[64];
        perr(p, LS_ERR_FORMAT, t->line, "unexpected %s in an expression", tok_desc(t, b, sizeof b));
    }
    }
    return parse_postfix(p, e);
}

static expr *parse_unary(parser *p, bool with_filter) {
    tok *t = peek(p);
    expr *e;
    if (++p->depth > MAX_DEPTH) perr(p, LS_ERR_UNSUPPORTED, t->line, "expression nested deeper than %d", MAX_DEPTH);
    if (is_op(t, "-") || is_op(t, "+")) {
        next_tok(p);
        e = mk(p, is_op(t, "-") ? E_NEG : E_POS, t->line);
        e->a = parse_unary(p, false);
    } else {
        e = parse_primary(p);
    }
    if (with_filter) e = parse_filters(p, e);
    p->depth--;
    return e;
}

static expr *bin(parser *p, int op, expr *a, expr *b, int line) {
    expr *e = mk(p, E_BIN, line);
    e->op = op;
    e->a = a;
    e->b = b;
    return e;
}

static expr *parse_pow(parser *p) {
    expr *e = parse_unary(p, true);
    while (is_op(peek(p), "**")) {
        int line = next_tok(p)->line;
        e = bin(p, OP_POW, e, parse_unary(p, true), line);
    }
    return e;
}

static expr *parse_mul(parser *p) {
    expr *e = parse_pow(p);
    for (;;) {
        tok *t = peek(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) return e;
        next_tok(p);
        e = bin(p, op, e, parse_pow(p), t->line);
    }
}

static expr *parse_add(parser *p) {
    expr *e = parse_mul(p);
    for (;;) {
        tok *t = peek(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) return e;
        next_tok(p);
        e = bin(p, op, e, parse_mul(p), t->line);
    }
}

static expr *parse_concat(parser *p) {
    expr *e = parse_add(p);
    while (is_op(peek(p), "~")) {
        int line = next_tok(p)->line;
        e = bin(p, OP_CONCAT, e, parse_add(p), line);
    }
    return e;
}

static expr *parse_compare(parser *p) {
    expr *e = parse_concat(p);
    expr *chain = NULL, *prev = e;
    for (;;) {
        tok *t = peek(p);
        int op = -1;
        if (is_op(t, "==")) op = OP_EQ;
        else if (is_op(t, "!=")) op = OP_NE;
        else if (is_op(t, "<")) op = OP_LT;
        else if (is_op(t, "<=")) op = OP_LE;
        else if (is_op(t, ">")) op = OP_GT;
        else if (is_op(t, ">=")) op = OP_GE;
        else if (is_name(t, "in")) op = OP_IN;
        else if (is_name(t, "not") && is_name(&p->toks[p->pos + 1], "in")) op = OP_NOTIN;
        if (op < 0) break;
        next_tok(p);
        if (op == OP_NOTIN) next_tok(p);
        expr *rhs = parse_concat(p);
        expr *c = bin(p, op, prev, rhs, t->line);
        if (!chain) {
            chain = c;
        } else { /* a < b < c: (a < b) and (b < c) */
            expr *x = mk(p, E_AND, t->line);
            x->a = chain;
            x->b = c;
            chain = x;
        }
        prev = rhs;
    }
    return chain ? chain : e;
}

static expr *parse_not(parser *p) {
    if (is_name(peek(p), "not")) {
        int line = next_tok(p)->line;
        expr *e = mk(p, E_NOT, line);
        if (++p->depth > MAX_DEPTH) perr(p, LS_ERR_UNSUPPORTED, line, "expression nested deeper than %d", MAX_DEPTH);
        e->a = parse_not(p);
        p->depth--;
        return e;
    }
    return parse_compare(p);
}

/* sub (word sub)*, left-associative nodes of kind k: "and" over "not", "or" over "and" */
static expr *parse_chain(parser *p, int k, const char *word, expr *(*sub)(parser *)) {
    expr *e = sub(p);
    while (is_name(peek(p), word)) {
        int line = next_tok(p)->line;
        expr *x = mk(p, k, line);
        x->a = e;
        x->b = sub(p);
        e = x;
    }
    return e;
}

static expr *parse_and(parser *p) { return parse_chain(p, E_AND, "and", parse_not); }
static expr *parse_or(parser *p) { return parse_chain(p, E_OR, "or", parse_and); }

static expr *parse_expr(parser *p) {
    if (++p->depth > MAX_DEPTH) perr(p, LS_ERR_UNSUPPORTED, peek(p)->line, "expression nested deeper than %d", MAX_DEPTH);
    expr *e = parse_or(p);
    while (is_name(peek(p), "if")) {
        int line = next_tok(p)->line;
        expr *x = mk(p, E_COND, line);
        x->b = e;
        x->a = parse_or(p);
        if (is_name(peek(p), "else")) {
            next_tok(p);
            x->c = parse_expr(p);
        }
        e = x;
    }
    p->depth--;
    return e;
}

/* ---- statements ---- */

static void expect_blk_end(parser *p) {
    tok *t = next_tok(p);
    if (t->k != T_BLK_E) {
        char b[64];
        perr(p, LS_ERR_FORMAT, t->line, "expected '%%}', found %s", tok_desc(t, b, sizeof b));
    }
}

static node *mknode(parser *p, int k, int line) {
    node *n = palloc(p, sizeof *n);
    n->k = k;
    n->line = line;
    return n;
}

static void body_push(parser *p, body *b, node *n, int *cap) {
    if (b->n == *cap) {
        int c = *cap ? *cap * 2 : 8;
        node **v = palloc(p, sizeof(node *) * (size_t)c);
        if (b->n) memcpy(v, b->items, sizeof(node *) * (size_t)b->n);
        b->items = v;
        *cap = c;
    }
    b->items[b->n++] = n;
}

/* statements up to "{% <one of ends> ": returns the keyword found (the
 * tokens after it are left for the caller), NULL at the end of input */
static const char *parse_body(parser *p, body *b, const char *const *ends, int line);

static const char *const END_IF[] = {"elif", "else", "endif", NULL};
static const char *const END_FOR[] = {"else", "endfor", NULL};
static const char *const END_SET[] = {"endset", NULL};
static const char *const END_MACRO[] = {"endmacro", NULL};
static const char *const END_GEN[] = {"endgeneration", NULL};
static const char *const END_FILTER[] = {"endfilter", NULL};

static void need_end(parser *p, const char *got, const char *what, int line) {
    if (!got) perr(p, LS_ERR_FORMAT, line, "{%% %s %%} is not closed", what);
}

static node *parse_stmt(parser *p, tok *kw) {
    int line = kw->line;
    if (++p->depth > MAX_DEPTH) perr(p, LS_ERR_UNSUPPORTED, line, "blocks nested deeper than %d", MAX_DEPTH);
    node *n;
    if (str_eq(kw->s, "if")) {
        n = mknode(p, S_IF, line);
        int cap = 0;
        for (;;) {
            if (n->nbranch == cap) {
                int c = cap ? cap * 2 : 4;
                expr **cv = palloc(p, sizeof(expr *) * (size_t)c);
                body *bv = palloc(p, sizeof(body) * (size_t)(c + 1));
                if (n->nbranch) {
                    memcpy(cv, n->conds, sizeof(expr *) * (size_t)n->nbranch);
                    memcpy(bv, n->bodies, sizeof(body) * (size_t)n->nbranch);
                }
                n->conds = cv;
                n->bodies = bv;
                cap = c;
            }
            n->conds[n->nbranch] = parse_expr(p);
            expect_blk_end(p);
            const char *end = parse_body(p, &n->bodies[n->nbranch++], END_IF, line);
            need_end(p, end, "if", line);
            if (!strcmp(end, "elif")) continue;
            if (!strcmp(end, "else")) {
                expect_blk_end(p);
                n->has_else = true;
                end = parse_body(p, &n->else_b, END_IF + 2, line);
                need_end(p, end, "if", line);
            }
            expect_blk_end(p);
            break;
        }
    } else if (str_eq(kw->s, "for")) {
        n = mknode(p, S_FOR, line);
        str names[8];
        int nn = 0;
        bool paren = is_op(peek(p), "(");
        if (paren) next_tok(p);
        for (;;) {
            if (nn == 8) perr(p, LS_ERR_UNSUPPORTED, line, "more than 8 loop variables");
            names[nn++] = expect_name(p);
            if (!is_op(peek(p), ",")) break;
            next_tok(p);
        }
        if (paren) expect_op(p, ")");
        n->targets = palloc(p, sizeof(str) * (size_t)nn);
        memcpy(n->targets, names, sizeof(str) * (size_t)nn);
        n->ntargets = nn;
        if (!is_name(next_tok(p), "in")) perr(p, LS_ERR_FORMAT, line, "expected 'in' in a for loop");
        n->e = parse_or(p);
        /* "for x in xs if cond"; a conditional expression needs parentheses here, as in Jinja2 */
        if (is_name(peek(p), "if")) {
            next_tok(p);
            n->cond = parse_expr(p);
        }
        if (is_name(peek(p), "recursive")) perr(p, LS_ERR_UNSUPPORTED, line, "recursive loops are not supported");
        expect_blk_end(p);
        const char *end = parse_body(p, &n->b, END_FOR, line);
        need_end(p, end, "for", line);
        if (!strcmp(end, "else")) {
            expect_blk_end(p);
            n->has_else = true;
            end = parse_body(p, &n->else_b, END_FOR + 1, line);
            need_end(p, end, "for", line);
        }
        expect_blk_end(p);
    } else if (str_eq(kw->s, "set")) {
        str name = expect_name(p);
        str attr = {0};
        if (is_op(peek(p), ".")) {
            next_tok(p);
            attr = expect_name(p);
        }
        if (is_op(peek(p), ",")) perr(p, LS_ERR_UNSUPPORTED, line, "{%% set a, b = ... %%} is not supported");
        if (is_op(peek(p), "=")) {
            next_tok(p);
            n = mknode(p, S_SET, line);
            n->s = name;
            n->attr = attr;
            n->e = parse_expr(p);
            expect_blk_end(p);
        } else {
            if (attr.n) perr(p, LS_ERR_UNSUPPORTED, line, "a block {%% set ns.attr %%} is not supported");
            if (is_op(peek(p), "|")) perr(p, LS_ERR_UNSUPPORTED, line, "a filtered block set is not supported");
            expect_blk_end(p);
            n = mknode(p, S_SETBLOCK, line);
            n->s = name;
            need_end(p, parse_body(p, &n->b, END_SET, line), "set", line);
            expect_blk_end(p);
        }
    } else if (str_eq(kw->s, "macro")) {
        n = mknode(p, S_MACRO, line);
        n->s = expect_name(p);
        expect_op(p, "(");
        str names[32];
        expr *defs[32];
        int nn = 0;
        while (!is_op(peek(p), ")")) {
            if (nn == 32) perr(p, LS_ERR_UNSUPPORTED, line, "a macro with more than 32 parameters");
            names[nn] = expect_name(p);
            defs[nn] = NULL;
            if (is_op(peek(p), "=")) {
                next_tok(p);
                defs[nn] = parse_expr(p);
            }
            nn++;
            if (!is_op(peek(p), ",")) break;
            next_tok(p);
        }
        expect_op(p, ")");
        expect_blk_end(p);
        n->targets = palloc(p, sizeof(str) * (size_t)(nn ? nn : 1));
        n->defaults = palloc(p, sizeof(expr *) * (size_t)(nn ? nn : 1));
        if (nn) {
            memcpy(n->targets, names, sizeof(str) * (size_t)nn);
            memcpy(n->defaults, defs, sizeof(expr *) * (size_t)nn);
        }
        n->ntargets = nn;
        need_end(p, parse_body(p, &n->b, END_MACRO, line), "macro", line);
        if (peek(p)->k == T_NAME) next_tok(p); /* {% endmacro name %} */
        expect_blk_end(p);
    } else if (str_eq(kw->s, "break") || str_eq(kw->s, "continue")) {
        n = mknode(p, str_eq(kw->s, "break") ? S_BREAK : S_CONTINUE, line);
        expect_blk_end(p);
    } else if (str_eq(kw->s, "filter")) {
        /* {% filter name(args) %}body{% endfilter %}: the body's output through the filter */
        n = mknode(p, S_FILTERBLOCK, line);
        n->e = mk(p, E_FILTER, line);
        n->e->s = expect_name(p);
        if (is_op(peek(p), "(")) {
            next_tok(p);
            parse_args(p, n->e);
        }
        if (is_op(peek(p), "|")) perr(p, LS_ERR_UNSUPPORTED, line, "a chain of filters in {%% filter %%}");
        expect_blk_end(p);
        need_end(p, parse_body(p, &n->b, END_FILTER, line), "filter", line);
        expect_blk_end(p);
    } else if (str_eq(kw->s, "generation")) {
        /* Hugging Face's AssistantTracker: marks the assistant's tokens; renders its body */
        expect_blk_end(p);
        n = mknode(p, S_BODY, line);
        need_end(p, parse_body(p, &n->b, END_GEN, line), "generation", line);
        expect_blk_end(p);
    } else {
        perr(p, LS_ERR_UNSUPPORTED, line, "{%% %.*s %%} is not supported", (int)(kw->s.n > 40 ? 40 : kw->s.n),
             kw->s.p);
    }
    p->depth--;
    return n;
}

static const char *parse_body(parser *p, body *b, const char *const *ends, int line) {
    int cap = 0;
    (void)line;
    for (;;) {
        tok *t = next_tok(p);
        if (t->k == T_EOF) return NULL;
        if (t->k == T_TEXT) {
            node *n = mknode(p, S_TEXT, t->line);
            n->s = t->s;
            body_push(p, b, n, &cap);
        } else if (t->k == T_VAR_B) {
            node *n = mknode(p, S_OUT, t->line);
            n->e = parse_expr(p);
            tok *e = next_tok(p);
            if (e->k != T_VAR_E) {
                char d[64];
                perr(p, LS_ERR_FORMAT, e->line, "expected '}}', found %s", tok_desc(e, d, sizeof d));
            }
            body_push(p, b, n, &cap);
        } else if (t->k == T_BLK_B) {
            tok *kw = next_tok(p);
            if (kw->k != T_NAME) perr(p, LS_ERR_FORMAT, kw->line, "expected a statement name after '{%%'");
            for (int i = 0; ends && ends[i]; i++)
                if (str_eq(kw->s, ends[i])) return ends[i];
            static const char *closers[] = {"elif", "else", "endif", "endfor", "endset", "endmacro",
                                            "endgeneration", "endfilter"};
            for (size_t i = 0; i < sizeof closers / sizeof closers[0]; i++)
                if (str_eq(kw->s, closers[i]))
                    perr(p, LS_ERR_FORMAT, kw->line, "{%% %s %%} without a matching opening block", closers[i]);
            body_push(p, b, parse_stmt(p, kw), &cap);
        } else {
            char d[64];
            perr(p, LS_ERR_FORMAT, t->line, "unexpected %s", tok_desc(t, d, sizeof d));
        }
    }
}

ls_status ls_chat_template_parse(const char *src, size_t len, ls_chat_template **out, ls_err *err) {
    *out = NULL;
    ls_chat_template *t = calloc(1, sizeof *t);
    if (!t) return ls_err_set(err, LS_ERR_NOMEM, "chat template: out of memory");
    t->a.limit = 64u << 20;
    parser p = {.a = &t->a, .len = len, .err = err};
    if (setjmp(p.jb)) {
        arena_free(&t->a);
        free(t);
        return p.st;
    }
    /* the tree points into the source: keep a copy with it (the caller's may go) */
    char *copy = palloc(&p, len + 1);
    if (len) memcpy(copy, src, len);
    p.src = copy;
    lex(&p);
    if (parse_body(&p, &t->root, NULL, 1) != NULL) perr(&p, LS_ERR_FORMAT, 1, "internal: stray end");
    *out = t;
    return LS_OK;
}

void ls_chat_template_free(ls_chat_template *t) {
    if (!t) return;
    arena_free(&t->a);
    free(t);
}

/* ------------------------------------------------------------ values */

typedef struct frame {
    vdict *vars;
} frame;

typedef struct outbuf {
    char *p;
    size_t n, cap;
} outbuf;

enum { F_RANGE, F_NAMESPACE, F_RAISE, F_DICT, F_STRFTIME };

typedef struct rctx {
    arena a;
    jmp_buf jb;
    ls_status st;
    ls_err *err;
    frame *frames;
    int nframes, capframes;
    outbuf *out;        /* where output goes now (macro calls and block sets capture) */
    size_t max_output;
    long long steps, max_steps;
    long long now;      /* strftime_now's time; 0: the current time */
    int depth;
    int line;           /* of the statement or expression being evaluated */
    int loop_ctl;       /* 1 break, 2 continue */
} rctx;

static _Noreturn void rerr(rctx *c, ls_status st, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (st == LS_ERR_INVALID) ls_err_set(c->err, st, "%s", msg); /* raise_exception: the template's own words */
    else ls_err_set(c->err, st, "chat template line %d: %s", c->line, msg);
    c->st = st;
    longjmp(c->jb, 1);
}

static void *ralloc(rctx *c, size_t n) {
    void *q = arena_alloc(&c->a, n);
    if (!q) rerr(c, LS_ERR_NOMEM, "the template used more than %zu MiB while rendering", c->a.limit >> 20);
    return q;
}

static void step(rctx *c) {
    if (++c->steps > c->max_steps)
        rerr(c, LS_ERR_RANGE, "rendering stopped after %lld steps (a loop that does not end?)", c->max_steps);
}

static val vundef(str name) { return (val){.t = V_UNDEF, .s = name}; }
static val vnone(void) { return (val){.t = V_NONE}; }
static val vbool(bool b) { return (val){.t = V_BOOL, .b = b}; }
static val vint(long long i) { return (val){.t = V_INT, .i = i}; }
static val vfloat(double f) { return (val){.t = V_FLOAT, .f = f}; }
static val vstr(str s) { return (val){.t = V_STR, .s = s}; }

static str sdup(rctx *c, const char *p, size_t n) {
    char *q = ralloc(c, n + 1);
    if (n) memcpy(q, p, n);
    return (str){q, n};
}

static val vcstr(rctx *c, const char *s) { return vstr(sdup(c, s, strlen(s))); }

static vlist *list_new(rctx *c, int cap) {
    vlist *l = ralloc(c, sizeof *l);
    l->cap = cap > 0 ? cap : 4;
    l->items = ralloc(c, sizeof(val) * (size_t)l->cap);
    return l;
}

static void list_push(rctx *c, vlist *l, val v) {
    if (l->n == l->cap) {
        int cap = l->cap * 2;
        val *nv = ralloc(c, sizeof(val) * (size_t)cap);
        memcpy(nv, l->items, sizeof(val) * (size_t)l->n);
        l->items = nv;
        l->cap = cap;
    }
    l->items[l->n++] = v;
}

static vdict *dict_new(rctx *c, int cap) {
    vdict *d = ralloc(c, sizeof *d);
    d->cap = cap > 0 ? cap : 4;
    d->keys = ralloc(c, sizeof(val) * (size_t)d->cap);
    d->vals = ralloc(c, sizeof(val) * (size_t)d->cap);
    return d;
}

static bool equal(const val *a, const val *b);

static val *dict_getv(vdict *d, const val *k) {
    for (int i = 0; i < d->n; i++)
        if (equal(&d->keys[i], k)) return &d->vals[i];
    return NULL;
}

static val *dict_get(vdict *d, str k) {
    for (int i = 0; i < d->n; i++)
        if (d->keys[i].t == V_STR && str_eqs(d->keys[i].s, k)) return &d->vals[i];
    return NULL;
}

static void dict_setv(rctx *c, vdict *d, val k, val v) {
    val *old = dict_getv(d, &k);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        int cap = d->cap * 2;
        val *nk = ralloc(c, sizeof(val) * (size_t)cap);
        val *nv = ralloc(c, sizeof(val) * (size_t)cap);
        memcpy(nk, d->keys, sizeof(val) * (size_t)d->n);
        memcpy(nv, d->vals, sizeof(val) * (size_t)d->n);
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = k;
    d->vals[d->n++] = v;
}

static void dict_set(rctx *c, vdict *d, str k, val v) { dict_setv(c, d, (val){.t = V_STR, .s = k}, v); }

static const char *type_name(const val *v) {
    switch (v->t) {
    case V_UNDEF: return "undefined";
    case V_NONE: return "none";
    case V_BOOL: return "boolean";
    case V_INT: return "integer";
    case V_FLOAT: return "float";
    case V_STR: return "string";
    case V_LIST: return v->l->tuple ? "tuple" : "list";
    case V_DICT: return v->d->ns ? "namespace" : "dict";
    case V_MACRO: return "macro";
    case V_FUNC: return "function";
    default: return "method";
    }
}

static bool truthy(const val *v) {
    switch (v->t) {
    case V_UNDEF: case V_NONE: return false;
    case V_BOOL: return v->b;
    case V_INT: return v->i != 0;
    case V_FLOAT: return v->f != 0;
    case V_STR: return v->s.n > 0;
    case V_LIST: return v->l->n > 0;
    case V_DICT: return v->d->n > 0;
    default: return true;
    }
}

/* ---- output ---- */

static void out_put(rctx *c, const char *p, size_t n) {
    outbuf *o = c->out;
    if (o->n + n > c->max_output)
        rerr(c, LS_ERR_RANGE, "the output passed %zu bytes (a loop that does not end?)", c->max_output);
    if (o->n + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->n + n + 1) cap *= 2;
        char *q = ralloc(c, cap);
        if (o->n) memcpy(q, o->p, o->n);
        o->p = q;
        o->cap = cap;
    }
    if (n) memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = 0;
}

static void out_s(rctx *c, const char *s) { out_put(c, s, strlen(s)); }

/* Python's repr of a float: the shortest digits that read back the same */
static void fmt_float(double f, char *buf, size_t len) {
    if (isnan(f)) { snprintf(buf, len, "nan"); return; }
    if (isinf(f)) { snprintf(buf, len, f > 0 ? "inf" : "-inf"); return; }
    if (f == 0) { snprintf(buf, len, signbit(f) ? "-0.0" : "0.0"); return; }
    char e[40];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, exp10;
    const char *q = e;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (isdigit((unsigned char)*q)) digits[nd++] = *q;
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *w = buf;
    char *end = buf + len - 1;
    if (neg && w < end) *w++ = '-';
    if (exp10 >= -5 && exp10 < 16) {
        if (exp10 < 0) {
            for (const char *z = "0."; *z && w < end; z++) *w++ = *z;
            for (int i = 0; i < -exp10 - 1 && w < end; i++) *w++ = '0';
            for (int i = 0; i < nd && w < end; i++) *w++ = digits[i];
        } else {
            for (int i = 0; i <= exp10 && w < end; i++) *w++ = i < nd ? digits[i] : '0';
            if (w < end) *w++ = '.';
            if (nd > exp10 + 1) {
                for (int i = exp10 + 1; i < nd && w < end; i++) *w++ = digits[i];
            } else if (w < end) {
                *w++ = '0';
            }
        }
        *w = 0;
    } else {
        *w++ = digits[0];
        if (nd > 1) {
            *w++ = '.';
            for (int i = 1; i < nd && w < end; i++) *w++ = digits[i];
        }
        snprintf(w, (size_t)(end - w + 1), "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

static void out_repr(rctx *c, const val *v);

/* Python's str() */
static void out_val(rctx *c, const val *v) {
    char b[64];
    switch (v->t) {
    case V_UNDEF: return;
    case V_NONE: out_s(c, "None"); return;
    case V_BOOL: out_s(c, v->b ? "True" : "False"); return;
    case V_INT: snprintf(b, sizeof b, "%lld", v->i); out_s(c, b); return;
    case V_FLOAT: fmt_float(v->f, b, sizeof b); out_s(c, b); return;
    case V_STR: out_put(c, v->s.p, v->s.n); return;
    case V_LIST: case V_DICT: out_repr(c, v); return;
    case V_MACRO: out_s(c, "<Macro>"); return;
    default: out_s(c, "<function>"); return;
    }
}

static void out_repr_str(rctx *c, str s) {
    bool sq = memchr(s.p, '\'', s.n) != NULL, dq = memchr(s.p, '"', s.n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    out_put(c, &q, 1);
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        char b[8];
        if (ch == '\\') out_s(c, "\\\\");
        else if (ch == (unsigned char)q) { b[0] = '\\'; b[1] = q; out_put(c, b, 2); }
        else if (ch == '\n') out_s(c, "\\n");
        else if (ch == '\r') out_s(c, "\\r");
        else if (ch == '\t') out_s(c, "\\t");
        else if (ch < 0x20 || ch == 0x7f) { snprintf(b, sizeof b, "\\x%02x", ch); out_s(c, b); }
        else out_put(c, (const char *)&ch, 1);
    }
    out_put(c, &q, 1);
}

static void out_repr(rctx *c, const val *v) {
    if (++c->depth > MAX_DEPTH) rerr(c, LS_ERR_RANGE, "a value nested deeper than %d", MAX_DEPTH);
    switch (v->t) {
    case V_STR: out_repr_str(c, v->s); break;
    case V_UNDEF: break;
    case V_LIST:
        out_s(c, v->l->tuple ? "(" : "[");
        for (int i = 0; i < v->l->n; i++) {
            if (i) out_s(c, ", ");
            out_repr(c, &v->l->items[i]);
        }
        if (v->l->tuple && v->l->n == 1) out_s(c, ",");
        out_s(c, v->l->tuple ? ")" : "]");
        break;
    case V_DICT:
        if (v->d->ns) out_s(c, "<Namespace ");
        out_s(c, "{");
        for (int i = 0; i < v->d->n; i++) {
            if (i) out_s(c, ", ");
            out_repr(c, &v->d->keys[i]);
            out_s(c, ": ");
            out_repr(c, &v->d->vals[i]);
        }
        out_s(c, "}");
        if (v->d->ns) out_s(c, ">");
        break;
    default: out_val(c, v); break;
    }
    c->depth--;
}

/* output capture: what is written between the two becomes a string (in the arena) */
static outbuf *capture_begin(rctx *c, outbuf *tmp) {
    *tmp = (outbuf){0};
    outbuf *saved = c->out;
    c->out = tmp;
    return saved;
}

static str capture_end(rctx *c, outbuf *tmp, outbuf *saved) {
    c->out = saved;
    return (str){tmp->p ? tmp->p : "", tmp->n};
}

/* a value as a string (Python's str), in the arena */
static str to_str(rctx *c, const val *v) {
    if (v->t == V_STR) return v->s;
    outbuf tmp, *saved = capture_begin(c, &tmp);
    out_val(c, v);
    return capture_end(c, &tmp, saved);
}

/* ---- HF's tojson: json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...) ---- */

typedef struct jsonopt {
    int indent; /* < 0: none */
    str item_sep, key_sep;
    bool sort_keys;
} jsonopt;

static void json_str(rctx *c, str s) {
    out_s(c, "\"");
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        char b[8];
        switch (ch) {
        case '"': out_s(c, "\\\""); break;
        case '\\': out_s(c, "\\\\"); break;
        case '\n': out_s(c, "\\n"); break;
        case '\r': out_s(c, "\\r"); break;
        case '\t': out_s(c, "\\t"); break;
        case '\b': out_s(c, "\\b"); break;
        case '\f': out_s(c, "\\f"); break;
        default:
            if (ch < 0x20) {
                snprintf(b, sizeof b, "\\u%04x", ch);
                out_s(c, b);
            } else {
                out_put(c, (const char *)&ch, 1);
            }
        }
    }
    out_s(c, "\"");
}

static void json_nl(rctx *c, const jsonopt *o, int level) {
    out_s(c, "\n");
    for (int i = 0; i < o->indent * level; i++) out_s(c, " ");
}

static int key_cmp(const void *a, const void *b) {
    const str *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int r = memcmp(x->p, y->p, n);
    return r ? r : (x->n < y->n ? -1 : x->n > y->n);
}

/* json.dumps turns number, bool and None keys into strings */
static void json_key(rctx *c, const val *k) {
    if (k->t == V_STR) { json_str(c, k->s); return; }
    char b[64];
    if (k->t == V_INT) snprintf(b, sizeof b, "\"%lld\"", k->i);
    else if (k->t == V_BOOL) snprintf(b, sizeof b, "\"%s\"", k->b ? "true" : "false");
    else if (k->t == V_NONE) snprintf(b, sizeof b, "\"null\"");
    else { char f[48]; fmt_float(k->f, f, sizeof f); snprintf(b, sizeof b, "\"%s\"", f); }
    out_s(c, b);
}

static int compare(rctx *c, const val *a, const val *b, const char *op);

static int json_key_cmp(rctx *c, const val *a, const val *b) { return compare(c, a, b, "<"); }

static void json_val(rctx *c, const val *v, const jsonopt *o, int level) {
    if (++c->depth > MAX_DEPTH) rerr(c, LS_ERR_RANGE, "a value nested deeper than %d", MAX_DEPTH);
    char b[64];
    switch (v->t) {
    case V_NONE: out_s(c, "null"); break;
    case V_BOOL: out_s(c, v->b ? "true" : "false"); break;
    case V_INT: snprintf(b, sizeof b, "%lld", v->i); out_s(c, b); break;
    case V_FLOAT:
        if (isnan(v->f)) out_s(c, "NaN");
        else if (isinf(v->f)) out_s(c, v->f > 0 ? "Infinity" : "-Infinity");
        else { fmt_float(v->f, b, sizeof b); out_s(c, b); }
        break;
    case V_STR: json_str(c, v->s); break;
    case V_LIST:
        if (!v->l->n) { out_s(c, "[]"); break; }
        out_s(c, "[");
        for (int i = 0; i < v->l->n; i++) {
            if (i) out_put(c, o->item_sep.p, o->item_sep.n);
            if (o->indent >= 0) json_nl(c, o, level + 1);
            json_val(c, &v->l->items[i], o, level + 1);
        }
        if (o->indent >= 0) json_nl(c, o, level);
        out_s(c, "]");
        break;
    case V_DICT: {
        if (!v->d->n) { out_s(c, "{}"); break; }
        int *order = ralloc(c, sizeof(int) * (size_t)v->d->n);
        for (int i = 0; i < v->d->n; i++) order[i] = i;
        if (o->sort_keys) /* insertion sort: dicts in templates are small */
            for (int i = 1; i < v->d->n; i++)
                for (int j = i; j > 0 && json_key_cmp(c, &v->d->keys[order[j - 1]], &v->d->keys[order[j]]) > 0; j--) {
                    int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        out_s(c, "{");
        for (int k = 0; k < v->d->n; k++) {
            int i = order[k];
            if (k) out_put(c, o->item_sep.p, o->item_sep.n);
            if (o->indent >= 0) json_nl(c, o, level + 1);
            json_key(c, &v->d->keys[i]);
            out_put(c, o->key_sep.p, o->key_sep.n);
            json_val(c, &v->d->vals[i], o, level + 1);
        }
        if (o->indent >= 0) json_nl(c, o, level);
        out_s(c, "}");
        break;
    }
    default: rerr(c, LS_ERR_FORMAT, "tojson: a %s is not JSON serializable", type_name(v));
    }
    c->depth--;
}

/* ------------------------------------------------------------ evaluation */

static val eval(rctx *c, const expr *e);
static void exec_body(rctx *c, const body *b);

static _Noreturn void undefined_err(rctx *c, const val *v) {
    rerr(c, LS_ERR_FORMAT, "'%.*s' is undefined", (int)(v->s.n > 60 ? 60 : v->s.n), v->s.p ? v->s.p : "");
}

static void push_frame(rctx *c) {
    if (c->nframes == c->capframes) {
        int cap = c->capframes ? c->capframes * 2 : 16;
        frame *nf = ralloc(c, sizeof(frame) * (size_t)cap);
        if (c->nframes) memcpy(nf, c->frames, sizeof(frame) * (size_t)c->nframes);
        c->frames = nf;
        c->capframes = cap;
    }
    c->frames[c->nframes++].vars = dict_new(c, 8);
}

static void set_var(rctx *c, str name, val v) { dict_set(c, c->frames[c->nframes - 1].vars, name, v); }

static val lookup(rctx *c, str name) {
    for (int i = c->nframes - 1; i >= 0; i--) {
        val *v = dict_get(c->frames[i].vars, name);
        if (v) return *v;
    }
    static const struct { const char *name; int fn; } funcs[] = {
        {"range", F_RANGE}, {"namespace", F_NAMESPACE}, {"raise_exception", F_RAISE}, {"dict", F_DICT},
        {"strftime_now", F_STRFTIME}};
    for (size_t i = 0; i < sizeof funcs / sizeof funcs[0]; i++)
        if (str_eq(name, funcs[i].name)) return (val){.t = V_FUNC, .fn = funcs[i].fn};
    return vundef(name);
}

/* Python's len() in code points for strings */
static long long utf8_len(str s) {
    long long n = 0;
    for (size_t i = 0; i < s.n; i++) n += ((unsigned char)s.p[i] & 0xC0) != 0x80;
    return n;
}

/* byte offset of code point k (k may be the length) */
static size_t utf8_off(str s, long long k) {
    size_t i = 0;
    for (long long n = 0; i < s.n; i++) {
        if (((unsigned char)s.p[i] & 0xC0) != 0x80) {
            if (n == k) return i;
            n++;
        }
    }
    return s.n;
}

/* the items a for loop (or list()) sees */
static vlist *iter_items(rctx *c, const val *v) {
    switch (v->t) {
    case V_UNDEF: return list_new(c, 1);
    case V_LIST: return v->l;
    case V_DICT: {
        vlist *l = list_new(c, v->d->n);
        for (int i = 0; i < v->d->n; i++) list_push(c, l, v->d->keys[i]);
        return l;
    }
    case V_STR: {
        vlist *l = list_new(c, (int)v->s.n);
        for (size_t i = 0; i < v->s.n;) {
            size_t j = i + 1;
            while (j < v->s.n && ((unsigned char)v->s.p[j] & 0xC0) == 0x80) j++;
            list_push(c, l, vstr((str){v->s.p + i, j - i}));
            i = j;
        }
        return l;
    }
    default: rerr(c, LS_ERR_FORMAT, "a %s is not iterable", type_name(v));
    }
}

static bool equal(const val *a, const val *b) {
    bool an = a->t == V_INT || a->t == V_FLOAT || a->t == V_BOOL, bn = b->t == V_INT || b->t == V_FLOAT || b->t == V_BOOL;
    if (an && bn) {
        double x = a->t == V_FLOAT ? a->f : a->t == V_INT ? (double)a->i : a->b;
        double y = b->t == V_FLOAT ? b->f : b->t == V_INT ? (double)b->i : b->b;
        if (a->t != V_FLOAT && b->t != V_FLOAT) {
            long long xi = a->t == V_INT ? a->i : a->b, yi = b->t == V_INT ? b->i : b->b;
            return xi == yi;
        }
        return x == y;
    }
    if (a->t != b->t) return false;
    switch (a->t) {
    case V_UNDEF: case V_NONE: return true;
    case V_STR: return str_eqs(a->s, b->s);
    case V_LIST:
        if (a->l->n != b->l->n) return false;
        for (int i = 0; i < a->l->n; i++)
            if (!equal(&a->l->items[i], &b->l->items[i])) return false;
        return true;
    case V_DICT:
        if (a->d == b->d) return true;
        if (a->d->ns || b->d->ns || a->d->n != b->d->n) return false;
        for (int i = 0; i < a->d->n; i++) {
            val *o = dict_getv(b->d, &a->d->keys[i]);
            if (!o || !equal(&a->d->vals[i], o)) return false;
        }
        return true;
    case V_MACRO: return a->macro == b->macro;
    case V_FUNC: return a->fn == b->fn;
    default: return a->m == b->m;
    }
}

static bool is_num(const val *v) { return v->t == V_INT || v->t == V_FLOAT || v->t == V_BOOL; }
static double num(const val *v) { return v->t == V_FLOAT ? v->f : v->t == V_INT ? (double)v->i : v->b; }

/* <0, 0, >0 for <, <= ... */
static int compare(rctx *c, const val *a, const val *b, const char *op) {
    if (a->t == V_UNDEF) undefined_err(c, a);
    if (b->t == V_UNDEF) undefined_err(c, b);
    if (is_num(a) && is_num(b)) {
        if (a->t != V_FLOAT && b->t != V_FLOAT) {
            long long x = a->t == V_INT ? a->i : a->b, y = b->t == V_INT ? b->i : b->b;
            return x < y ? -1 : x > y;
        }
        double x = num(a), y = num(b);
        return x < y ? -1 : x > y;
    }
    if (a->t == V_STR && b->t == V_STR) return key_cmp(&a->s, &b->s);
    if (a->t == V_LIST && b->t == V_LIST) {
        for (int i = 0; i < a->l->n && i < b->l->n; i++) {
            if (equal(&a->l->items[i], &b->l->items[i])) continue;
            return compare(c, &a->l->items[i], &b->l->items[i], op);
        }
        return a->l->n < b->l->n ? -1 : a->l->n > b->l->n;
    }
    rerr(c, LS_ERR_FORMAT, "'%s' is not supported between a %s and a %s", op, type_name(a), type_name(b));
}

static bool contains(rctx *c, const val *hay, const val *needle) {
    switch (hay->t) {
    case V_STR:
        if (needle->t != V_STR) rerr(c, LS_ERR_FORMAT, "'in <string>' needs a string on the left, not a %s",
                                     type_name(needle));
        if (!needle->s.n) return true;
        for (size_t i = 0; i + needle->s.n <= hay->s.n; i++)
            if (!memcmp(hay->s.p + i, needle->s.p, needle->s.n)) return true;
        return false;
    case V_LIST:
        for (int i = 0; i < hay->l->n; i++)
            if (equal(&hay->l->items[i], needle)) return true;
        return false;
    case V_DICT:
        return dict_getv(hay->d, needle) != NULL;
    case V_UNDEF: return false; /* Jinja2's Undefined iterates as empty */
    default: rerr(c, LS_ERR_FORMAT, "'in' needs a string, list or dict on the right, not a %s", type_name(hay));
    }
}

static val concat_str(rctx *c, str a, str b) {
    char *q = ralloc(c, a.n + b.n + 1);
    if (a.n) memcpy(q, a.p, a.n);
    if (b.n) memcpy(q + a.n, b.p, b.n);
    return vstr((str){q, a.n + b.n});
}

static val binop(rctx *c, int op, val a, val b) {
    static const char *names[] = {"+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", "<=", ">", ">=",
                                  "in", "not in"};
    switch (op) {
    case OP_EQ: return vbool(equal(&a, &b));
    case OP_NE: return vbool(!equal(&a, &b));
    case OP_LT: return vbool(compare(c, &a, &b, "<") < 0);
    case OP_LE: return vbool(compare(c, &a, &b, "<=") <= 0);
    case OP_GT: return vbool(compare(c, &a, &b, ">") > 0);
    case OP_GE: return vbool(compare(c, &a, &b, ">=") >= 0);
    case OP_IN: return vbool(contains(c, &b, &a));
    case OP_NOTIN: return vbool(!contains(c, &b, &a));
    case OP_CONCAT: return concat_str(c, to_str(c, &a), to_str(c, &b));
    default: break;
    }
    if (a.t == V_UNDEF) undefined_err(c, &a);
    if (b.t == V_UNDEF) undefined_err(c, &b);
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) return concat_str(c, a.s, b.s);
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST) {
        vlist *l = list_new(c, a.l->n + b.l->n);
        for (int i = 0; i < a.l->n; i++) list_push(c, l, a.l->items[i]);
        for (int i = 0; i < b.l->n; i++) list_push(c, l, b.l->items[i]);
        l->tuple = a.l->tuple;
        return (val){.t = V_LIST, .l = l};
    }
    if (op == OP_MUL && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR))) {
        str s = a.t == V_STR ? a.s : b.s;
        long long k = a.t == V_INT ? a.i : b.i;
        if (k <= 0) return vstr((str){"", 0});
        if ((unsigned long long)k * s.n > c->max_output) rerr(c, LS_ERR_RANGE, "a string repeated past the output limit");
        char *q = ralloc(c, (size_t)k * s.n + 1);
        for (long long i = 0; i < k; i++) memcpy(q + (size_t)i * s.n, s.p, s.n);
        return vstr((str){q, (size_t)k * s.n});
    }
    if (!is_num(&a) || !is_num(&b))
        rerr(c, LS_ERR_FORMAT, "'%s' is not supported between a %s and a %s", names[op], type_name(&a), type_name(&b));
    bool ints = a.t != V_FLOAT && b.t != V_FLOAT;
    long long x = a.t == V_INT ? a.i : a.t == V_BOOL ? a.b : 0, y = b.t == V_INT ? b.i : b.t == V_BOOL ? b.b : 0, r;
    double fx = num(&a), fy = num(&b);
    switch (op) {
    case OP_ADD:
        if (!ints) return vfloat(fx + fy);
        if (__builtin_add_overflow(x, y, &r)) rerr(c, LS_ERR_RANGE, "integer overflow");
        return vint(r);
    case OP_SUB:
        if (!ints) return vfloat(fx - fy);
        if (__builtin_sub_overflow(x, y, &r)) rerr(c, LS_ERR_RANGE, "integer overflow");
        return vint(r);
    case OP_MUL:
        if (!ints) return vfloat(fx * fy);
        if (__builtin_mul_overflow(x, y, &r)) rerr(c, LS_ERR_RANGE, "integer overflow");
        return vint(r);
    case OP_DIV:
        if (fy == 0) rerr(c, LS_ERR_FORMAT, "division by zero");
        return vfloat(fx / fy);
    case OP_FLOORDIV:
    case OP_MOD:
        if (fy == 0) rerr(c, LS_ERR_FORMAT, "division by zero");
        if (ints) {
            if (x == LLONG_MIN && y == -1) rerr(c, LS_ERR_RANGE, "integer overflow");
            long long q = x / y, m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
            return vint(op == OP_FLOORDIV ? q : m);
        } else {
            double q = floor(fx / fy), m = fmod(fx, fy);
            if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
            return vfloat(op == OP_FLOORDIV ? q : m);
        }
    case OP_POW:
        if (ints && y >= 0) {
            long long acc = 1;
            for (long long i = 0; i < y; i++) {
                if (__builtin_mul_overflow(acc, x, &r)) rerr(c, LS_ERR_RANGE, "integer overflow");
                acc = r;
            }
            return vint(acc);
        }
        return vfloat(pow(fx, fy));
    default: rerr(c, LS_ERR_FORMAT, "internal: operator %d", op);
    }
}

static val get_item(rctx *c, val obj, val key) {
    switch (obj.t) {
    case V_DICT: {
        val *v = dict_getv(obj.d, &key);
        return v ? *v : vundef(key.t == V_STR ? key.s : (str){"[key]", 5});
    }
    case V_LIST:
    case V_STR: {
        if (key.t != V_INT && key.t != V_BOOL)
            rerr(c, LS_ERR_FORMAT, "a %s index must be an integer, not a %s", type_name(&obj), type_name(&key));
        long long i = key.t == V_INT ? key.i : key.b;
        long long n = obj.t == V_LIST ? obj.l->n : utf8_len(obj.s);
        if (i < 0) i += n;
        if (i < 0 || i >= n) return vundef((str){"[index]", 7});
        if (obj.t == V_LIST) return obj.l->items[i];
        size_t b = utf8_off(obj.s, i), e = utf8_off(obj.s, i + 1);
        return vstr((str){obj.s.p + b, e - b});
    }
    case V_UNDEF: undefined_err(c, &obj);
    default: rerr(c, LS_ERR_FORMAT, "a %s cannot be subscripted", type_name(&obj));
    }
}

static bool is_method(const val *obj, str name) {
    static const char *smeth[] = {"strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower",
                                  "title", "capitalize", "replace", "find", "count", "join", "splitlines", "format",
                                  NULL};
    static const char *dmeth[] = {"items", "keys", "values", "get", NULL};
    const char **m = obj->t == V_STR ? smeth : obj->t == V_DICT && !obj->d->ns ? dmeth : NULL;
    for (int i = 0; m && m[i]; i++)
        if (str_eq(name, m[i])) return true;
    return false;
}

static val get_attr(rctx *c, val obj, str name) {
    if (obj.t == V_UNDEF) undefined_err(c, &obj);
    if (is_method(&obj, name)) {
        vmethod *m = ralloc(c, sizeof *m);
        m->recv = obj;
        m->name = name;
        return (val){.t = V_METHOD, .m = m};
    }
    if (obj.t == V_DICT) {
        val *v = dict_get(obj.d, name);
        return v ? *v : vundef(name);
    }
    if (obj.t == V_LIST && (str_eq(name, "append") || str_eq(name, "extend") || str_eq(name, "pop") ||
                            str_eq(name, "insert")))
        rerr(c, LS_ERR_UNSUPPORTED, "list.%.*s is not allowed: a sandboxed template cannot change a list", (int)name.n,
             name.p);
    return vundef(name);
}

static long long slice_index(rctx *c, const val *v, long long n, long long dflt) {
    if (v->t == V_UNDEF || v->t == V_NONE) return dflt;
    if (v->t != V_INT) rerr(c, LS_ERR_FORMAT, "slice indices must be integers, not a %s", type_name(v));
    long long i = v->i;
    if (i < 0) i += n;
    return i;
}

static val do_slice(rctx *c, val obj, const val *lo, const val *hi, const val *st) {
    long long stepv = st && st->t == V_INT ? st->i : 1;
    if (stepv == 0) rerr(c, LS_ERR_FORMAT, "slice step cannot be zero");
    if (obj.t == V_UNDEF) undefined_err(c, &obj);
    if (obj.t != V_LIST && obj.t != V_STR) rerr(c, LS_ERR_FORMAT, "a %s cannot be sliced", type_name(&obj));
    long long n = obj.t == V_LIST ? obj.l->n : utf8_len(obj.s);
    long long a, b;
    if (stepv > 0) {
        a = slice_index(c, lo, n, 0);
        b = slice_index(c, hi, n, n);
        if (a < 0) a = 0;
        if (b > n) b = n;
    } else {
        a = slice_index(c, lo, n, n - 1);
        b = slice_index(c, hi, n, -1 - n);
        if (a >= n) a = n - 1;
        if (b < -1) b = -1;
    }
    if (obj.t == V_STR && stepv == 1) {
        if (b < a) b = a;
        size_t x = utf8_off(obj.s, a), y = utf8_off(obj.s, b);
        return vstr((str){obj.s.p + x, y - x});
    }
    vlist *src = obj.t == V_LIST ? obj.l : iter_items(c, &obj);
    vlist *l = list_new(c, 4);
    for (long long i = a; stepv > 0 ? i < b : i > b; i += stepv) list_push(c, l, src->items[i]);
    if (obj.t == V_LIST) {
        l->tuple = obj.l->tuple;
        return (val){.t = V_LIST, .l = l};
    }
    size_t tot = 0;
    for (int i = 0; i < l->n; i++) tot += l->items[i].s.n;
    char *q = ralloc(c, tot + 1), *w = q;
    for (int i = 0; i < l->n; i++) { memcpy(w, l->items[i].s.p, l->items[i].s.n); w += l->items[i].s.n; }
    return vstr((str){q, tot});
}

/* ---- arguments ---- */

typedef struct args {
    val *v;
    str *kw;
    int n;
} args;

/* argument `pos` (positional) or `name` (keyword); NULL when absent */
static val *arg(const args *a, int pos, const char *name) {
    int p = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i].n) {
            if (name && str_eq(a->kw[i], name)) return &a->v[i];
        } else if (p++ == pos) {
            return &a->v[i];
        }
    }
    return NULL;
}

static str arg_str(rctx *c, const args *a, int pos, const char *name, const char *what, const char *dflt) {
    val *v = arg(a, pos, name);
    if (!v) return (str){dflt, strlen(dflt)};
    if (v->t != V_STR) rerr(c, LS_ERR_FORMAT, "%s: '%s' must be a string, not a %s", what, name, type_name(v));
    return v->s;
}

static bool arg_bool(const args *a, int pos, const char *name, bool dflt) {
    val *v = arg(a, pos, name);
    return v ? truthy(v) : dflt;
}

static bool ws_cp(unsigned cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

/* decode the code point at s[i] (len in *n); invalid bytes count as themselves */
static unsigned cp_at(str s, size_t i, size_t *n) {
    unsigned char b = (unsigned char)s.p[i];
    int k = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 1;
    if (i + (size_t)k > s.n) k = 1;
    unsigned cp = k == 1 ? b : k == 2 ? b & 0x1F : k == 3 ? b & 0x0F : b & 0x07;
    for (int j = 1; j < k; j++) cp = (cp << 6) | ((unsigned char)s.p[i + (size_t)j] & 0x3F);
    *n = (size_t)k;
    return cp;
}

/* Python's str.strip / lstrip / rstrip (chars NULL: whitespace) */
static str strip(str s, const str *chars, bool left, bool right) {
    size_t b = 0, e = s.n;
    while (left && b < e) {
        size_t n;
        unsigned cp = cp_at(s, b, &n);
        bool hit = chars ? memchr(chars->p, (int)(unsigned char)s.p[b], chars->n) != NULL && n == 1 : ws_cp(cp);
        if (chars && n > 1) {
            hit = false;
            for (size_t j = 0; j + n <= chars->n; j++)
                if (!memcmp(chars->p + j, s.p + b, n)) hit = true;
        }
        if (!hit) break;
        b += n;
    }
    while (right && e > b) {
        size_t k = e - 1;
        while (k > b && ((unsigned char)s.p[k] & 0xC0) == 0x80) k--;
        size_t n;
        unsigned cp = cp_at(s, k, &n);
        bool hit;
        if (chars) {
            hit = false;
            for (size_t j = 0; j + n <= chars->n; j++)
                if (!memcmp(chars->p + j, s.p + k, n)) hit = true;
        } else {
            hit = ws_cp(cp);
        }
        if (!hit) break;
        e = k;
    }
    return (str){s.p + b, e - b};
}

static str case_map(rctx *c, str s, int mode) { /* 0 lower, 1 upper, 2 capitalize, 3 title (ASCII letters) */
    char *q = ralloc(c, s.n + 1);
    bool start = true;
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.p[i];
        bool alpha = isalpha(ch);
        if (mode == 0) ch = (unsigned char)tolower(ch);
        else if (mode == 1) ch = (unsigned char)toupper(ch);
        else if (mode == 2) ch = (unsigned char)(i == 0 ? toupper(ch) : tolower(ch));
        else ch = (unsigned char)(start ? toupper(ch) : tolower(ch));
        start = !alpha && !(ch & 0x80) && !isdigit(ch) && ch != '\'';
        if (mode == 3 && (ch & 0x80)) start = false;
        q[i] = (char)ch;
    }
    return (str){q, s.n};
}

static val str_replace(rctx *c, str s, str old, str new_, long long count) {
    outbuf tmp, *saved = capture_begin(c, &tmp);
    size_t i = 0;
    long long done = 0;
    if (!old.n) { /* Python inserts new between every character */
        for (size_t k = 0; k <= s.n; k++) {
            if ((count < 0 || done < count) && (k == s.n || ((unsigned char)s.p[k] & 0xC0) != 0x80)) {
                out_put(c, new_.p, new_.n);
                done++;
            }
            if (k < s.n) out_put(c, s.p + k, 1);
        }
    } else {
        while (i < s.n) {
            if ((count < 0 || done < count) && i + old.n <= s.n && !memcmp(s.p + i, old.p, old.n)) {
                out_put(c, new_.p, new_.n);
                i += old.n;
                done++;
            } else {
                out_put(c, s.p + i, 1);
                i++;
            }
        }
    }
    return vstr(capture_end(c, &tmp, saved));
}

static val vlistv(vlist *l) { return (val){.t = V_LIST, .l = l}; }

static val split(rctx *c, str s, const val *sep, long long maxsplit) {
    vlist *l = list_new(c, 4);
    if (!sep || sep->t == V_NONE) { /* runs of whitespace */
        size_t i = 0;
        long long k = 0;
        while (i < s.n) {
            while (i < s.n && is_ws(s.p[i])) i++;
            if (i >= s.n) break;
            size_t b = i;
            if (maxsplit >= 0 && k >= maxsplit) {
                str rest = strip((str){s.p + b, s.n - b}, NULL, false, true);
                list_push(c, l, vstr(rest));
                break;
            }
            while (i < s.n && !is_ws(s.p[i])) i++;
            list_push(c, l, vstr((str){s.p + b, i - b}));
            k++;
        }
        return vlistv(l);
    }
    if (sep->t != V_STR || !sep->s.n) rerr(c, LS_ERR_FORMAT, "split: the separator must be a non-empty string");
    size_t b = 0;
    long long k = 0;
    for (size_t i = 0; i + sep->s.n <= s.n;) {
        if ((maxsplit < 0 || k < maxsplit) && !memcmp(s.p + i, sep->s.p, sep->s.n)) {
            list_push(c, l, vstr((str){s.p + b, i - b}));
            i += sep->s.n;
            b = i;
            k++;
        } else {
            i++;
        }
    }
    list_push(c, l, vstr((str){s.p + b, s.n - b}));
    return vlistv(l);
}

static bool starts_ends(rctx *c, str s, const val *x, bool end) {
    if (x->t == V_LIST) {
        for (int i = 0; i < x->l->n; i++)
            if (starts_ends(c, s, &x->l->items[i], end)) return true;
        return false;
    }
    if (x->t != V_STR) rerr(c, LS_ERR_FORMAT, "%s: the argument must be a string", end ? "endswith" : "startswith");
    if (x->s.n > s.n) return false;
    return !memcmp(end ? s.p + s.n - x->s.n : s.p, x->s.p, x->s.n);
}

static val join(rctx *c, vlist *l, str sep) {
    outbuf tmp, *saved = capture_begin(c, &tmp);
    for (int i = 0; i < l->n; i++) {
        if (i) out_put(c, sep.p, sep.n);
        out_val(c, &l->items[i]);
    }
    return vstr(capture_end(c, &tmp, saved));
}

static val call_method(rctx *c, vmethod *m, const args *a) {
    val r = m->recv;
    str name = m->name;
    if (r.t == V_DICT) {
        if (str_eq(name, "get")) {
            val *k = arg(a, 0, NULL);
            if (!k) rerr(c, LS_ERR_FORMAT, "dict.get needs a key");
            val *v = dict_getv(r.d, k);
            val *d = arg(a, 1, NULL);
            return v ? *v : d ? *d : vnone();
        }
        vlist *l = list_new(c, r.d->n);
        for (int i = 0; i < r.d->n; i++) {
            if (str_eq(name, "keys")) list_push(c, l, r.d->keys[i]);
            else if (str_eq(name, "values")) list_push(c, l, r.d->vals[i]);
            else {
                vlist *pair = list_new(c, 2);
                pair->tuple = true;
                list_push(c, pair, r.d->keys[i]);
                list_push(c, pair, r.d->vals[i]);
                list_push(c, l, vlistv(pair));
            }
        }
        return vlistv(l);
    }
    str s = r.s;
    if (str_eq(name, "strip") || str_eq(name, "lstrip") || str_eq(name, "rstrip")) {
        val *ch = arg(a, 0, NULL);
        str chars = ch && ch->t == V_STR ? ch->s : (str){0};
        return vstr(strip(s, ch && ch->t == V_STR ? &chars : NULL, name.p[0] != 'r', name.p[0] != 'l'));
    }
    if (str_eq(name, "split")) {
        val *mx = arg(a, 1, "maxsplit");
        return split(c, s, arg(a, 0, "sep"), mx && mx->t == V_INT ? mx->i : -1);
    }
    if (str_eq(name, "splitlines")) {
        vlist *l = list_new(c, 4);
        size_t b = 0;
        for (size_t i = 0; i < s.n; i++)
            if (s.p[i] == '\n' || s.p[i] == '\r') {
                list_push(c, l, vstr((str){s.p + b, i - b}));
                if (s.p[i] == '\r' && i + 1 < s.n && s.p[i + 1] == '\n') i++;
                b = i + 1;
            }
        if (b < s.n) list_push(c, l, vstr((str){s.p + b, s.n - b}));
        return vlistv(l);
    }
    if (str_eq(name, "startswith") || str_eq(name, "endswith")) {
        val *x = arg(a, 0, NULL);
        if (!x) rerr(c, LS_ERR_FORMAT, "%.*s needs an argument", (int)name.n, name.p);
        return vbool(starts_ends(c, s, x, name.p[0] == 'e'));
    }
    if (str_eq(name, "upper")) return vstr(case_map(c, s, 1));
    if (str_eq(name, "lower")) return vstr(case_map(c, s, 0));
    if (str_eq(name, "capitalize")) return vstr(case_map(c, s, 2));
    if (str_eq(name, "title")) return vstr(case_map(c, s, 3));
    if (str_eq(name, "replace")) {
        val *o = arg(a, 0, NULL), *n = arg(a, 1, NULL), *k = arg(a, 2, "count");
        if (!o || !n || o->t != V_STR || n->t != V_STR) rerr(c, LS_ERR_FORMAT, "replace needs two strings");
        return str_replace(c, s, o->s, n->s, k && k->t == V_INT ? k->i : -1);
    }
    if (str_eq(name, "find") || str_eq(name, "count")) {
        val *x = arg(a, 0, NULL);
        if (!x || x->t != V_STR) rerr(c, LS_ERR_FORMAT, "%.*s needs a string", (int)name.n, name.p);
        long long cnt = 0;
        for (size_t i = 0; i + x->s.n <= s.n;) {
            if (!memcmp(s.p + i, x->s.p, x->s.n)) {
                if (name.p[0] == 'f') return vint(utf8_len((str){s.p, i}));
                cnt++;
                i += x->s.n ? x->s.n : 1;
            } else {
                i++;
            }
        }
        return vint(name.p[0] == 'f' ? -1 : cnt);
    }
    if (str_eq(name, "join")) {
        val *x = arg(a, 0, NULL);
        if (!x) rerr(c, LS_ERR_FORMAT, "join needs an argument");
        return join(c, iter_items(c, x), s);
    }
    if (str_eq(name, "format")) { /* "{}", "{0}", "{name}", "{{", "}}"; no format specs */
        outbuf tmp, *saved = capture_begin(c, &tmp);
        int next = 0;
        for (size_t i = 0; i < s.n; i++) {
            char ch = s.p[i];
            if ((ch == '{' || ch == '}') && i + 1 < s.n && s.p[i + 1] == ch) {
                out_put(c, &ch, 1);
                i++;
                continue;
            }
            if (ch == '}') rerr(c, LS_ERR_FORMAT, "format: a single '}' in the format string");
            if (ch != '{') {
                out_put(c, &ch, 1);
                continue;
            }
            size_t j = i + 1;
            while (j < s.n && s.p[j] != '}') j++;
            if (j >= s.n) rerr(c, LS_ERR_FORMAT, "format: a '{' without its '}'");
            str field = {s.p + i + 1, j - i - 1};
            if (memchr(field.p, ':', field.n) || memchr(field.p, '!', field.n) || memchr(field.p, '.', field.n) ||
                memchr(field.p, '[', field.n))
                rerr(c, LS_ERR_UNSUPPORTED, "format: the field {%.*s} is not supported", (int)field.n, field.p);
            val *v;
            if (!field.n) {
                v = arg(a, next++, NULL);
            } else if (isdigit((unsigned char)field.p[0])) {
                v = arg(a, atoi(field.p), NULL);
            } else {
                v = NULL;
                for (int k = 0; k < a->n; k++)
                    if (str_eqs(a->kw[k], field)) v = &a->v[k];
            }
            if (!v) rerr(c, LS_ERR_FORMAT, "format: no argument for {%.*s}", (int)field.n, field.p);
            out_val(c, v);
            i = j;
        }
        return vstr(capture_end(c, &tmp, saved));
    }
    rerr(c, LS_ERR_UNSUPPORTED, "the method %.*s is not supported", (int)name.n, name.p);
}

/* ---- tests ---- */

static bool apply_test(rctx *c, str name, const val *x, const args *a) {
    val *y = arg(a, 0, NULL);
#define TEST(n) str_eq(name, n)
    if (TEST("defined")) return x->t != V_UNDEF;
    if (TEST("undefined")) return x->t == V_UNDEF;
    if (TEST("none")) return x->t == V_NONE;
    if (TEST("boolean")) return x->t == V_BOOL;
    if (TEST("true")) return x->t == V_BOOL && x->b;
    if (TEST("false")) return x->t == V_BOOL && !x->b;
    if (TEST("integer")) return x->t == V_INT;
    if (TEST("float")) return x->t == V_FLOAT;
    if (TEST("number")) return is_num(x);
    if (TEST("string")) return x->t == V_STR;
    if (TEST("mapping")) return x->t == V_DICT && !x->d->ns;
    if (TEST("iterable")) return x->t == V_STR || x->t == V_LIST || (x->t == V_DICT && !x->d->ns) || x->t == V_UNDEF;
    if (TEST("sequence")) return x->t == V_STR || x->t == V_LIST || (x->t == V_DICT && !x->d->ns);
    if (TEST("callable")) return x->t == V_MACRO || x->t == V_FUNC || x->t == V_METHOD;
    if (TEST("lower") || TEST("upper")) {
        if (x->t != V_STR) return false;
        bool cased = false;
        for (size_t i = 0; i < x->s.n; i++) {
            unsigned char ch = (unsigned char)x->s.p[i];
            if (isupper(ch)) { if (TEST("lower")) return false; cased = true; }
            if (islower(ch)) { if (TEST("upper")) return false; cased = true; }
        }
        return cased;
    }
    if (TEST("odd") || TEST("even") || TEST("divisibleby")) {
        if (x->t != V_INT) rerr(c, LS_ERR_FORMAT, "the test %.*s needs an integer, not a %s", (int)name.n, name.p,
                                type_name(x));
        long long d = TEST("divisibleby") ? (y && y->t == V_INT ? y->i : 0) : 2;
        if (d == 0) rerr(c, LS_ERR_FORMAT, "divisibleby needs a non-zero integer");
        long long m = x->i % d;
        return TEST("odd") ? m != 0 : m == 0;
    }
    static const char *with_arg[] = {"eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt",
                                     "greaterthan", ">", "ge", ">=", "in", "sameas"};
    bool known = false;
    for (size_t i = 0; i < sizeof with_arg / sizeof with_arg[0]; i++) known |= TEST(with_arg[i]);
    if (!known) rerr(c, LS_ERR_UNSUPPORTED, "the test '%.*s' is not supported", (int)name.n, name.p);
    if (!y) rerr(c, LS_ERR_FORMAT, "the test %.*s needs an argument", (int)name.n, name.p);
    if (TEST("eq") || TEST("equalto") || TEST("==")) return equal(x, y);
    if (TEST("ne") || TEST("!=")) return !equal(x, y);
    if (TEST("lt") || TEST("lessthan") || TEST("<")) return compare(c, x, y, "<") < 0;
    if (TEST("le") || TEST("<=")) return compare(c, x, y, "<=") <= 0;
    if (TEST("gt") || TEST("greaterthan") || TEST(">")) return compare(c, x, y, ">") > 0;
    if (TEST("ge") || TEST(">=")) return compare(c, x, y, ">=") >= 0;
    if (TEST("in")) return contains(c, y, x);
    if (TEST("sameas")) {
        if (x->t != y->t) return false;
        if (x->t == V_LIST) return x->l == y->l;
        if (x->t == V_DICT) return x->d == y->d;
        return equal(x, y);
    }
#undef TEST
    rerr(c, LS_ERR_UNSUPPORTED, "the test '%.*s' is not supported", (int)name.n, name.p);
}

/* ---- filters ---- */

static val call_val(rctx *c, val f, const args *a);
static val apply_filter(rctx *c, str name, val x, const args *a);

static val attr_path(rctx *c, val x, str path) { /* "a.b" */
    size_t b = 0;
    for (size_t i = 0; i <= path.n; i++) {
        if (i == path.n || path.p[i] == '.') {
            str part = {path.p + b, i - b};
            bool digits = part.n > 0;
            for (size_t k = 0; k < part.n; k++) digits &= isdigit((unsigned char)part.p[k]) != 0;
            x = digits && x.t == V_LIST ? get_item(c, x, vint(atoll(part.p))) : x.t == V_UNDEF ? x : get_attr(c, x, part);
            b = i + 1;
        }
    }
    return x;
}

/* order of a and b for sort/dictsort: by attribute path attr (if any),
 * strings case-insensitively unless case_sensitive */
static int sort_cmp(rctx *c, val a, val b, str attr, bool case_sensitive) {
    if (attr.n) {
        a = attr_path(c, a, attr);
        b = attr_path(c, b, attr);
    }
    if (!case_sensitive && a.t == V_STR && b.t == V_STR) {
        a.s = case_map(c, a.s, 0);
        b.s = case_map(c, b.s, 0);
    }
    return compare(c, &a, &b, "<");
}

/* a stable sort, as Python's (insertion sort: templates sort a few items);
 * no globals: templates render on many threads at once */
static void sort_vals(rctx *c, val *v, int n, str attr, bool case_sensitive, bool reverse) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && sort_cmp(c, v[j - 1], v[j], attr, case_sensitive) * (reverse ? -1 : 1) > 0; j--) {
            step(c);
            val t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

static vlist *copy_list(rctx *c, vlist *src) {
    vlist *l = list_new(c, src->n);
    for (int i = 0; i < src->n; i++) list_push(c, l, src->items[i]);
    return l;
}

static val apply_filter(rctx *c, str name, val x, const args *a) {
#define FILT(n) str_eq(name, n)
    if (FILT("default") || FILT("d")) {
        val *d = arg(a, 0, "default_value");
        bool boolean = arg_bool(a, 1, "boolean", false);
        if (x.t == V_UNDEF || (boolean && !truthy(&x))) return d ? *d : vstr((str){"", 0});
        return x;
    }
    if (FILT("safe")) return x;
    if (FILT("length") || FILT("count")) {
        if (x.t == V_STR) return vint(utf8_len(x.s));
        if (x.t == V_LIST) return vint(x.l->n);
        if (x.t == V_DICT) return vint(x.d->n);
        if (x.t == V_UNDEF) return vint(0);
        rerr(c, LS_ERR_FORMAT, "a %s has no length", type_name(&x));
    }
    if (FILT("string")) return vstr(to_str(c, &x));
    if (FILT("tojson")) {
        jsonopt o = {.indent = -1, .item_sep = {", ", 2}, .key_sep = {": ", 2}};
        val *ind = arg(a, 0, "indent");
        if (ind && ind->t == V_INT) {
            o.indent = (int)(ind->i < 0 ? 0 : ind->i > 64 ? 64 : ind->i);
            o.item_sep = (str){",", 1};
        } else if (ind && ind->t != V_NONE) {
            rerr(c, LS_ERR_UNSUPPORTED, "tojson: indent must be an integer");
        }
        val *sep = arg(a, 1, "separators");
        if (sep && sep->t == V_LIST && sep->l->n == 2 && sep->l->items[0].t == V_STR && sep->l->items[1].t == V_STR) {
            o.item_sep = sep->l->items[0].s;
            o.key_sep = sep->l->items[1].s;
        }
        o.sort_keys = arg_bool(a, 2, "sort_keys", false);
        if (x.t == V_UNDEF) undefined_err(c, &x);
        outbuf tmp, *saved = capture_begin(c, &tmp);
        json_val(c, &x, &o, 0);
        return vstr(capture_end(c, &tmp, saved));
    }
    if (x.t == V_UNDEF && !FILT("list") && !FILT("join") && !FILT("first") && !FILT("last") && !FILT("trim") &&
        !FILT("upper") && !FILT("lower") && !FILT("items") && !FILT("map") && !FILT("select") && !FILT("reject") &&
        !FILT("selectattr") && !FILT("rejectattr"))
        undefined_err(c, &x);
    if (FILT("trim")) {
        str s = to_str(c, &x);
        val *ch = arg(a, 0, "chars");
        str chars = ch && ch->t == V_STR ? ch->s : (str){0};
        return vstr(strip(s, ch && ch->t == V_STR ? &chars : NULL, true, true));
    }
    if (FILT("upper")) return vstr(case_map(c, to_str(c, &x), 1));
    if (FILT("lower")) return vstr(case_map(c, to_str(c, &x), 0));
    if (FILT("capitalize")) return vstr(case_map(c, to_str(c, &x), 2));
    if (FILT("title")) return vstr(case_map(c, to_str(c, &x), 3));
    if (FILT("replace")) {
        str s = to_str(c, &x);
        val *o = arg(a, 0, "old"), *n = arg(a, 1, "new"), *k = arg(a, 2, "count");
        if (!o || !n) rerr(c, LS_ERR_FORMAT, "replace needs two arguments");
        return str_replace(c, s, to_str(c, o), to_str(c, n), k && k->t == V_INT ? k->i : -1);
    }
    if (FILT("join")) {
        str sep = arg_str(c, a, 0, "d", "join", "");
        val *at = arg(a, 1, "attribute");
        vlist *l = iter_items(c, &x);
        if (at && at->t == V_STR) {
            vlist *m = list_new(c, l->n);
            for (int i = 0; i < l->n; i++) list_push(c, m, attr_path(c, l->items[i], at->s));
            l = m;
        }
        return join(c, l, sep);
    }
    if (FILT("first") || FILT("last")) {
        vlist *l = iter_items(c, &x);
        if (!l->n) return vundef(name);
        return l->items[FILT("first") ? 0 : l->n - 1];
    }
    if (FILT("list")) return vlistv(copy_list(c, iter_items(c, &x)));
    if (FILT("reverse")) {
        if (x.t == V_STR) {
            vlist *l = iter_items(c, &x);
            char *q = ralloc(c, x.s.n + 1), *w = q;
            for (int i = l->n - 1; i >= 0; i--) { memcpy(w, l->items[i].s.p, l->items[i].s.n); w += l->items[i].s.n; }
            return vstr((str){q, x.s.n});
        }
        vlist *src = iter_items(c, &x), *l = list_new(c, src->n);
        for (int i = src->n - 1; i >= 0; i--) list_push(c, l, src->items[i]);
        return vlistv(l);
    }
    if (FILT("items") || FILT("dictsort")) {
        if (x.t == V_UNDEF) return vlistv(list_new(c, 1));
        if (x.t != V_DICT) rerr(c, LS_ERR_FORMAT, "%.*s needs a dict, not a %s", (int)name.n, name.p, type_name(&x));
        vmethod m = {.recv = x, .name = {"items", 5}};
        args none = {0};
        val l = call_method(c, &m, &none);
        if (FILT("dictsort"))
            sort_vals(c, l.l->items, l.l->n, (str){"0", 1}, arg_bool(a, 0, "case_sensitive", false),
                      arg_bool(a, 2, "reverse", false));
        return l;
    }
    if (FILT("sort")) {
        vlist *l = copy_list(c, iter_items(c, &x));
        val *at = arg(a, 2, "attribute");
        sort_vals(c, l->items, l->n, at && at->t == V_STR ? at->s : (str){0}, arg_bool(a, 1, "case_sensitive", false),
                  arg_bool(a, 0, "reverse", false));
        return vlistv(l);
    }
    if (FILT("unique")) {
        vlist *src = iter_items(c, &x), *l = list_new(c, src->n);
        for (int i = 0; i < src->n; i++) {
            bool seen = false;
            for (int j = 0; j < l->n && !seen; j++) seen = equal(&l->items[j], &src->items[i]);
            if (!seen) list_push(c, l, src->items[i]);
        }
        return vlistv(l);
    }
    if (FILT("map")) {
        vlist *src = truthy(&x) ? iter_items(c, &x) : list_new(c, 1), *l = list_new(c, src->n); /* Jinja2: "if value" */
        val *at = arg(a, -1, "attribute");
        if (at && at->t == V_STR) {
            val *d = arg(a, -1, "default");
            for (int i = 0; i < src->n; i++) {
                val v = attr_path(c, src->items[i], at->s);
                list_push(c, l, v.t == V_UNDEF && d ? *d : v);
            }
            return vlistv(l);
        }
        val *fname = arg(a, 0, NULL);
        if (!fname || fname->t != V_STR) rerr(c, LS_ERR_FORMAT, "map needs attribute= or a filter name");
        args rest = {a->v + 1, a->kw + 1, a->n - 1};
        for (int i = 0; i < src->n; i++) list_push(c, l, apply_filter(c, fname->s, src->items[i], &rest));
        return vlistv(l);
    }
    if (FILT("selectattr") || FILT("rejectattr") || FILT("select") || FILT("reject")) {
        bool byattr = FILT("selectattr") || FILT("rejectattr");
        bool want = FILT("selectattr") || FILT("select");
        vlist *src = truthy(&x) ? iter_items(c, &x) : list_new(c, 1), *l = list_new(c, src->n);
        int base = 0;
        str at = {0};
        if (byattr) {
            val *av = arg(a, 0, NULL);
            if (!av || av->t != V_STR) rerr(c, LS_ERR_FORMAT, "%.*s needs an attribute name", (int)name.n, name.p);
            at = av->s;
            base = 1;
        }
        val *tv = arg(a, base, NULL);
        if (tv && tv->t != V_STR) rerr(c, LS_ERR_FORMAT, "%.*s: the test name must be a string", (int)name.n, name.p);
        int skip = 0, p = 0;
        for (int i = 0; i < a->n; i++) /* positional arguments after the test name go to the test */
            if (!a->kw[i].n && p++ <= base) skip = i + 1;
        args targs = {a->v + skip, a->kw + skip, a->n - skip};
        for (int i = 0; i < src->n; i++) {
            val v = byattr ? attr_path(c, src->items[i], at) : src->items[i];
            bool ok = tv ? apply_test(c, tv->s, &v, &targs) : truthy(&v);
            if (ok == want) list_push(c, l, src->items[i]);
        }
        return vlistv(l);
    }
    if (FILT("int")) {
        val *d = arg(a, 0, "default");
        if (x.t == V_INT) return x;
        if (x.t == V_BOOL) return vint(x.b);
        if (x.t == V_FLOAT && isfinite(x.f)) return vint((long long)x.f);
        if (x.t == V_STR) {
            char buf[64];
            str s = strip(x.s, NULL, true, true);
            if (s.n && s.n < sizeof buf) {
                memcpy(buf, s.p, s.n);
                buf[s.n] = 0;
                char *end;
                long long v = strtoll(buf, &end, 10);
                if (*end == 0) return vint(v);
                double f = strtod(buf, &end);
                if (*end == 0 && isfinite(f)) return vint((long long)f);
            }
        }
        return d ? *d : vint(0);
    }
    if (FILT("float")) {
        val *d = arg(a, 0, "default");
        if (is_num(&x)) return vfloat(num(&x));
        if (x.t == V_STR) {
            char buf[64];
            str s = strip(x.s, NULL, true, true);
            if (s.n && s.n < sizeof buf) {
                memcpy(buf, s.p, s.n);
                buf[s.n] = 0;
                char *end;
                double f = strtod(buf, &end);
                if (*end == 0) return vfloat(f);
            }
        }
        return d ? *d : vfloat(0);
    }
    if (FILT("abs")) {
        if (x.t == V_INT) return vint(x.i < 0 ? -x.i : x.i);
        if (is_num(&x)) return vfloat(fabs(num(&x)));
        rerr(c, LS_ERR_FORMAT, "abs needs a number");
    }
    if (FILT("round")) {
        if (!is_num(&x)) rerr(c, LS_ERR_FORMAT, "round needs a number");
        val *pr = arg(a, 0, "precision");
        str method = arg_str(c, a, 1, "method", "round", "common");
        double m = pow(10, pr && pr->t == V_INT ? (double)pr->i : 0), v = num(&x) * m;
        v = str_eq(method, "floor") ? floor(v) : str_eq(method, "ceil") ? ceil(v) : round(v);
        return vfloat(v / m);
    }
    if (FILT("sum") || FILT("min") || FILT("max")) {
        vlist *l = iter_items(c, &x);
        val *at = arg(a, FILT("sum") ? 0 : 1, "attribute");
        if (FILT("sum")) {
            val *st = arg(a, 1, "start");
            val acc = st ? *st : vint(0);
            for (int i = 0; i < l->n; i++)
                acc = binop(c, OP_ADD, acc, at && at->t == V_STR ? attr_path(c, l->items[i], at->s) : l->items[i]);
            return acc;
        }
        if (!l->n) return vundef(name);
        val best = l->items[0];
        for (int i = 1; i < l->n; i++) {
            int r = compare(c, &l->items[i], &best, "<");
            if (FILT("min") ? r < 0 : r > 0) best = l->items[i];
        }
        return best;
    }
    if (FILT("indent")) {
        str s = to_str(c, &x);
        val *w = arg(a, 0, "width");
        long long width = w && w->t == V_INT ? w->i : 4;
        str pad = w && w->t == V_STR ? w->s : (str){"", 0};
        char *padbuf = NULL;
        if (!(w && w->t == V_STR)) {
            if (width < 0 || width > 256) rerr(c, LS_ERR_FORMAT, "indent: width out of range");
            padbuf = ralloc(c, (size_t)width + 1);
            memset(padbuf, ' ', (size_t)width);
            pad = (str){padbuf, (size_t)width};
        }
        bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
        outbuf tmp, *saved = capture_begin(c, &tmp);
        size_t b = 0;
        bool line0 = true;
        for (size_t i = 0; i <= s.n; i++) {
            if (i == s.n || s.p[i] == '\n') {
                bool empty = i == b;
                if (line0 ? first : (blank || !empty)) out_put(c, pad.p, pad.n);
                out_put(c, s.p + b, i - b);
                if (i < s.n) out_put(c, "\n", 1);
                b = i + 1;
                line0 = false;
            }
        }
        return vstr(capture_end(c, &tmp, saved));
    }
    if (FILT("escape") || FILT("e")) {
        str s = to_str(c, &x);
        outbuf tmp, *saved = capture_begin(c, &tmp);
        for (size_t i = 0; i < s.n; i++) {
            switch (s.p[i]) {
            case '&': out_s(c, "&amp;"); break;
            case '<': out_s(c, "&lt;"); break;
            case '>': out_s(c, "&gt;"); break;
            case '"': out_s(c, "&#34;"); break;
            case '\'': out_s(c, "&#39;"); break;
            default: out_put(c, s.p + i, 1);
            }
        }
        return vstr(capture_end(c, &tmp, saved));
    }
    if (FILT("wordcount")) {
        val parts = split(c, to_str(c, &x), NULL, -1);
        return vint(parts.l->n);
    }
#undef FILT
    rerr(c, LS_ERR_UNSUPPORTED, "the filter '%.*s' is not supported", (int)name.n, name.p);
}

/* ---- calls ---- */

static val call_macro(rctx *c, const node *m, const args *a) {
    if (++c->depth > 64) rerr(c, LS_ERR_RANGE, "macro calls nested deeper than 64 (a macro that calls itself?)");
    push_frame(c);
    int p = 0;
    for (int i = 0; i < a->n; i++) {
        if (a->kw[i].n) {
            bool found = false;
            for (int k = 0; k < m->ntargets && !found; k++) found = str_eqs(m->targets[k], a->kw[i]);
            if (!found) rerr(c, LS_ERR_FORMAT, "macro '%.*s' has no parameter '%.*s'", (int)m->s.n, m->s.p,
                             (int)a->kw[i].n, a->kw[i].p);
            set_var(c, a->kw[i], a->v[i]);
        } else {
            if (p >= m->ntargets) rerr(c, LS_ERR_FORMAT, "macro '%.*s' takes %d arguments", (int)m->s.n, m->s.p,
                                       m->ntargets);
            set_var(c, m->targets[p++], a->v[i]);
        }
    }
    vdict *vars = c->frames[c->nframes - 1].vars;
    for (int k = 0; k < m->ntargets; k++)
        if (!dict_get(vars, m->targets[k]))
            set_var(c, m->targets[k], m->defaults[k] ? eval(c, m->defaults[k]) : vundef(m->targets[k]));
    outbuf tmp, *saved = capture_begin(c, &tmp);
    int ctl = c->loop_ctl;
    exec_body(c, &m->b);
    c->loop_ctl = ctl;
    c->nframes--;
    c->depth--;
    return vstr(capture_end(c, &tmp, saved));
}

static val call_val(rctx *c, val f, const args *a) {
    switch (f.t) {
    case V_MACRO: return call_macro(c, f.macro, a);
    case V_METHOD: return call_method(c, f.m, a);
    case V_FUNC:
        switch (f.fn) {
        case F_RAISE: {
            val *m = arg(a, 0, NULL);
            str s = m ? to_str(c, m) : (str){"", 0};
            if (!s.n) s = (str){"the chat template raised an error without a message", 51};
            rerr(c, LS_ERR_INVALID, "%.*s", (int)(s.n > 800 ? 800 : s.n), s.p);
        }
        case F_RANGE: {
            long long v[3] = {0, 0, 1};
            int np = 0;
            for (int i = 0; i < a->n; i++) {
                if (a->kw[i].n || np == 3 || a->v[i].t != V_INT) rerr(c, LS_ERR_FORMAT, "range takes 1 to 3 integers");
                v[np++] = a->v[i].i;
            }
            if (np == 0) rerr(c, LS_ERR_FORMAT, "range takes 1 to 3 integers");
            long long start = np == 1 ? 0 : v[0], stop = np == 1 ? v[0] : v[1], st = np == 3 ? v[2] : 1;
            if (st == 0) rerr(c, LS_ERR_FORMAT, "range step cannot be zero");
            long double span = st > 0 ? (long double)stop - start : (long double)start - stop;
            long double len = span <= 0 ? 0 : (span + (st > 0 ? st : -st) - 1) / (st > 0 ? st : -st);
            if (len > (long double)(c->max_steps - c->steps))
                rerr(c, LS_ERR_RANGE, "rendering stopped after %lld steps (a loop that does not end?): range of %.0Lf",
                     c->max_steps, len);
            vlist *l = list_new(c, 8);
            for (long long i = start; st > 0 ? i < stop : i > stop; i += st) {
                step(c);
                list_push(c, l, vint(i));
            }
            return vlistv(l);
        }
        case F_STRFTIME: {
            val *fmt = arg(a, 0, NULL);
            if (!fmt || fmt->t != V_STR || fmt->s.n > 200) rerr(c, LS_ERR_FORMAT, "strftime_now needs a format string");
            char format[256], buf[512];
            memcpy(format, fmt->s.p, fmt->s.n);
            format[fmt->s.n] = 0;
            time_t t = c->now ? (time_t)c->now : time(NULL);
            struct tm tm;
            localtime_r(&t, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            size_t n = strftime(buf, sizeof buf, format, &tm); /* the template's own format */
#pragma GCC diagnostic pop
            return vstr(sdup(c, buf, n));
        }
        case F_NAMESPACE:
        case F_DICT: {
            vdict *d = dict_new(c, a->n);
            d->ns = f.fn == F_NAMESPACE;
            for (int i = 0; i < a->n; i++) {
                if (a->kw[i].n) {
                    dict_set(c, d, a->kw[i], a->v[i]);
                } else if (a->v[i].t == V_DICT) {
                    for (int k = 0; k < a->v[i].d->n; k++) dict_setv(c, d, a->v[i].d->keys[k], a->v[i].d->vals[k]);
                } else {
                    rerr(c, LS_ERR_FORMAT, "%s() takes keyword arguments or a dict", d->ns ? "namespace" : "dict");
                }
            }
            return (val){.t = V_DICT, .d = d};
        }
        }
        break;
    case V_UNDEF: undefined_err(c, &f);
    default: break;
    }
    rerr(c, LS_ERR_FORMAT, "a %s is not callable", type_name(&f));
}

static args eval_args(rctx *c, const expr *e) {
    args a = {.n = e->nargs};
    a.v = ralloc(c, sizeof(val) * (size_t)(e->nargs ? e->nargs : 1));
    a.kw = ralloc(c, sizeof(str) * (size_t)(e->nargs ? e->nargs : 1));
    for (int i = 0; i < e->nargs; i++) {
        a.v[i] = eval(c, e->args[i]);
        a.kw[i] = e->kw ? e->kw[i] : (str){0};
    }
    return a;
}

static val eval(rctx *c, const expr *e) {
    step(c);
    if (++c->depth > MAX_DEPTH) rerr(c, LS_ERR_RANGE, "evaluation nested deeper than %d", MAX_DEPTH);
    int saved_line = c->line;
    c->line = e->line;
    val r;
    switch (e->k) {
    case E_LIT: r = e->v; break;
    case E_NAME: r = lookup(c, e->s); break;
    case E_ATTR: r = get_attr(c, eval(c, e->a), e->s); break;
    case E_INDEX: {
        val o = eval(c, e->a), k = eval(c, e->b);
        if (o.t == V_DICT && k.t == V_STR && !dict_get(o.d, k.s) && o.d->ns) r = vundef(k.s);
        else r = get_item(c, o, k);
        break;
    }
    case E_SLICE: {
        val o = eval(c, e->a);
        val lo = e->b ? eval(c, e->b) : vnone(), hi = e->c ? eval(c, e->c) : vnone(), st = e->d ? eval(c, e->d) : vnone();
        r = do_slice(c, o, &lo, &hi, &st);
        break;
    }
    case E_CALL: {
        val f = eval(c, e->a);
        args a = eval_args(c, e);
        r = call_val(c, f, &a);
        break;
    }
    case E_FILTER: {
        val x = eval(c, e->a);
        args a = eval_args(c, e);
        r = apply_filter(c, e->s, x, &a);
        break;
    }
    case E_TEST: {
        val x = eval(c, e->a);
        args a = eval_args(c, e);
        r = vbool(apply_test(c, e->s, &x, &a) != e->neg);
        break;
    }
    case E_NOT: { val x = eval(c, e->a); r = vbool(!truthy(&x)); break; }
    case E_NEG:
    case E_POS: {
        val x = eval(c, e->a);
        if (x.t == V_UNDEF) undefined_err(c, &x);
        if (!is_num(&x)) rerr(c, LS_ERR_FORMAT, "unary %c on a %s", e->k == E_NEG ? '-' : '+', type_name(&x));
        if (e->k == E_POS) r = x.t == V_BOOL ? vint(x.b) : x;
        else if (x.t == V_FLOAT) r = vfloat(-x.f);
        else if (x.t == V_INT && x.i == LLONG_MIN) rerr(c, LS_ERR_RANGE, "integer overflow");
        else r = vint(x.t == V_INT ? -x.i : -(long long)x.b);
        break;
    }
    case E_BIN: { val a = eval(c, e->a); val b = eval(c, e->b); r = binop(c, e->op, a, b); break; }
    case E_AND: { val a = eval(c, e->a); r = truthy(&a) ? eval(c, e->b) : a; break; }
    case E_OR: { val a = eval(c, e->a); r = truthy(&a) ? a : eval(c, e->b); break; }
    case E_COND: {
        val cond = eval(c, e->a);
        r = truthy(&cond) ? eval(c, e->b) : e->c ? eval(c, e->c) : vundef((str){"<if without else>", 17});
        break;
    }
    case E_LIST:
    case E_TUPLE: {
        vlist *l = list_new(c, e->nargs);
        l->tuple = e->k == E_TUPLE;
        for (int i = 0; i < e->nargs; i++) list_push(c, l, eval(c, e->args[i]));
        r = vlistv(l);
        break;
    }
    case E_DICT: {
        vdict *d = dict_new(c, e->nargs / 2);
        for (int i = 0; i + 1 < e->nargs; i += 2) {
            val k = eval(c, e->args[i]);
            if (k.t != V_STR && !is_num(&k) && k.t != V_NONE)
                rerr(c, LS_ERR_FORMAT, "a %s cannot be a dict key", type_name(&k));
            dict_setv(c, d, k, eval(c, e->args[i + 1]));
        }
        r = (val){.t = V_DICT, .d = d};
        break;
    }
    default: rerr(c, LS_ERR_FORMAT, "internal: expression kind %d", e->k);
    }
    c->line = saved_line;
    c->depth--;
    return r;
}

/* ------------------------------------------------------------ statements */

static void bind_targets(rctx *c, const node *n, val item) {
    if (n->ntargets == 1) {
        set_var(c, n->targets[0], item);
        return;
    }
    vlist *parts = item.t == V_LIST ? item.l : NULL;
    if (!parts || parts->n != n->ntargets)
        rerr(c, LS_ERR_FORMAT, "cannot unpack a %s into %d loop variables", type_name(&item), n->ntargets);
    for (int i = 0; i < n->ntargets; i++) set_var(c, n->targets[i], parts->items[i]);
}

static void exec_for(rctx *c, const node *n) {
    val seq = eval(c, n->e);
    vlist *all = iter_items(c, &seq), *items = all;
    push_frame(c);
    if (n->cond) {
        items = list_new(c, all->n);
        for (int i = 0; i < all->n; i++) {
            bind_targets(c, n, all->items[i]);
            val ok = eval(c, n->cond);
            if (truthy(&ok)) list_push(c, items, all->items[i]);
        }
    }
    static const str K_LOOP = {"loop", 4};
    for (int i = 0; i < items->n; i++) {
        step(c);
        bind_targets(c, n, items->items[i]);
        vdict *loop = dict_new(c, 10);
        long long len = items->n;
        dict_set(c, loop, (str){"index", 5}, vint(i + 1));
        dict_set(c, loop, (str){"index0", 6}, vint(i));
        dict_set(c, loop, (str){"revindex", 8}, vint(len - i));
        dict_set(c, loop, (str){"revindex0", 9}, vint(len - i - 1));
        dict_set(c, loop, (str){"first", 5}, vbool(i == 0));
        dict_set(c, loop, (str){"last", 4}, vbool(i == len - 1));
        dict_set(c, loop, (str){"length", 6}, vint(len));
        dict_set(c, loop, (str){"previtem", 8}, i > 0 ? items->items[i - 1] : vundef((str){"previtem", 8}));
        dict_set(c, loop, (str){"nextitem", 8}, i + 1 < len ? items->items[i + 1] : vundef((str){"nextitem", 8}));
        dict_set(c, loop, (str){"depth", 5}, vint(1));
        set_var(c, K_LOOP, (val){.t = V_DICT, .d = loop});
        exec_body(c, &n->b);
        int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1) break;
    }
    c->nframes--;
    if (items->n == 0 && n->has_else) exec_body(c, &n->else_b);
}

static void exec_node(rctx *c, const node *n) {
    step(c);
    c->line = n->line;
    switch (n->k) {
    case S_TEXT: out_put(c, n->s.p, n->s.n); break;
    case S_OUT: { val v = eval(c, n->e); out_val(c, &v); break; }
    case S_IF: {
        for (int i = 0; i < n->nbranch; i++) {
            val cond = eval(c, n->conds[i]);
            if (truthy(&cond)) {
                exec_body(c, &n->bodies[i]);
                return;
            }
        }
        if (n->has_else) exec_body(c, &n->else_b);
        break;
    }
    case S_FOR: exec_for(c, n); break;
    case S_SET: {
        val v = eval(c, n->e);
        if (n->attr.n) {
            val target = lookup(c, n->s);
            if (target.t != V_DICT || !target.d->ns)
                rerr(c, LS_ERR_FORMAT, "{%% set %.*s.%.*s %%}: %.*s is not a namespace()", (int)n->s.n, n->s.p,
                     (int)n->attr.n, n->attr.p, (int)n->s.n, n->s.p);
            dict_set(c, target.d, n->attr, v);
        } else {
            set_var(c, n->s, v);
        }
        break;
    }
    case S_SETBLOCK: {
        outbuf tmp, *saved = capture_begin(c, &tmp);
        exec_body(c, &n->b);
        set_var(c, n->s, vstr(capture_end(c, &tmp, saved)));
        break;
    }
    case S_MACRO: set_var(c, n->s, (val){.t = V_MACRO, .macro = n}); break;
    case S_BREAK: c->loop_ctl = 1; break;
    case S_CONTINUE: c->loop_ctl = 2; break;
    case S_BODY: exec_body(c, &n->b); break;
    case S_FILTERBLOCK: {
        outbuf tmp, *saved = capture_begin(c, &tmp);
        exec_body(c, &n->b);
        str text = capture_end(c, &tmp, saved);
        args a = eval_args(c, n->e);
        val v = apply_filter(c, n->e->s, vstr(text), &a);
        out_val(c, &v);
        break;
    }
    default: rerr(c, LS_ERR_FORMAT, "internal: statement kind %d", n->k);
    }
}

static void exec_body(rctx *c, const body *b) {
    if (++c->depth > MAX_DEPTH) rerr(c, LS_ERR_RANGE, "blocks nested deeper than %d", MAX_DEPTH);
    for (int i = 0; i < b->n && !c->loop_ctl; i++) exec_node(c, b->items[i]);
    c->depth--;
}

ls_status ls_chat_template_render(const ls_chat_template *t, const ls_chat_message *msgs, int n,
                                  const ls_chat_render_opts *o, char **out, size_t *out_len, ls_err *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || n < 0 || (n > 0 && !msgs)) return ls_err_set(err, LS_ERR_INVALID, "chat template: bad arguments");
    const ls_chat_render_opts opt = o ? *o : (ls_chat_render_opts){0};
    rctx *c = calloc(1, sizeof *c);
    if (!c) return ls_err_set(err, LS_ERR_NOMEM, "chat template: out of memory");
    c->err = err;
    c->max_output = opt.max_output ? opt.max_output : 4u << 20;
    c->max_steps = opt.max_steps > 0 ? opt.max_steps : 5000000;
    c->now = opt.now;
    c->a.limit = 256u << 20;
    outbuf result = {0};
    c->out = &result;
    if (setjmp(c->jb)) {
        ls_status st = c->st;
        arena_free(&c->a);
        free(c);
        return st;
    }
    push_frame(c);
    vlist *ml = list_new(c, n);
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content) rerr(c, LS_ERR_INVALID, "message %d has no role or no content", i);
        vdict *d = dict_new(c, 2);
        dict_set(c, d, (str){"role", 4}, vcstr(c, msgs[i].role));
        dict_set(c, d, (str){"content", 7}, vcstr(c, msgs[i].content));
        list_push(c, ml, (val){.t = V_DICT, .d = d});
    }
    set_var(c, (str){"messages", 8}, vlistv(ml));
    set_var(c, (str){"add_generation_prompt", 21}, vbool(opt.add_generation_prompt));
    set_var(c, (str){"bos_token", 9}, vcstr(c, opt.bos_token ? opt.bos_token : ""));
    set_var(c, (str){"eos_token", 9}, vcstr(c, opt.eos_token ? opt.eos_token : ""));
    set_var(c, (str){"tools", 5}, vnone());
    set_var(c, (str){"documents", 9}, vnone());
    exec_body(c, &t->root);
    char *res = malloc(result.n + 1);
    if (!res) rerr(c, LS_ERR_NOMEM, "out of memory");
    if (result.n) memcpy(res, result.p, result.n);
    res[result.n] = 0;
    *out = res;
    if (out_len) *out_len = result.n;
    arena_free(&c->a);
    free(c);
    return LS_OK;
}
