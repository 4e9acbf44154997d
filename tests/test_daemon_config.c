/* test_daemon_config.c: layerskipd's options (daemon/config.c) and log
 * lines (daemon/log.c). Defaults, every flag in both spellings, the config
 * file syntax, flags overriding the file wherever --config appears, every
 * error returned (not printed) with the flag or FILE:LINE named, --help
 * covering every option, and deploy/layerskipd.conf parsing and naming every
 * option so the documented example cannot drift from the table. */
#include "config.h"
#include "log.h"
#include "test_util.h"

#include <fcntl.h>
#include <grpc/support/log.h>
#include <unistd.h>

#ifndef LSD_DEPLOY_CONF
#error "LSD_DEPLOY_CONF (path of deploy/layerskipd.conf) must be defined by tests/CMakeLists.txt"
#endif

/* Redirect fd 1 or 2 into a file while code runs, then read it back, so
 * tests can check what was (or was not) printed. */
typedef struct capture {
    int fd, saved;
    char path[4096];
} capture;

static void capture_begin(capture *c, int fd, const char *name) {
    fflush(stdout);
    fflush(stderr);
    snprintf(c->path, sizeof c->path, "%s", tu_tmp_path(name));
    c->fd = fd;
    c->saved = dup(fd);
    int f = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(f, fd);
    close(f);
}

static char *capture_end(capture *c) {
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved, c->fd);
    close(c->saved);
    char *text = tu_read_file(c->path, NULL);
    remove(c->path);
    return text ? text : calloc(1, 1);
}

static const char *write_tmp(const char *name, const char *text) {
    const char *path = tu_tmp_path(name);
    FILE *f = fopen(path, "wb");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

static lsd_config_result parse(lsd_config *c, char *err, size_t err_len, int argc, char **argv) {
    return lsd_config_parse(c, argc, argv, err, err_len);
}
#define PARSE(c, err, ...) do { char *_argv[] = {"layerskipd", __VA_ARGS__}; \
    _res = parse((c), (err), sizeof(err), (int)(sizeof _argv / sizeof _argv[0]), _argv); } while (0)

static void test_defaults(void) {
    lsd_config c;
    lsd_config_defaults(&c);
    CHECK_STR_EQ(c.model, "");
    CHECK_STR_EQ(c.listen, "127.0.0.1:50051");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_EQ_INT(c.threads, cpus < 1 ? 1 : cpus);
    CHECK_EQ_INT(c.ctx, 0);
    CHECK_EQ_INT(c.max_sessions, 4);
    CHECK_EQ_INT(c.max_queue, 64);
    CHECK_EQ_INT(c.default_max_tokens, 256);
    CHECK_STR_EQ(c.strategy, "autoregressive");
    CHECK_EQ_INT(c.exit_layer, 0);
    CHECK_EQ_INT(c.num_speculations, 4);
    CHECK_NEAR(c.draft_min_p, 0.95, 1e-6);
    CHECK_STR_EQ(c.draft_source, "auto");
    CHECK_STR_EQ(c.draft_adapter, "");
    CHECK_EQ_INT(c.draft_vocab, 0);
    CHECK_STR_EQ(c.tls_cert, "");
    CHECK_STR_EQ(c.tls_key, "");
    CHECK_STR_EQ(c.auth_token_file, "");
    CHECK_STR_EQ(c.metrics_listen, "");
    CHECK_STR_EQ(c.log_level, "info");
    CHECK_EQ_INT(c.max_request_bytes, 1048576);
    CHECK_EQ_INT(c.drain_seconds, 30);
    CHECK_STR_EQ(c.config_file, "");

    /* only --model is needed */
    char err[512];
    lsd_config_result _res;
    PARSE(&c, err, "--model", "m.gguf");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.model, "m.gguf");
    CHECK_EQ_INT(c.max_sessions, 4);
}

