/* admin_load: Admin API calls per second against a running bulkheadd, printed beside a
 * bare ceiling measured in the same run.
 *
 * The ceiling is a trivial Unix-socket server forked from this program: accept, read
 * until EOF, write "0\0", close. Both servers are driven by the same client loop
 * (connect, write the request, shut down the write side, read until EOF) with the same
 * request bytes, so the ratio says how much of the per-connection budget bulkheadd
 * spends on parsing, dispatch and building answers.
 *
 *   admin_load --socket PATH [--bare PATH] [--qubes N] [--seconds S] [--clients 1,8,64]
 *
 * --qubes N first creates N qubes over the API (one template, N-1 app qubes based on
 * it) unless they are there already. The call mix, per client, chosen at random:
 * 10% admin.vm.List (all qubes), 10% admin.vm.property.GetAll on a random qube, 80%
 * admin.vm.property.Get of a random property of a random qube. Every answer must be a
 * success ("0\0..."), otherwise the run fails. */
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024
#define TEMPLATE_NAME "bench-tpl"

static char **qube_names;
static size_t nqube_names, nqubes_total; /* call targets; all qubes but dom0 */

static const char *const get_props[] = { "memory", "netvm", "label", "template", "vcpus", "ip",
                                         "maxmem", "default_user", "mac", "klass", "qrexec_timeout", "icon" };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sockaddr_for(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        fprintf(stderr, "admin_load: socket path too long: %s\n", path);
        exit(2);
    }
    strcpy(sa->sun_path, path);
}

/* One request on its own connection, as Qubes' client does. The answer goes into *out
 * (grown as needed). Returns the answer length, or -1 on a socket error. */
static ssize_t call(const struct sockaddr_un *sa, const char *req, size_t reqlen, char **out, size_t *cap)
{
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    while (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        if (errno != EINTR && errno != EAGAIN)
            return -1;
    }
    if (bh_write_all(fd, req, reqlen) < 0 || shutdown(fd, SHUT_WR) < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        if (len == *cap) {
            size_t nc = *cap ? *cap * 2 : 65536;
            char *n = realloc(*out, nc);
            if (!n)
                return -1;
            *out = n;
            *cap = nc;
        }
        ssize_t r = read(fd, *out + len, *cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            return (ssize_t)len;
        len += (size_t)r;
    }
}

static bool is_ok(const char *ans, ssize_t n) { return n >= 2 && ans[0] == '0' && ans[1] == '\0'; }

/* A call made outside the timed loop; prints the error and exits on failure. */
static void call_or_die(const struct sockaddr_un *sa, const char *req, size_t reqlen, char **out, size_t *cap, ssize_t *n)
{
    *n = call(sa, req, reqlen, out, cap);
    if (*n < 0) {
        fprintf(stderr, "admin_load: %s: %s\n", req, strerror(errno));
        exit(1);
    }
    if (!is_ok(*out, *n)) {
        fprintf(stderr, "admin_load: %s: error answer (%zd bytes): %.*s\n", req, *n, (int)(*n > 2 ? *n - 2 : 0),
                *n > 2 ? *out + 2 : "");
        exit(1);
    }
}

static size_t build_req(char *buf, size_t cap, const char *method_arg, const char *dest, const char *payload)
{
    int n = snprintf(buf, cap, "%s dom0 name %s", method_arg, dest);
    if (n < 0 || (size_t)n + 1 >= cap)
        abort();
    size_t len = (size_t)n + 1; /* the header's NUL */
    size_t pl = payload ? strlen(payload) : 0;
    if (len + pl > cap)
        abort();
    memcpy(buf + len, payload ? payload : "", pl);
    return len + pl;
}

/* Reads the qube list; with want > 0 first creates qubes until there are want of them
 * besides dom0. */
static void setup_qubes(const struct sockaddr_un *sa, size_t want)
{
    _cleanup_free_ char *ans = NULL;
    size_t cap = 0;
    ssize_t n;
    char req[512];
    size_t rl = build_req(req, sizeof req, "admin.vm.List+", "dom0", NULL);
    call_or_die(sa, req, rl, &ans, &cap, &n);
    size_t have = 0;
    bool have_tpl = false;
    for (char *p = ans + 2; p < ans + n; p = strchr(p, '\n') + 1) {
        have++;
        have_tpl |= !strncmp(p, TEMPLATE_NAME " ", strlen(TEMPLATE_NAME) + 1);
        if (!memchr(p, '\n', (size_t)(ans + n - p)))
            break;
    }
    have = have ? have - 1 : 0; /* dom0 */
    static const char *const labels[] = { "red", "orange", "yellow", "green", "gray", "blue", "purple", "black" };
    if (want && !have_tpl) {
        rl = build_req(req, sizeof req, "admin.vm.Create.TemplateVM+", "dom0", "name=" TEMPLATE_NAME " label=black");
        call_or_die(sa, req, rl, &ans, &cap, &n);
        have++;
    }
    for (size_t i = 0; have < want; i++) {
        char name[32], payload[96];
        snprintf(name, sizeof name, "bench-%03zu", i);
        snprintf(payload, sizeof payload, "name=%s label=%s", name, labels[i % 8]);
        rl = build_req(req, sizeof req, "admin.vm.Create.AppVM+" TEMPLATE_NAME, "dom0", payload);
        ssize_t r = call(sa, req, rl, &ans, &cap);
        if (r > 2 && ans[0] == '2' && strstr(ans + 2, "AlreadyExists"))
            continue;
        if (!is_ok(ans, r)) {
            fprintf(stderr, "admin_load: creating %s failed\n", name);
            exit(1);
        }
        have++;
    }
    /* Now the names, dom0 excluded: calls go to random qubes. */
    rl = build_req(req, sizeof req, "admin.vm.List+", "dom0", NULL);
    call_or_die(sa, req, rl, &ans, &cap, &n);
    ans[n - 1] = ans[n - 1] == '\n' ? '\0' : ans[n - 1];
    for (char *save = NULL, *line = strtok_r(ans + 2, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *sp = strchr(line, ' ');
        if (sp)
            *sp = '\0';
        if (!strcmp(line, "dom0"))
            continue;
        nqubes_total++;
        /* The template lacks some of the properties asked for (template, netvm...). */
        if (!strcmp(line, TEMPLATE_NAME))
            continue;
        char **nn = realloc(qube_names, (nqube_names + 1) * sizeof *nn);
        if (!nn || !(nn[nqube_names] = strdup(line)))
            abort();
        qube_names = nn;
        nqube_names++;
    }
    if (!nqube_names) {
        fprintf(stderr, "admin_load: no qubes to call (use --qubes N)\n");
        exit(1);
    }
}

/* ---- the bare ceiling ---- */

static void bare_serve(int lfd)
{
    static char buf[1 << 16];
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            _exit(1);
        }
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))
            ;
        if (r == 0)
            (void)!bh_write_all(fd, "0\0", 2);
        close(fd);
    }
}

