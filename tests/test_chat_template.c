/* test_chat_template: the Jinja subset renderer against jinja2's renders of
 * real chat templates (tests/data/chat_templates, scripts/golden_chat_templates.py),
 * then the subset's own rules, its errors and its limits. */
#include "layerskip/chat_template.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static ls_chat_template *parse(const char *src, ls_status *st, ls_err *err) {
    ls_chat_template *t = NULL;
    *st = ls_chat_template_parse(src, strlen(src), &t, err);
    return t;
}

/* render src with messages given as role, content, role, content, ..., NULL */
static char *render_opts(const char *src, const ls_chat_render_opts *o, ls_status *st, ls_err *err, ...) {
    ls_chat_message msgs[16];
    int n = 0;
    va_list ap;
    va_start(ap, err);
    for (const char *role; n < 16 && (role = va_arg(ap, const char *)) != NULL; n++) {
        msgs[n].role = role;
        msgs[n].content = va_arg(ap, const char *);
    }
    va_end(ap);
    ls_chat_template *t = parse(src, st, err);
    if (!t) return NULL;
    char *out = NULL;
    *st = ls_chat_template_render(t, msgs, n, o, &out, NULL, err);
    ls_chat_template_free(t);
    return out;
}

#define RENDER(src, st, err, ...) render_opts(src, NULL, st, err, __VA_ARGS__)

static void expect(const char *src, const char *want) {
    ls_status st;
    ls_err err = {{0}};
    char *out = RENDER(src, &st, &err, "user", "hi", NULL);
    if (st != LS_OK || !out || strcmp(out, want) != 0) {
        fprintf(stderr, "template: %s\n  want: [%s]\n  got:  [%s] (%s)\n", src, want, out ? out : "", err.msg);
    }
    CHECK_EQ_INT(st, LS_OK);
    CHECK(out && strcmp(out, want) == 0);
    free(out);
}

static void expect_error(const char *src, ls_status want, const char *needle) {
    ls_status st;
    ls_err err = {{0}};
    char *out = RENDER(src, &st, &err, "user", "hi", NULL);
    if (st != want || !strstr(err.msg, needle))
        fprintf(stderr, "template: %s\n  want error %d containing [%s]\n  got %d: %s\n", src, want, needle, st,
                err.msg);
    CHECK_EQ_INT(st, want);
    CHECK(strstr(err.msg, needle) != NULL);
    CHECK(out == NULL);
    free(out);
}