static void test_every_flag(void) {
    lsd_config c;
    char err[512] = "";
    lsd_config_result _res;
    PARSE(&c, err, "--model", "/m/model.gguf", "--listen", "unix:/run/ls.sock", "--threads", "3",
          "--ctx", "2048", "--max-sessions", "8", "--max-queue", "0", "--default-max-tokens", "99",
          "--strategy", "self_speculative", "--exit-layer", "6", "--num-speculations", "32",
          "--draft-min-p", "0.5", "--tls-cert", "/c.pem", "--tls-key", "/k.pem", "--auth-token-file", "/t",
          "--metrics-listen", "127.0.0.1:9090", "--log-level", "debug", "--max-request-bytes", "4096",
          "--drain-seconds", "0", "--draft-source", "lookup", "--draft-adapter", "/m/a.E6.gguf",
          "--draft-vocab", "4096");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    if (_res != LSD_CONFIG_OK) fprintf(stderr, "  err: %s\n", err);
    CHECK_STR_EQ(c.model, "/m/model.gguf");
    CHECK_STR_EQ(c.listen, "unix:/run/ls.sock");
    CHECK_EQ_INT(c.threads, 3);
    CHECK_EQ_INT(c.ctx, 2048);
    CHECK_EQ_INT(c.max_sessions, 8);
    CHECK_EQ_INT(c.max_queue, 0);
    CHECK_EQ_INT(c.default_max_tokens, 99);
    CHECK_STR_EQ(c.strategy, "self_speculative");
    CHECK_EQ_INT(c.exit_layer, 6);
    CHECK_EQ_INT(c.num_speculations, 32);
    CHECK_NEAR(c.draft_min_p, 0.5, 1e-6);
    CHECK_STR_EQ(c.tls_cert, "/c.pem");
    CHECK_STR_EQ(c.tls_key, "/k.pem");
    CHECK_STR_EQ(c.auth_token_file, "/t");
    CHECK_STR_EQ(c.metrics_listen, "127.0.0.1:9090");
    CHECK_STR_EQ(c.log_level, "debug");
    CHECK_EQ_INT(c.max_request_bytes, 4096);
    CHECK_EQ_INT(c.drain_seconds, 0);
    CHECK_STR_EQ(c.draft_source, "lookup");
    CHECK_STR_EQ(c.draft_adapter, "/m/a.E6.gguf");
    CHECK_EQ_INT(c.draft_vocab, 4096);

    /* --num-speculations auto, in both spellings; a number after it wins again */
    PARSE(&c, err, "--model", "x", "--num-speculations", "auto");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_EQ_INT(c.num_speculations, LSD_NUM_SPECULATIONS_AUTO);
    PARSE(&c, err, "--model", "x", "--num-speculations=auto", "--num-speculations", "6");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_EQ_INT(c.num_speculations, 6);
    PARSE(&c, err, "--model", "x", "--draft-source=adapter", "--draft-vocab=0");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.draft_source, "adapter");
    CHECK_EQ_INT(c.draft_vocab, 0);

    /* --name=value spelling, bounds inclusive, ctx 0 (automatic) allowed */
    PARSE(&c, err, "--model=x", "--threads=1024", "--ctx=0", "--max-sessions=1", "--draft-min-p=0",
          "--num-speculations=1", "--strategy=early_exit", "--log-level=error", "--listen=[::]:50051",
          "--ctx=16");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.model, "x");
    CHECK_EQ_INT(c.threads, 1024);
    CHECK_EQ_INT(c.ctx, 16);
    CHECK_EQ_INT(c.max_sessions, 1);
    CHECK_NEAR(c.draft_min_p, 0.0, 0);
    CHECK_EQ_INT(c.num_speculations, 1);
    CHECK_STR_EQ(c.strategy, "early_exit");
    CHECK_STR_EQ(c.log_level, "error");
    CHECK_STR_EQ(c.listen, "[::]:50051");
    /* an empty value turns a string option off */
    PARSE(&c, err, "--model=x", "--metrics-listen=", "--draft-min-p", "1");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.metrics_listen, "");
    CHECK_NEAR(c.draft_min_p, 1.0, 0);

    /* repeated flags: the last wins */
    PARSE(&c, err, "--model", "a", "--threads", "2", "--model", "b", "--threads", "5");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.model, "b");
    CHECK_EQ_INT(c.threads, 5);
}