static pid_t bare_start(const char *path)
{
    struct sockaddr_un sa;
    sockaddr_for(path, &sa);
    unlink(path);
    _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 1024) < 0) {
        fprintf(stderr, "admin_load: bare server on %s: %s\n", path, strerror(errno));
        exit(1);
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        /* Never outlive the benchmark, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        bare_serve(lfd);
    }
    return pid;
}

/* ---- the timed loop ---- */

struct client {
    pthread_t th;
    const struct sockaddr_un *sa;
    uint64_t rng;
    uint64_t calls, errors;
};

static atomic_bool go, stop;

static uint64_t next_rand(uint64_t *s)
{
    /* xorshift64*: cheap, per-thread, good enough to pick qubes and methods. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    char *ans = NULL;
    size_t cap = 0;
    char req[512], ma[128];
    while (!atomic_load(&go))
        sched_yield();
    while (!atomic_load(&stop)) {
        uint64_t r = next_rand(&c->rng);
        const char *dest = qube_names[(r >> 8) % nqube_names];
        unsigned kind = (unsigned)(r % 10);
        size_t rl;
        if (kind == 0)
            rl = build_req(req, sizeof req, "admin.vm.List+", "dom0", NULL);
        else if (kind == 1)
            rl = build_req(req, sizeof req, "admin.vm.property.GetAll+", dest, NULL);
        else {
            snprintf(ma, sizeof ma, "admin.vm.property.Get+%s", get_props[(r >> 32) % BH_ARRAY_SIZE(get_props)]);
            rl = build_req(req, sizeof req, ma, dest, NULL);
        }
        ssize_t n = call(c->sa, req, rl, &ans, &cap);
        c->calls++;
        if (!is_ok(ans, n)) {
            if (c->errors++ == 0)
                fprintf(stderr, "admin_load: %s: %s\n", req, n < 0 ? strerror(errno) : "error answer");
        }
    }
    free(ans);
    return NULL;
}

/* Runs nclients for secs seconds against sa; adds to *calls and *elapsed. Returns -1
 * if any call failed. */
static int measure(const struct sockaddr_un *sa, int nclients, double secs, uint64_t *total, double *elapsed)
{
    struct client *cl = calloc((size_t)nclients, sizeof *cl);
    if (!cl)
        abort();
    atomic_store(&go, false);
    atomic_store(&stop, false);
    for (int i = 0; i < nclients; i++) {
        cl[i].sa = sa;
        cl[i].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
        if (pthread_create(&cl[i].th, NULL, client_main, &cl[i]) != 0) {
            fprintf(stderr, "admin_load: pthread_create failed\n");
            exit(1);
        }
    }
    double t0 = now_s();
    atomic_store(&go, true);
    struct timespec ts = { (time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9) };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
    atomic_store(&stop, true);
    uint64_t calls = 0, errors = 0;
    for (int i = 0; i < nclients; i++) {
        pthread_join(cl[i].th, NULL);
        calls += cl[i].calls;
        errors += cl[i].errors;
    }
    *elapsed += now_s() - t0;
    *total += calls;
    free(cl);
    if (errors) {
        fprintf(stderr, "admin_load: %llu of %llu calls failed\n", (unsigned long long)errors, (unsigned long long)calls);
        return -1;
    }
    return 0;
}

/* The machine is shared (other builds, other tests): measuring bulkheadd and the
 * ceiling in alternating short slices exposes both to the same background load. */
#define SLICE_S 0.5

static int measure_pair(const struct sockaddr_un *a, const struct sockaddr_un *b, int nclients, double secs,
                        double *rate_a, double *rate_b)
{
    uint64_t ca = 0, cb = 0;
    double ta = 0, tb = 0;
    int slices = secs > SLICE_S ? (int)(secs / SLICE_S + 0.5) : 1;
    for (int i = 0; i < slices; i++)
        if (measure(a, nclients, secs / slices, &ca, &ta) < 0 || measure(b, nclients, secs / slices, &cb, &tb) < 0)
            return -1;
    *rate_a = (double)ca / ta;
    *rate_b = (double)cb / tb;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: admin_load --socket PATH [--bare PATH] [--qubes N] [--seconds S] [--clients 1,8,64]\n");
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *bare = NULL, *clients_arg = "1,8,64";
    size_t want = 0;
    double secs = 3;
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' }, { "bare", required_argument, NULL, 'b' },
        { "qubes", required_argument, NULL, 'n' },  { "seconds", required_argument, NULL, 't' },
        { "clients", required_argument, NULL, 'c' }, { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int o;
    while ((o = getopt_long(argc, argv, "s:b:n:t:c:h", opts, NULL)) != -1) {
        switch (o) {
        case 's': sock = optarg; break;
        case 'b': bare = optarg; break;
        case 'n': want = strtoul(optarg, NULL, 10); break;
        case 't': secs = strtod(optarg, NULL); break;
        case 'c': clients_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!sock || optind != argc || !(secs > 0)) {
        usage(stderr);
        return 2;
    }
    int clients[32], nc = 0;
    _cleanup_free_ char *cl = strdup(clients_arg);
    for (char *save = NULL, *t = strtok_r(cl, ",", &save); t && nc < 32; t = strtok_r(NULL, ",", &save)) {
        int v = atoi(t);
        if (v < 1 || v > MAX_CLIENTS) {
            fprintf(stderr, "admin_load: bad client count '%s'\n", t);
            return 2;
        }
        clients[nc++] = v;
    }
    char bare_default[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    if (!bare) {
        snprintf(bare_default, sizeof bare_default, "%s.bare", sock);
        bare = bare_default;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_un sa_admin, sa_bare;
    sockaddr_for(sock, &sa_admin);
    sockaddr_for(bare, &sa_bare);
    setup_qubes(&sa_admin, want);
    pid_t bare_pid = bare_start(bare);

    printf("Admin API calls/s, %zu qubes besides dom0 (calls go to %zu app qubes): 10%% vm.List, 10%% property.GetAll,\n"
           "80%% property.Get; %.1fs per cell, bulkheadd and bare interleaved in %.1fs slices\n",
           nqubes_total, nqube_names, secs, SLICE_S);
    printf("%8s %18s %14s %8s\n", "clients", "bulkheadd calls/s", "bare calls/s", "ratio");
    fflush(stdout);
    int rc = 0;
    for (int i = 0; i < nc; i++) {
        double a, b;
        if (measure_pair(&sa_admin, &sa_bare, clients[i], secs, &a, &b) < 0 || b <= 0) {
            rc = 1;
            break;
        }
        printf("%8d %18.0f %14.0f %8.2f\n", clients[i], a, b, a / b);
        if (clients[i] == 64) /* the figure: a row of scripts/bench.sh's summary */
            printf("ROW\tAdmin API calls/s, 64 clients\t%.0f/s\tbare socket loop %.0f/s\t%.2f\t>= 0.5\n", a, b, a / b);
        fflush(stdout);
    }
    kill(bare_pid, SIGTERM);
    waitpid(bare_pid, NULL, 0);
    unlink(bare);
    return rc;
}