/* every case of every golden file renders byte for byte as jinja2 did */
static void test_goldens(void) {
    const char *dir = tu_data_path("chat_templates");
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    int files = 0, cases = 0, errors = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 6 || strcmp(e->d_name + nl - 5, ".json") != 0) continue;
        char path[1024], tpath[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(tpath, sizeof tpath, "%s/%.*s.jinja", dir, (int)(nl - 5), e->d_name);
        size_t jl = 0, tl = 0;
        char *json = tu_read_file(path, &jl), *src = tu_read_file(tpath, &tl);
        REQUIRE(json && src);
        cJSON *root = cJSON_Parse(json);
        REQUIRE(root != NULL);
        ls_chat_template *t = NULL;
        ls_err err = {{0}};
        ls_status st = ls_chat_template_parse(src, tl, &t, &err);
        if (st != LS_OK) fprintf(stderr, "%s: %s\n", e->d_name, err.msg);
        CHECK_EQ_INT(st, LS_OK);
        files++;
        const cJSON *cs = cJSON_GetObjectItem(root, "cases");
        ls_chat_render_opts o = {.bos_token = cJSON_GetObjectItem(root, "bos_token")->valuestring,
                                 .eos_token = cJSON_GetObjectItem(root, "eos_token")->valuestring,
                                 .now = (long long)cJSON_GetObjectItem(root, "now")->valuedouble};
        int k = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, cs) {
            k++;
            if (!t) continue;
            ls_chat_message msgs[8];
            int n = 0;
            const cJSON *m;
            cJSON_ArrayForEach(m, cJSON_GetObjectItem(c, "messages")) {
                msgs[n].role = cJSON_GetObjectItem(m, "role")->valuestring;
                msgs[n].content = cJSON_GetObjectItem(m, "content")->valuestring;
                n++;
            }
            o.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
            char *out = NULL;
            size_t out_len = 0;
            st = ls_chat_template_render(t, msgs, n, &o, &out, &out_len, &err);
            const cJSON *want = cJSON_GetObjectItem(c, "output"), *werr = cJSON_GetObjectItem(c, "error");
            cases++;
            if (want) {
                bool same = st == LS_OK && out_len == strlen(want->valuestring) &&
                            memcmp(out, want->valuestring, out_len) == 0;
                if (!same)
                    fprintf(stderr, "%s case %d: %s\n--- want\n%s\n--- got\n%s\n", e->d_name, k,
                            st == LS_OK ? "differs" : err.msg, want->valuestring, out ? out : "");
                CHECK(same);
            } else {
                errors++;
                CHECK(st != LS_OK);
                /* the template's raise_exception: its own message */
                if (cJSON_IsTrue(cJSON_GetObjectItem(c, "raised"))) {
                    CHECK_EQ_INT(st, LS_ERR_INVALID);
                    CHECK_STR_EQ(err.msg, werr->valuestring);
                }
                if (st == LS_OK) fprintf(stderr, "%s case %d: rendered, jinja2 failed: %s\n", e->d_name, k,
                                         werr->valuestring);
            }
            free(out);
        }
        ls_chat_template_free(t);
        cJSON_Delete(root);
        free(json);
        free(src);
    }
    closedir(d);
    printf("chat templates: %d files, %d cases (%d errors as jinja2)\n", files, cases, errors);
    CHECK(files >= 70);
    CHECK(cases >= 700);
}

static void test_whitespace(void) {
    /* trim_blocks: the newline after a block tag goes; lstrip_blocks: the indentation before it */
    expect("a\n  {% if true %}\n  b\n  {% endif %}\nc", "a\n  b\nc");
    expect("{{ 'x' }}\n{{ 'y' }}", "x\ny");               /* not after {{ }} */
    expect("a  {{- ' b ' -}}  c", "a b c");
    expect("a\n{%- if true -%}\n  b\n{%- endif %}", "ab");
    expect("a\n  {%+ if true %}b{% endif %}", "a\n  b");   /* {%+ keeps the indentation */
    expect("{# c #}\nx {# d -#}  y", "x y");
    expect("{% for i in [1,2] %}{{ i }}{% endfor %}\n", "12");
}

static void test_values(void) {
    expect("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }}",
           "7 3 -4 1 2 3.5 1024");
    expect("{{ 1.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.5e-07 }} {{ 10 / 5 }}",
           "1.0 0.30000000000000004 1e+20 1.5e-07 2.0");
    expect("{{ none }} {{ true }} {{ [1, 'a', none] }} {{ {'k': \"it's\"} }} {{ (1,) }}",
           "None True [1, 'a', None] {'k': \"it's\"} (1,)");
    expect("{{ undefined_thing }}|{{ undefined_thing | length }}|{% for x in undefined_thing %}x{% endfor %}", "|0|");
    expect("{{ 'ab' ~ 1 ~ none }} {{ 'a' + 'b' }} {{ 'ab' * 2 }} {{ [1] + [2] }}", "ab1None ab abab [1, 2]");
    expect("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }}", "True True True True");
    expect("{{ 1 == 1.0 }} {{ true == 1 }} {{ 'a' < 'b' }} {{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}", "True True True True False");
    expect("{{ 'x' if false }}|{{ 'x' if 0 else 'y' }}|{{ none or 'd' }}|{{ 'a' and 'b' }}", "|y|d|b");
    expect("{{ messages[0].role }} {{ messages[0]['content'] }} {{ messages[-1].role }} {{ messages | length }}",
           "user hi user 1");
    expect("{{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ [1,2,3,4][::2] }} {{ [1,2,3][::-1] }} {{ 'abc'[-2:] }}",
           "é él [1, 3] [3, 2, 1] bc");
}