static void test_config_file(void) {
    const char *path = write_tmp("daemon_config_file.conf",
        "# layerskipd test config\n"
        "\n"
        "   # indented comment\n"
        "model = /models/a b.gguf\n"
        "threads=7\n"
        "\tmax-sessions   =   9   # trailing comment\n"
        "listen = \"0.0.0.0:1234 # not a comment\"  # a comment\n"
        "strategy = early_exit\r\n"
        "auth-token-file = /etc/tok#en\n"
        "draft-min-p = 0.25\n"
        "threads = 6\n"
        "metrics-listen =\n"
        "num-speculations = auto  # k per round\n"
        "draft-source = exit\n"
        "draft-adapter = \"/models/a #1.gguf\"\n"
        "log-level = warn");
    REQUIRE(path);
    lsd_config c;
    char err[512] = "";
    lsd_config_result _res;
    PARSE(&c, err, "--config", (char *)path);
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    if (_res != LSD_CONFIG_OK) fprintf(stderr, "  err: %s\n", err);
    CHECK_STR_EQ(c.model, "/models/a b.gguf");
    CHECK_EQ_INT(c.threads, 6); /* repeated key: the last wins */
    CHECK_EQ_INT(c.max_sessions, 9);
    CHECK_STR_EQ(c.listen, "0.0.0.0:1234 # not a comment");
    CHECK_STR_EQ(c.strategy, "early_exit");
    CHECK_STR_EQ(c.auth_token_file, "/etc/tok#en");
    CHECK_NEAR(c.draft_min_p, 0.25, 1e-7);
    CHECK_STR_EQ(c.metrics_listen, "");
    CHECK_STR_EQ(c.log_level, "warn");
    CHECK_EQ_INT(c.num_speculations, LSD_NUM_SPECULATIONS_AUTO);
    CHECK_STR_EQ(c.draft_source, "exit");
    CHECK_STR_EQ(c.draft_adapter, "/models/a #1.gguf");
    CHECK_STR_EQ(c.config_file, path);
    remove(path);
}

static void test_flags_override_file(void) {
    const char *path = write_tmp("daemon_config_override.conf",
                                 "model = from-file.gguf\nthreads = 5\nmax-queue = 7\nctx = 1024\n");
    REQUIRE(path);
    lsd_config c;
    char err[512] = "";
    lsd_config_result _res;
    /* --config after the flags it is overridden by */
    PARSE(&c, err, "--threads", "3", "--ctx=0", "--config", (char *)path);
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.model, "from-file.gguf");
    CHECK_EQ_INT(c.threads, 3);
    CHECK_EQ_INT(c.ctx, 0);
    CHECK_EQ_INT(c.max_queue, 7);
    /* --config first */
    PARSE(&c, err, "--config", (char *)path, "--model", "flag.gguf", "--max-queue", "1");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_STR_EQ(c.model, "flag.gguf");
    CHECK_EQ_INT(c.threads, 5);
    CHECK_EQ_INT(c.max_queue, 1);
    CHECK_EQ_INT(c.ctx, 1024);
    /* --config=FILE in the middle */
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "--config=%s", path);
    PARSE(&c, err, "--threads", "2", cfg, "--ctx", "512");
    CHECK_EQ_INT(_res, LSD_CONFIG_OK);
    CHECK_EQ_INT(c.threads, 2);
    CHECK_EQ_INT(c.ctx, 512);
    CHECK_EQ_INT(c.max_queue, 7);
    remove(path);
}

