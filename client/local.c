/* local.c: run a private layerskipd for one command (local mode). The
 * daemon lives in its own process group so a terminal Ctrl-C reaches only
 * the client, which then stops the daemon in order; PR_SET_PDEATHSIG covers
 * the client dying without running its cleanup. */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static bool is_executable(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && access(p, X_OK) == 0;
}

/* Next to this executable, then the build tree's ../daemon/, then PATH. */
static bool find_daemon(const char *given, char *out, size_t len) {
    if (given) {
        snprintf(out, len, "%s", given);
        return is_executable(out);
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(out, len, "%s/layerskipd", self) < (int)len && is_executable(out)) return true;
            if (snprintf(out, len, "%s/../daemon/layerskipd", self) < (int)len && is_executable(out)) return true;
        }
    }
    const char *path = getenv("PATH");
    if (!path) return false;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t dl = e ? (size_t)(e - p) : strlen(p);
        if (dl > 0) {
            snprintf(out, len, "%.*s/layerskipd", (int)dl, p);
            if (is_executable(out)) return true;
        }
        if (!e) break;
        p = e + 1;
    }
    return false;
}

lsc_status lsc_local_start(lsc_local *l, const lsc_local_opts *o, lsc_err *err) {
    memset(l, 0, sizeof *l);
    l->log_fd = -1;
    char bin[PATH_MAX];
    if (!find_daemon(o->daemon_bin, bin, sizeof bin)) {
        if (o->daemon_bin)
            lsc_err_set(err, "--daemon-bin '%s' is not an executable file (give the path of layerskipd)", o->daemon_bin);
        else
            lsc_err_set(err, "local mode (--model) needs layerskipd: not found next to this program, in "
                        "../daemon/ or on PATH (build it, or give --daemon-bin PATH)");
        return LSC_ERR_USAGE;
    }
    if (access(o->model, R_OK) != 0) {
        lsc_err_set(err, "--model '%s': %s (give a .gguf file or a Hugging Face directory)", o->model, strerror(errno));
        return LSC_ERR_USAGE;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(l->dir, sizeof l->dir, "%s/layerskip-XXXXXX", tmp);
    if (!mkdtemp(l->dir)) {
        lsc_err_set(err, "cannot create a private directory under %s: %s (set TMPDIR to a writable directory)", tmp,
                    strerror(errno));
        l->dir[0] = '\0';
        return LSC_ERR_IO;
    }
    /* mkdtemp makes it 0700: only this user can reach the socket */
    snprintf(l->socket, sizeof l->socket, "%s/layerskipd.sock", l->dir);
    snprintf(l->target, sizeof l->target, "unix:%s", l->socket);
    snprintf(l->log_path, sizeof l->log_path, "%s/layerskipd.log", l->dir);
    if (strlen(l->socket) >= 104) { /* sun_path is 108 bytes */
        lsc_err_set(err, "the socket path '%s' is too long for a unix socket (set TMPDIR to a shorter directory)",
                    l->socket);
        lsc_local_stop(l, 0);
        return LSC_ERR_USAGE;
    }
    int logfd = open(l->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (logfd >= 0) l->log_fd = open(l->log_path, O_RDONLY | O_CLOEXEC);
    if (logfd < 0 || l->log_fd < 0) {
        lsc_err_set(err, "cannot create '%s': %s", l->log_path, strerror(errno));
        if (logfd >= 0) close(logfd);
        lsc_local_stop(l, 0);
        return LSC_ERR_IO;
    }

    char nbuf[3][32];
    const char *argv[24];
    int a = 0;
    argv[a++] = bin;
    argv[a++] = "--model";
    argv[a++] = o->model;
    argv[a++] = "--listen";
    argv[a++] = l->target;
    if (o->threads > 0) { snprintf(nbuf[0], sizeof nbuf[0], "%d", o->threads); argv[a++] = "--threads"; argv[a++] = nbuf[0]; }
    if (o->ctx > 0) { snprintf(nbuf[1], sizeof nbuf[1], "%d", o->ctx); argv[a++] = "--ctx"; argv[a++] = nbuf[1]; }
    if (o->max_sessions > 0) {
        snprintf(nbuf[2], sizeof nbuf[2], "%d", o->max_sessions);
        argv[a++] = "--max-sessions";
        argv[a++] = nbuf[2];
    }
    if (o->draft_adapter) { argv[a++] = "--draft-adapter"; argv[a++] = o->draft_adapter; }
    if (o->log_level) { argv[a++] = "--log-level"; argv[a++] = o->log_level; }
    argv[a] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        lsc_err_set(err, "cannot start layerskipd: fork: %s", strerror(errno));
        close(logfd);
        lsc_local_stop(l, 0);
        return LSC_ERR_DAEMON;
    }
    if (pid == 0) {
        /* The parent blocks SIGINT/SIGTERM for its signal thread; the mask
         * survives exec, so clear it or the daemon could never be stopped. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL); /* an ignored signal stays ignored across exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(127); /* the parent died before prctl */
        setpgid(0, 0);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        dup2(logfd, 1);
        dup2(logfd, 2);
        execv(bin, (char *const *)argv);
        static const char msg[] = "layerskip: cannot execute layerskipd\n"; /* write(): fork-safe */
        if (write(2, msg, sizeof msg - 1) < 0) _exit(127);
        _exit(127);
    }
    close(logfd);
    l->pid = pid;
    return LSC_OK;
}

void lsc_local_log_tail(const lsc_local *l, char *buf, size_t len) {
    buf[0] = '\0';
    if (l->log_fd < 0 || len < 2) return;
    off_t size = lseek(l->log_fd, 0, SEEK_END);
    off_t from = size > (off_t)(len - 1) ? size - (off_t)(len - 1) : 0;
    ssize_t n = pread(l->log_fd, buf, len - 1, from);
    buf[n > 0 ? n : 0] = '\0';
}

bool lsc_local_exited(lsc_local *l, lsc_err *err) {
    if (l->pid <= 0) return true;
    int ws;
    pid_t r = waitpid(l->pid, &ws, WNOHANG);
    if (r == 0) return false;
    l->pid = 0;
    char tail[1500];
    lsc_local_log_tail(l, tail, sizeof tail);
    if (r < 0)
        lsc_err_set(err, "layerskipd disappeared (%s)", strerror(errno));
    else if (WIFEXITED(ws))
        lsc_err_set(err, "layerskipd exited with status %d; its last output:\n%s", WEXITSTATUS(ws), tail);
    else
        lsc_err_set(err, "layerskipd was killed by signal %d; its last output:\n%s",
                    WIFSIGNALED(ws) ? WTERMSIG(ws) : 0, tail);
    return true;
}

void lsc_local_serving(lsc_local *l) {
    if (l->log_path[0]) unlink(l->log_path);
    l->log_path[0] = '\0';
}

void lsc_local_stop(lsc_local *l, double grace_s) {
    if (l->pid > 0) {
        kill(l->pid, SIGTERM);
        struct timespec nap = {0, 20 * 1000 * 1000};
        double waited = 0;
        int ws;
        for (;;) {
            pid_t r = waitpid(l->pid, &ws, WNOHANG);
            if (r == l->pid || (r < 0 && errno != EINTR)) break;
            if (waited >= grace_s) {
                kill(l->pid, SIGKILL);
                while (waitpid(l->pid, &ws, 0) < 0 && errno == EINTR) {
                }
                break;
            }
            nanosleep(&nap, NULL);
            waited += 0.02;
        }
        l->pid = 0;
    }
    if (l->socket[0]) unlink(l->socket);
    if (l->log_path[0]) unlink(l->log_path);
    if (l->dir[0]) rmdir(l->dir);
    l->dir[0] = l->socket[0] = l->log_path[0] = '\0';
    if (l->log_fd >= 0) close(l->log_fd);
    l->log_fd = -1;
}