static void test_filters_and_tests(void) {
    expect("{{ '  a b  ' | trim }}|{{ 'xxaxx' | trim('x') }}|{{ ' a '.strip() }}|{{ 'a,b'.split(',') }}",
           "a b|a|a|['a', 'b']");
    expect("{{ {'a': [1, 'é', none, true], 'b': {'c': 1.5}} | tojson }}",
           "{\"a\": [1, \"é\", null, true], \"b\": {\"c\": 1.5}}");
    expect("{{ {'a': [1, 2]} | tojson(indent=2) }}", "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
    expect("{{ 'line\\n\"q\"' | tojson }}", "\"line\\n\\\"q\\\"\"");
    expect("{{ ['a', 'b'] | join(', ') }} {{ 'Ab' | upper }} {{ 'Ab' | lower }} {{ 'hello world' | title }}",
           "a, b AB ab Hello World");
    expect("{{ x | default('d') }} {{ '' | default('d', true) }} {{ [3, 1, 2] | sort }} {{ [1, 1, 2] | unique | list }}",
           "d d [1, 2, 3] [1, 2]");
    expect("{{ messages | map(attribute='role') | list }} {{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
           "['user'] 1");
    expect("{{ messages | rejectattr('role', 'eq', 'user') | list }} {{ [1, 2, 3] | select('odd') | list }}",
           "[] [1, 3]");
    expect("{{ [{'k': 1, 'n': 'a'}, {'k': 0, 'n': 'b'}, {'k': 1, 'n': 'c'}] | sort(attribute='k', reverse=true) | map(attribute='n') | join }}"
           " {{ ['b', 'A', 'a'] | sort }} {{ ['b', 'A', 'a'] | sort(case_sensitive=true) }}", "acb ['A', 'a', 'b'] ['A', 'a', 'b']");
    expect("{{ {'b': 1, 'a': 2} | dictsort }} {{ {'b': 1} | items | list }} {{ 'a-b'.replace('-', '+') }}",
           "[('a', 2), ('b', 1)] [('b', 1)] a+b");
    expect("{{ 'a\\nb\\n' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}", "a\n  b\n|  a\n  b");
    expect("{{ 3 is odd }} {{ 'x' is string }} {{ 1 is number }} {{ {} is mapping }} {{ none is none }} {{ y is defined }}",
           "True True True True True False");
    expect("{{ 4 is divisibleby 2 }} {{ 'a' is in 'abc' }} {{ 2 is gt(1) }} {{ messages is iterable }}",
           "True True True True");
    expect("{{ 'abc'.startswith('a') }} {{ 'abc'.endswith(('x', 'c')) }} {{ 'a b'.split() }} {{ '-'.join(['a','b']) }}",
           "True True ['a', 'b'] a-b");
    expect("{{ {'k': 1}.get('k') }} {{ {'k': 1}.get('z', 5) }} {{ {'k': 1}.keys() | list }}", "1 5 ['k']");
}

static void test_statements(void) {
    expect("{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ '!' if loop.last }}{% endfor %}", "1/1!");
    expect("{% for i in range(5) if i is odd %}{{ i }}{{ ',' if not loop.last }}{% endfor %}", "1,3");
    expect("{% for i in [] %}x{% else %}empty{% endfor %}", "empty");
    expect("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;");
    expect("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
           "02");
    /* set in a loop stays in it; a namespace carries state out */
    expect("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{% endfor %}{{ x }}", "1");
    expect("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", "6");
    expect("{% if false %}a{% elif 1 %}b{% else %}c{% endif %}", "b");
    expect("{% set b %}x{{ 1 }}{% endset %}[{{ b }}]", "[x1]");
    expect("{% macro m(a, b='d') %}<{{ a }}{{ b }}>{% endmacro %}{{ m(1) }}{{ m(2, b='e') }}", "<1d><2e>");
    expect("{% generation %}gen{% endgeneration %}", "gen");
    expect("{{ bos_token }}{{ add_generation_prompt }} {{ tools is none }}", "False True");
}

static void test_errors(void) {
    expect_error("{{ raise_exception('Roles must alternate') }}", LS_ERR_INVALID, "Roles must alternate");
    expect_error("a\n{% include 'x' %}", LS_ERR_UNSUPPORTED, "line 2: {% include %} is not supported");
    expect_error("{{ 1 | frobnicate }}", LS_ERR_UNSUPPORTED, "the filter 'frobnicate' is not supported");
    expect_error("{{ 1 is frob }}", LS_ERR_UNSUPPORTED, "the test 'frob' is not supported");
    expect_error("{% if true %}x", LS_ERR_FORMAT, "{% if %} is not closed");
    expect_error("x\n\n{% endfor %}", LS_ERR_FORMAT, "line 3");
    expect_error("{{ 'abc }}", LS_ERR_FORMAT, "not closed");
    expect_error("{{ 1 + }}", LS_ERR_FORMAT, "unexpected");
    expect_error("{{ nothing.attr }}", LS_ERR_FORMAT, "'nothing' is undefined");
    expect_error("{{ 'a' + 1 }}", LS_ERR_FORMAT, "'+' is not supported between a string and a integer");
    expect_error("{% set ns = 1 %}{% set ns.x = 2 %}", LS_ERR_FORMAT, "is not a namespace");
    expect_error("{{ [1].append(2) }}", LS_ERR_UNSUPPORTED, "cannot change a list");
    expect_error("{% raw %}x{% endraw %}", LS_ERR_UNSUPPORTED, "raw");
}

/* limits: loops that do not end, deep recursion and huge output stop with an error */
static void test_limits(void) {
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    expect_error("{% for i in range(1000000000) %}{% endfor %}", LS_ERR_RANGE, "steps");
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", LS_ERR_RANGE, "nested deeper");
    expect_error("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", LS_ERR_RANGE, "output passed");
    /* nesting in the source: parse errors, not a stack overflow */
    char deep[4000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, LS_ERR_UNSUPPORTED, "nested deeper");
    ls_chat_render_opts o = {.max_steps = 1000};
    ls_status st;
    ls_err err = {{0}};
    char *out = render_opts("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}{% endfor %}", &o, &st,
                            &err, NULL);
    CHECK_EQ_INT(st, LS_ERR_RANGE);
    CHECK(out == NULL);
    CHECK((double)clock() / CLOCKS_PER_SEC - t0 < 30);
}

/* the template keeps its own copy of the source */
static void test_source_copied(void) {
    const char *text = "a{{ 'b' }}c\n{% if true %}d{% endif %}";
    char *src = strdup(text);
    REQUIRE(src != NULL);
    ls_chat_template *t = NULL;
    ls_err err = {{0}};
    CHECK_EQ_INT(ls_chat_template_parse(src, strlen(src), &t, &err), LS_OK);
    memset(src, 'x', strlen(src));
    free(src);
    char *out = NULL;
    CHECK_EQ_INT(ls_chat_template_render(t, NULL, 0, NULL, &out, NULL, &err), LS_OK);
    CHECK(out && strcmp(out, "abc\nd") == 0);
    free(out);
    ls_chat_template_free(t);
}

int main(void) {
    setenv("TZ", "UTC", 1); /* strftime_now in the goldens: UTC */
    tzset();
    RUN(test_goldens);
    RUN(test_whitespace);
    RUN(test_values);
    RUN(test_filters_and_tests);
    RUN(test_statements);
    RUN(test_errors);
    RUN(test_limits);
    RUN(test_source_copied);
    TEST_MAIN_END();
}