/* argv must fail with a message containing every needle; nothing printed */
static void expect_error(int argc, char **argv, const char *n1, const char *n2) {
    lsd_config c;
    char err[1024] = "";
    capture out, errc;
    capture_begin(&out, 1, "daemon_config_stdout.txt");
    capture_begin(&errc, 2, "daemon_config_stderr.txt");
    lsd_config_result r = lsd_config_parse(&c, argc, argv, err, sizeof err);
    char *printed_err = capture_end(&errc);
    char *printed_out = capture_end(&out);
    CHECK_EQ_INT(r, LSD_CONFIG_ERROR);
    CHECK_STR_EQ(printed_out, "");
    CHECK_STR_EQ(printed_err, "");
    if (getenv("LS_TEST_VERBOSE")) fprintf(stderr, "  [%s]\n", err);
    bool ok = strstr(err, n1) && (!n2 || strstr(err, n2));
    tu_checks++;
    if (!ok) {
        tu_failures++;
        fprintf(stderr, "  error lacks \"%s\"%s%s%s: %s\n", n1, n2 ? " / \"" : "", n2 ? n2 : "", n2 ? "\"" : "", err);
    }
    free(printed_err);
    free(printed_out);
}
#define EXPECT_ERROR(n1, n2, ...) do { char *_argv[] = {"layerskipd", __VA_ARGS__}; \
    expect_error((int)(sizeof _argv / sizeof _argv[0]), _argv, (n1), (n2)); } while (0)

static void test_flag_errors(void) {
    EXPECT_ERROR("unknown flag --bogus", "--help", "--model", "m", "--bogus", "1");
    EXPECT_ERROR("did you mean --max-sessions", NULL, "--model", "m", "--max_sessions", "2");
    EXPECT_ERROR("--threads: missing value", NULL, "--model", "m", "--threads");
    EXPECT_ERROR("--threads: missing value", NULL, "--threads", "--model", "m");
    EXPECT_ERROR("--threads", "not a whole number", "--model", "m", "--threads", "abc");
    EXPECT_ERROR("--threads", "not a whole number", "--model", "m", "--threads", "4x");
    EXPECT_ERROR("--threads", "not a whole number", "--model", "m", "--threads=");
    EXPECT_ERROR("--threads: 99999999999999999999 is out of range", "[1, 1024]", "--model", "m", "--threads", "99999999999999999999");
    EXPECT_ERROR("--max-sessions: 0 is out of range", "[1, 1024]", "--model", "m", "--max-sessions", "0");
    EXPECT_ERROR("--max-sessions: 1025 is out of range", "[1, 1024]", "--model", "m", "--max-sessions", "1025");
    EXPECT_ERROR("--ctx: 8 is out of range", "or 0", "--model", "m", "--ctx", "8");
    EXPECT_ERROR("--ctx", "out of range", "--model", "m", "--ctx", "1048577");
    EXPECT_ERROR("--num-speculations: 33 is out of range", "[1, 32] or auto", "--model", "m", "--num-speculations", "33");
    EXPECT_ERROR("--num-speculations: 0 is out of range", "[1, 32] or auto", "--model", "m", "--num-speculations", "0");
    EXPECT_ERROR("--num-speculations: -1 is out of range", "or auto", "--model", "m", "--num-speculations", "-1");
    EXPECT_ERROR("--num-speculations: 'Auto' is not a whole number", "[1, 32] or auto", "--model", "m",
                 "--num-speculations", "Auto");
    EXPECT_ERROR("--draft-source: unknown value 'kangaroo'", "auto, exit, adapter, lookup",
                 "--model", "m", "--draft-source", "kangaroo");
    EXPECT_ERROR("--draft-source: empty value", NULL, "--model", "m", "--draft-source=");
    EXPECT_ERROR("--draft-vocab: -1 is out of range", "[0, 16777216]", "--model", "m", "--draft-vocab", "-1");
    EXPECT_ERROR("--draft-vocab", "not a whole number", "--model", "m", "--draft-vocab", "auto");
    EXPECT_ERROR("--max-queue: -1 is out of range", NULL, "--model", "m", "--max-queue", "-1");
    EXPECT_ERROR("--draft-min-p", "[0, 1]", "--model", "m", "--draft-min-p", "1.5");
    EXPECT_ERROR("--draft-min-p", "not a number", "--model", "m", "--draft-min-p", "nan");
    EXPECT_ERROR("--draft-min-p", "not a number", "--model", "m", "--draft-min-p", "0.5.");
    EXPECT_ERROR("--strategy: unknown value 'fast'", "autoregressive, early_exit, self_speculative",
                 "--model", "m", "--strategy", "fast");
    EXPECT_ERROR("--log-level: unknown value 'loud'", "error, warn, info, debug", "--model", "m", "--log-level", "loud");
    EXPECT_ERROR("--listen: empty value", NULL, "--model", "m", "--listen=");
    EXPECT_ERROR("missing --model", "--model PATH", "--threads", "2");
    EXPECT_ERROR("--model: empty value", NULL, "--model=");
    EXPECT_ERROR("--tls-cert given without --tls-key", NULL, "--model", "m", "--tls-cert", "c.pem");
    EXPECT_ERROR("--tls-key given without --tls-cert", NULL, "--model", "m", "--tls-key", "k.pem");
    EXPECT_ERROR("unexpected argument 'model.gguf'", NULL, "model.gguf");
    EXPECT_ERROR("--config: cannot read '/nonexistent/dir/x.conf'", "No such file",
                 "--model", "m", "--config", "/nonexistent/dir/x.conf");
    EXPECT_ERROR("--config: cannot read", NULL, "--model", "m", "--config", "/");
    EXPECT_ERROR("--config: empty path", NULL, "--model", "m", "--config=");
    char long_path[5000];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    EXPECT_ERROR("--model: value is 4999 bytes", "4095-byte limit", "--model", long_path);
}

static void file_error(const char *name, const char *text, const char *needle) {
    const char *path = write_tmp(name, text);
    REQUIRE(path);
    char want[4300];
    snprintf(want, sizeof want, "%s:%s", path, needle);
    char *argv[] = {"layerskipd", "--model", "m", "--config", (char *)path};
    expect_error(5, argv, want, NULL);
    remove(path);
}

static void test_file_errors(void) {
    file_error("daemon_cfg_e1.conf", "# c\n\nbogus = 1\n", "3: unknown key 'bogus'");
    file_error("daemon_cfg_e2.conf", "max_queue = 1\n", "1: unknown key 'max_queue'; did you mean 'max-queue'");
    file_error("daemon_cfg_e3.conf", "model = m\nthreads = many\n", "2: threads: 'many' is not a whole number");
    file_error("daemon_cfg_e4.conf", "\n\n\nmax-sessions = 5000\n", "4: max-sessions: 5000 is out of range");
    file_error("daemon_cfg_e5.conf", "threads 4\n", "1: expected `key = value`");
    file_error("daemon_cfg_e6.conf", "config = other.conf\n", "1: config: a config file cannot name another");
    file_error("daemon_cfg_e7.conf", "listen = \"127.0.0.1:1\n", "1: listen: unterminated quote");
    file_error("daemon_cfg_e8.conf", "listen = \"127.0.0.1:1\" x\n", "1: listen: text after the closing quote");
    file_error("daemon_cfg_e9.conf", " = 4\n", "1: missing key");
    file_error("daemon_cfg_e10.conf", "strategy = \n", "1: strategy: empty value");
    /* a flag after the file does not excuse an error in the file */
    const char *path = write_tmp("daemon_cfg_e11.conf", "threads = 0\n");
    REQUIRE(path);
    char want[4300];
    snprintf(want, sizeof want, "%s:1: threads: 0 is out of range", path);
    char *argv[] = {"layerskipd", "--config", (char *)path, "--threads", "2", "--model", "m"};
    expect_error(7, argv, want, NULL);
    remove(path);
    /* binary junk */
    path = tu_tmp_path("daemon_cfg_e12.conf");
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fwrite("model = a\0b\n", 1, 12, f);
    fclose(f);
    char *argv2[] = {"layerskipd", "--config", (char *)path};
    expect_error(3, argv2, "contains NUL bytes", NULL);
    remove(path);
}

static void test_help_and_version(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    REQUIRE(mem);
    lsd_config_print_help(mem);
    fclose(mem);
    REQUIRE(buf);
    CHECK(lsd_config_option_count() >= 19);
    for (size_t i = 0; i < lsd_config_option_count(); i++) {
        char flag[80];
        snprintf(flag, sizeof flag, "--%s ", lsd_config_option_name(i));
        tu_checks++;
        if (!strstr(buf, flag)) {
            tu_failures++;
            fprintf(stderr, "  --help lacks %s\n", flag);
        }
    }
    CHECK(lsd_config_option_name(lsd_config_option_count()) == NULL);
    CHECK(strstr(buf, "default: 127.0.0.1:50051") != NULL);
    CHECK(strstr(buf, "range [1, 32] or auto") != NULL);
    CHECK(strstr(buf, "--num-speculations K|auto") != NULL);
    CHECK(strstr(buf, "--draft-source NAME") != NULL);
    CHECK(strstr(buf, "default: auto") != NULL);
    CHECK(strstr(buf, "--version") != NULL);
    free(buf);

    /* --help anywhere: printed on stdout, LSD_CONFIG_HELP, even after a bad flag */
    lsd_config c;
    char err[256] = "";
    capture out;
    capture_begin(&out, 1, "daemon_config_help.txt");
    char *argv[] = {"layerskipd", "--bogus", "--help"};
    lsd_config_result r = lsd_config_parse(&c, 3, argv, err, sizeof err);
    char *text = capture_end(&out);
    CHECK_EQ_INT(r, LSD_CONFIG_HELP);
    CHECK(strstr(text, "Usage: layerskipd") != NULL);
    CHECK(strstr(text, "--max-request-bytes N") != NULL);
    free(text);

    capture_begin(&out, 1, "daemon_config_version.txt");
    char *argv2[] = {"layerskipd", "--version"};
    r = lsd_config_parse(&c, 2, argv2, err, sizeof err);
    text = capture_end(&out);
    CHECK_EQ_INT(r, LSD_CONFIG_HELP);
    CHECK(strncmp(text, "layerskipd " LSD_VERSION, strlen("layerskipd " LSD_VERSION)) == 0);
    free(text);
}

/* deploy/layerskipd.conf: parses as is, and names every option as a
 * `key = value` line (commented out or set) */
static void test_deploy_conf(void) {
    lsd_config c;
    char err[1024] = "";
    char *argv[] = {"layerskipd", "--config", LSD_DEPLOY_CONF};
    lsd_config_result r = lsd_config_parse(&c, 3, argv, err, sizeof err);
    CHECK_EQ_INT(r, LSD_CONFIG_OK);
    if (r != LSD_CONFIG_OK) fprintf(stderr, "  %s\n", err);
    CHECK(c.model[0] != '\0');

    char *text = tu_read_file(LSD_DEPLOY_CONF, NULL);
    REQUIRE(text);
    for (size_t i = 0; i < lsd_config_option_count(); i++) {
        const char *name = lsd_config_option_name(i);
        if (strcmp(name, "config") == 0) continue; /* flag only */
        bool found = false;
        size_t nl = strlen(name);
        for (char *line = text; line && !found; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
            char *p = line;
            while (*p == ' ' || *p == '\t' || *p == '#') p++;
            if (strncmp(p, name, nl) != 0) continue;
            p += nl;
            while (*p == ' ' || *p == '\t') p++;
            found = *p == '=';
        }
        tu_checks++;
        if (!found) {
            tu_failures++;
            fprintf(stderr, "  %s has no `%s = ...` line\n", LSD_DEPLOY_CONF, name);
        }
    }
    free(text);
}

static void test_log(void) {
    lsd_log_level l = LSD_LOG_ERROR;
    CHECK(lsd_log_parse_level("debug", &l));
    CHECK_EQ_INT(l, LSD_LOG_DEBUG);
    CHECK(lsd_log_parse_level("warn", &l));
    CHECK_EQ_INT(l, LSD_LOG_WARN);
    CHECK(lsd_log_parse_level("error", &l));
    CHECK_EQ_INT(l, LSD_LOG_ERROR);
    CHECK(lsd_log_parse_level("info", &l));
    CHECK_EQ_INT(l, LSD_LOG_INFO);
    CHECK(!lsd_log_parse_level("INFO ", &l));
    CHECK(!lsd_log_parse_level("", &l));
    CHECK(!lsd_log_parse_level(NULL, &l));

    /* filtered entries do not evaluate their arguments */
    lsd_log_set_level(LSD_LOG_WARN);
    int evaluated = 0;
    capture errc;
    capture_begin(&errc, 2, "daemon_log.txt");
    LSD_LOG(LSD_LOG_INFO, "hidden %d", ++evaluated);
    LSD_LOG(LSD_LOG_WARN, "shown %d with\na newline", 7);
    lsd_log_set_level(LSD_LOG_DEBUG);
    LSD_LOG(LSD_LOG_DEBUG, "dbg");
    char big[6000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    LSD_LOG(LSD_LOG_ERROR, "%s", big);
    char *text = capture_end(&errc);
    CHECK_EQ_INT(evaluated, 0);
    CHECK(strstr(text, "hidden") == NULL);
    char want[64];
    snprintf(want, sizeof want, "Z layerskipd[%ld] warn: shown 7 with\\na newline\n", (long)getpid());
    CHECK(strstr(text, want) != NULL);
    CHECK(strstr(text, "debug: test_log: dbg\n") != NULL);
    /* ISO-8601 UTC timestamp with milliseconds at the start of each line */
    int y, mo, d, h, mi, s, ms;
    char z;
    CHECK_EQ_INT(sscanf(text, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &y, &mo, &d, &h, &mi, &s, &ms, &z), 8);
    CHECK(z == 'Z');
    /* one line per entry, the long one cut to the pipe-atomic size */
    int lines = 0;
    size_t longest = 0, cur = 0;
    for (const char *p = text; *p; p++) {
        if (*p == '\n') {
            lines++;
            if (cur > longest) longest = cur;
            cur = 0;
        } else {
            cur++;
        }
    }
    CHECK_EQ_INT(lines, 3);
    CHECK(longest < 4096);
    CHECK(strstr(text, "xxx...\n") != NULL);
    free(text);

    /* gRPC's gpr_log goes through the same writer, filtered by our level */
    lsd_log_set_level(LSD_LOG_INFO);
    lsd_log_install_grpc();
    capture_begin(&errc, 2, "daemon_log_grpc.txt");
    gpr_log(GPR_ERROR, "boom %d", 42);
    gpr_log(GPR_DEBUG, "too detailed");
    text = capture_end(&errc);
    CHECK(strstr(text, " error: grpc: boom 42 (test_daemon_config.c:") != NULL);
    CHECK(strstr(text, "too detailed") == NULL);
    free(text);

    /* config logging: one info line per non-default option */
    lsd_log_set_level(LSD_LOG_INFO);
    lsd_config c;
    char err[256];
    /* a thread count that differs from the default (online CPUs) */
    char *threads = sysconf(_SC_NPROCESSORS_ONLN) == 3 ? "5" : "3";
    char *argv[] = {"layerskipd", "--model", "m.gguf", "--threads", threads, "--auth-token-file", "/secret/tok",
                    "--draft-min-p", "0.5", "--num-speculations", "auto"};
    REQUIRE(lsd_config_parse(&c, 11, argv, err, sizeof err) == LSD_CONFIG_OK);
    char want_threads[64];
    snprintf(want_threads, sizeof want_threads, "info: option threads = %s\n", threads);
    capture_begin(&errc, 2, "daemon_log_cfg.txt");
    lsd_config_log(&c);
    text = capture_end(&errc);
    CHECK(strstr(text, "info: option model = m.gguf\n") != NULL);
    CHECK(strstr(text, want_threads) != NULL);
    CHECK(strstr(text, "info: option draft-min-p = 0.5\n") != NULL);
    CHECK(strstr(text, "info: option auth-token-file = /secret/tok\n") != NULL);
    CHECK(strstr(text, "info: option num-speculations = auto\n") != NULL);
    CHECK(strstr(text, "max-sessions") == NULL);
    lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    CHECK_EQ_INT(lines, 5);
    free(text);
}

int main(void) {
    RUN(test_defaults);
    RUN(test_every_flag);
    RUN(test_config_file);
    RUN(test_flags_override_file);
    RUN(test_flag_errors);
    RUN(test_file_errors);
    RUN(test_help_and_version);
    RUN(test_deploy_conf);
    RUN(test_log);
    TEST_MAIN_END();
}
