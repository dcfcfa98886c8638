/*
 * libgearman_submit: background submit throughput as real libgearman client
 * code produces it (what PHP's GearmanClient::addTaskBackground + runTasks
 * and C programs do).
 *
 * --clients N threads, each with its own gearman_client_st (one connection),
 * loop: gearman_client_add_task_background() --batch times (unique NULL, so
 * libgearman generates a uuid for every job), then gearman_client_run_tasks().
 * The client has GEARMAN_CLIENT_FREE_TASKS, as PHP's GearmanClient does, and
 * counts JOB_CREATED through the created callback.
 *
 * Every loop is bounded: --jobs in total (split over the clients), no new batch
 * after --duration seconds, and a hard --deadline after which the program
 * reports how far it got and exits with status 2. libgearman's own I/O timeout
 * is set as well.
 *
 * Output: one human line and, with --json, one JSON line in loadgen's format
 * (scenario, ok, figures, anomalies, error), so benches/compare reads both the
 * same way. With --server-pid it reads the server's CPU time and RSS from
 * /proc. After the run it checks the admin `status` count of the function
 * (it should equal the jobs created). The jobs are left queued: compare stops
 * the server after each run.
 *
 * Build: cc -O2 -o libgearman_submit libgearman_submit.c -lgearman -lpthread
 * (Debian: apt-get install libgearman-dev)
 */
#define _GNU_SOURCE
#include <libgearman-1.0/gearman.h>
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct opts {
  char host[256];
  in_port_t port;
  long server_pid;
  long clients;
  long batch;
  long jobs;
  long payload;
  double duration_s;
  long deadline_s;
  int json;
  const char *label;
  char function[128];
};

static struct opts o = {
    .host = "127.0.0.1",
    .port = 4730,
    .server_pid = 0,
    .clients = 4,
    .batch = 100,
    .jobs = 200000,
    .payload = 100,
    .duration_s = 0,
    .deadline_s = 300,
    .json = 0,
    .label = NULL,
};

struct worker {
  pthread_t thread;
  long index;
  long quota;
  long submitted; /* tasks handed to run_tasks successfully */
  atomic_long created; /* JOB_CREATED seen by the created callback */
  int stopped_by_duration;
  /* Seconds each run_tasks batch took (add_task_background x B, then
     run_tasks until every JOB_CREATED is in): what a PHP page that submits
     B background jobs waits for. */
  double *batch_s;
  long batches;
  char error[512];
};

static struct worker *workers;
static char *payload;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long ready, finished;
static int go;
static struct timespec stop_at; /* CLOCK_MONOTONIC; no new batch after it */


static gearman_return_t on_created(gearman_task_st *task) {
  struct worker *w = gearman_task_context(task);
  if (w)
    atomic_fetch_add_explicit(&w->created, 1, memory_order_relaxed);
  return GEARMAN_SUCCESS;
}

static void finish(struct worker *w) {
  pthread_mutex_lock(&mu);
  finished++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  (void)w;
}

static void *run_client(void *arg) {
  struct worker *w = arg;
  gearman_client_st *c = gearman_client_create(NULL);
  if (!c) {
    snprintf(w->error, sizeof w->error, "client %ld: gearman_client_create failed", w->index);
    pthread_mutex_lock(&mu);
    ready++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    finish(w);
    return NULL;
  }
  gearman_client_add_options(c, GEARMAN_CLIENT_FREE_TASKS);
  gearman_client_set_created_fn(c, on_created);
  gearman_client_set_timeout(c, 30000);
  gearman_return_t ret = gearman_client_add_server(c, o.host, o.port);
  if (ret == GEARMAN_SUCCESS)
    /* Opens the connection before the clock starts. */
    ret = gearman_client_echo(c, "x", 1);
  if (ret != GEARMAN_SUCCESS)
    snprintf(w->error, sizeof w->error, "client %ld: connect/echo: %s", w->index,
             gearman_client_error(c));

  pthread_mutex_lock(&mu);
  ready++;
  pthread_cond_broadcast(&cv);
  while (!go)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);

  while (!w->error[0] && w->submitted < w->quota) {
    if (o.duration_s > 0) {
      struct timespec t;
      clock_gettime(CLOCK_MONOTONIC, &t);
      if (t.tv_sec > stop_at.tv_sec ||
          (t.tv_sec == stop_at.tv_sec && t.tv_nsec >= stop_at.tv_nsec)) {
        w->stopped_by_duration = 1;
        break;
      }
    }
    long n = w->quota - w->submitted;
    if (n > o.batch)
      n = o.batch;
    double batch_start = now_s();
    for (long i = 0; i < n; i++) {
      gearman_task_st *t = gearman_client_add_task_background(
          c, NULL, w, o.function, NULL, payload, (size_t)o.payload, &ret);
      if (!t || ret != GEARMAN_SUCCESS) {
        snprintf(w->error, sizeof w->error, "client %ld: add_task_background after %ld jobs: %s",
                 w->index, w->submitted, gearman_client_error(c));
        break;
      }
    }
    if (w->error[0])
      break;
    ret = gearman_client_run_tasks(c);
    if (ret != GEARMAN_SUCCESS) {
      snprintf(w->error, sizeof w->error, "client %ld: run_tasks after %ld jobs: %s (%s)",
               w->index, w->submitted, gearman_strerror(ret), gearman_client_error(c));
      break;
    }
    w->submitted += n;
    w->batch_s[w->batches++] = now_s() - batch_start;
  }
  gearman_client_free(c);
  finish(w);
  return NULL;
}


static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* batch_p50_us, batch_p99_us, batch_p999_us: exact percentiles over every
   client's batches (nearest rank). */
static void batch_percentiles(void) {
  long total = 0;
  for (long i = 0; i < o.clients; i++)
    total += workers[i].batches;
  if (total == 0)
    return;
  double *all = malloc(sizeof(double) * (size_t)total);
  if (!all)
    return;
  long k = 0;
  for (long i = 0; i < o.clients; i++)
    for (long j = 0; j < workers[i].batches; j++)
      all[k++] = workers[i].batch_s[j];
  qsort(all, (size_t)total, sizeof(double), cmp_double);
  const char *names[] = {"batch_p50_us", "batch_p99_us", "batch_p999_us"};
  const double ranks[] = {0.50, 0.99, 0.999};
  for (int i = 0; i < 3; i++) {
    long at = (long)(ranks[i] * (double)total + 0.999999) - 1;
    if (at < 0)
      at = 0;
    if (at >= total)
      at = total - 1;
    fig(names[i], all[at] * 1e6);
  }
  free(all);
}

/* Admin `status` total for the function; -1 if it cannot be read. */
static long admin_status_total(char *err, size_t errlen) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    snprintf(err, errlen, "status: socket: %s", strerror(errno));
    return -1;
  }
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(o.port)};
  if (inet_pton(AF_INET, o.host, &a.sin_addr) != 1 ||
      connect(fd, (struct sockaddr *)&a, sizeof a) != 0 || write(fd, "status\n", 7) != 7) {
    snprintf(err, errlen, "status: cannot connect/send to %.255s:%u", o.host, (unsigned)o.port);
    close(fd);
    return -1;
  }
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (len + 1 >= cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    ssize_t r = read(fd, buf + len, cap - len - 1);
    if (r <= 0)
      break;
    len += (size_t)r;
    buf[len] = 0;
    if (len >= 2 && (strcmp(buf, ".\n") == 0 || strstr(buf, "\n.\n")))
      break;
  }
  close(fd);
  buf[len] = 0;
  long total = 0; /* a function the server does not know has no jobs */
  size_t flen = strlen(o.function);
  for (char *line = buf; line && *line;) {
    char *nl = strchr(line, '\n');
    if (strncmp(line, o.function, flen) == 0 && line[flen] == '\t') {
      total = strtol(line + flen + 1, NULL, 10);
      break;
    }
    line = nl ? nl + 1 : NULL;
  }
  if (!strstr(buf, ".\n")) {
    snprintf(err, errlen, "status: reply did not end with \".\" (%zu bytes)", len);
    total = -1;
  }
  free(buf);
  return total;
}

static void emit(const char *error, const char *anomalies[], int nanom, double wall_s) {
  char server[300];
  snprintf(server, sizeof server, "%s:%u", o.host, (unsigned)o.port);
  /* Human line. */
  printf("submit-bg-libgearman on %s", server);
  if (o.label)
    printf(" [%s]", o.label);
  printf(" (function=%s clients=%ld batch=%ld jobs=%ld payload=%ld unique=libgearman-uuid):",
         o.function, o.clients, o.batch, o.jobs, o.payload);
  for (int i = 0; i < nfig; i++)
    printf(fig_v[i] >= 100 || fig_v[i] == (long)fig_v[i] ? " %s=%.0f" : " %s=%.3f", fig_k[i],
           fig_v[i]);
  if (nanom) {
    printf(" ANOMALIES:");
    for (int i = 0; i < nanom; i++)
      printf("%s %s", i ? ";" : "", anomalies[i]);
  }
  if (error)
    printf(" ERROR: %s", error);
  printf("\n");
  if (!o.json) {
    fflush(stdout);
    return;
  }
  printf("{\"scenario\":\"submit-bg-libgearman\",\"server\":");
  json_str(stdout, server);
  printf(",\"transport\":\"tcp\"");
  if (o.label) {
    printf(",\"label\":");
    json_str(stdout, o.label);
  }
  printf(",\"ok\":%s,\"wall_s\":%.3f,\"params\":{\"function\":", error ? "false" : "true", wall_s);
  json_str(stdout, o.function);
  printf(",\"clients\":%ld,\"batch\":%ld,\"jobs\":%ld,\"payload\":%ld,\"unique\":\"libgearman-uuid\","
         "\"libgearman\":",
         o.clients, o.batch, o.jobs, o.payload);
  json_str(stdout, gearman_version());
  printf("},\"figures\":{");
  for (int i = 0; i < nfig; i++)
    printf("%s\"%s\":%.3f", i ? "," : "", fig_k[i], fig_v[i]);
  printf("},\"series\":{},\"anomalies\":[");
  for (int i = 0; i < nanom; i++) {
    if (i)
      putchar(',');
    json_str(stdout, anomalies[i]);
  }
  printf("],\"error\":");
  if (error)
    json_str(stdout, error);
  else
    printf("null");
  printf("}\n");
  fflush(stdout);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: libgearman_submit [--server HOST:PORT] [--clients N] [--batch B] [--jobs TOTAL]\n"
          "         [--payload BYTES] [--duration SECS] [--deadline SECS] [--server-pid PID]\n"
          "         [--function NAME] [--label TEXT] [--json]\n"
          "Background submit through libgearman: N clients (threads, one connection each) each\n"
          "loop add_task_background x B, run_tasks; libgearman generates the uniques (uuids).\n"
          "Defaults: 127.0.0.1:4730, 4 clients, batch 100, 200000 jobs, 100-byte payload,\n"
          "no duration limit, deadline 300 s. Exit status 0 done, 1 failed, 2 deadline hit.\n");
}

static long num_arg(const char *name, const char *v) {
  char *end = NULL;
  errno = 0;
  long x = strtol(v ? v : "", &end, 10);
  if (!v || errno || *end || x < 0) {
    fprintf(stderr, "libgearman_submit: bad value for %s: %s\n", name, v ? v : "(missing)");
    exit(1);
  }
  return x;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--json")) {
      o.json = 1;
      continue;
    }
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      usage(stderr);
      return 1;
    }
    i++;
    if (!strcmp(a, "--server")) {
      const char *colon = strrchr(v, ':');
      if (!colon || (size_t)(colon - v) >= sizeof o.host || !strncmp(v, "unix:", 5)) {
        fprintf(stderr, "libgearman_submit: --server wants HOST:PORT (TCP), got %s\n", v);
        return 1;
      }
      memcpy(o.host, v, (size_t)(colon - v));
      o.host[colon - v] = 0;
      o.port = (in_port_t)num_arg(a, colon + 1);
    } else if (!strcmp(a, "--clients"))
      o.clients = num_arg(a, v);
    else if (!strcmp(a, "--batch"))
      o.batch = num_arg(a, v);
    else if (!strcmp(a, "--jobs"))
      o.jobs = num_arg(a, v);
    else if (!strcmp(a, "--payload"))
      o.payload = num_arg(a, v);
    else if (!strcmp(a, "--duration"))
      o.duration_s = atof(v);
    else if (!strcmp(a, "--deadline"))
      o.deadline_s = num_arg(a, v);
    else if (!strcmp(a, "--server-pid"))
      o.server_pid = num_arg(a, v);
    else if (!strcmp(a, "--function"))
      snprintf(o.function, sizeof o.function, "%s", v);
    else if (!strcmp(a, "--label"))
      o.label = v;
    else {
      fprintf(stderr, "libgearman_submit: unknown option %s\n", a);
      usage(stderr);
      return 1;
    }
  }
  if (o.clients < 1 || o.batch < 1 || o.jobs < 1 || o.deadline_s < 1) {
    fprintf(stderr, "libgearman_submit: --clients, --batch, --jobs and --deadline must be >= 1\n");
    return 1;
  }
  if (!o.function[0]) {
    unsigned r;
    FILE *u = fopen("/dev/urandom", "r");
    if (!u || fread(&r, sizeof r, 1, u) != 1)
      r = (unsigned)getpid() ^ (unsigned)time(NULL);
    if (u)
      fclose(u);
    snprintf(o.function, sizeof o.function, "bench-submit-bg-libgearman-%08x", r);
  }
  payload = malloc((size_t)o.payload + 1);
  for (long i = 0; i < o.payload; i++)
    payload[i] = (char)('a' + i % 26);

  double t_start_prog = now_s();
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += o.deadline_s;

  workers = calloc((size_t)o.clients, sizeof *workers);
  for (long i = 0; i < o.clients; i++) {
    workers[i].index = i;
    workers[i].quota = o.jobs / o.clients + (i < o.jobs % o.clients ? 1 : 0);
    workers[i].batch_s = calloc((size_t)(workers[i].quota / o.batch + 2), sizeof(double));
    if (!workers[i].batch_s) {
      fprintf(stderr, "libgearman_submit: out of memory\n");
      return 2;
    }
    atomic_init(&workers[i].created, 0);
    if (pthread_create(&workers[i].thread, NULL, run_client, &workers[i]) != 0) {
      fprintf(stderr, "libgearman_submit: pthread_create failed\n");
      return 1;
    }
  }
  /* Wait until every client is connected, then start the clock. */
  pthread_mutex_lock(&mu);
  while (ready < o.clients)
    if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
      break;
  int connected = ready == o.clients;
  double cpu0 = server_cpu_s(o.server_pid), self0 = self_cpu_s(), t0 = now_s();
  clock_gettime(CLOCK_MONOTONIC, &stop_at);
  if (o.duration_s > 0) {
    long ns = stop_at.tv_nsec + (long)((o.duration_s - (long)o.duration_s) * 1e9);
    stop_at.tv_sec += (long)o.duration_s + ns / 1000000000L;
    stop_at.tv_nsec = ns % 1000000000L;
  } else {
    stop_at.tv_sec += 1L << 40;
  }
  go = 1;
  pthread_cond_broadcast(&cv);
  int timed_out = !connected;
  while (!timed_out && finished < o.clients)
    if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
      timed_out = 1;
  pthread_mutex_unlock(&mu);
  double t1 = now_s(), cpu1 = server_cpu_s(o.server_pid), self1 = self_cpu_s();

  long created = 0, submitted = 0, stopped = 0;
  for (long i = 0; i < o.clients; i++) {
    created += atomic_load(&workers[i].created);
    submitted += workers[i].submitted;
    stopped |= workers[i].stopped_by_duration;
  }
  if (timed_out) {
    char err[512];
    snprintf(err, sizeof err,
             "deadline of %ld s hit %s: %ld of %ld jobs created (%ld run_tasks batches finished)",
             o.deadline_s, connected ? "while submitting" : "while connecting", created, o.jobs,
             submitted / o.batch);
    fig("jobs_created", (double)created);
    emit(err, NULL, 0, now_s() - t_start_prog);
    _exit(2); /* the client threads may be stuck in libgearman */
  }
  for (long i = 0; i < o.clients; i++)
    pthread_join(workers[i].thread, NULL);

  const char *error = NULL;
  for (long i = 0; i < o.clients && !error; i++)
    if (workers[i].error[0])
      error = workers[i].error;

  double wall = t1 - t0;
  fig("jobs_per_s", wall > 0 ? (double)created / wall : 0);
  fig("jobs_created", (double)created);
  fig("stopped_by_duration", (double)stopped);
  fig("measured_s", wall);
  if (cpu0 >= 0 && cpu1 >= 0) {
    double cpu = cpu1 - cpu0;
    fig("server_cpu_s", cpu);
    if (cpu > 0)
      fig("jobs_per_server_cpu_s", (double)created / cpu);
    if (created > 0)
      fig("server_cpu_us_per_job", cpu * 1e6 / (double)created);
  }
  fig("client_cpu_s", self1 - self0);
  if (created > 0)
    fig("client_cpu_us_per_job", (self1 - self0) * 1e6 / (double)created);
  long rss = server_rss_kib(o.server_pid);
  if (rss >= 0)
    fig("server_rss_queued_kib", (double)rss);
  batch_percentiles();

  const char *anomalies[4];
  int nanom = 0;
  char a1[256], a2[400], a3[256];
  if (created != submitted) {
    snprintf(a1, sizeof a1, "JOB_CREATED callbacks %ld != jobs submitted by run_tasks %ld", created,
             submitted);
    anomalies[nanom++] = a1;
  }
  if (!error) {
    char serr[400] = "";
    long total = admin_status_total(serr, sizeof serr);
    if (total < 0) {
      snprintf(a2, sizeof a2, "%s", serr);
      anomalies[nanom++] = a2;
    } else {
      fig("status_total", (double)total);
      if (total != created) {
        snprintf(a3, sizeof a3, "admin status shows %ld jobs for %s, expected %ld", total,
                 o.function, created);
        anomalies[nanom++] = a3;
      }
    }
  }
  emit(error, anomalies, nanom, now_s() - t_start_prog);
  free(payload);
  free(workers);
  return error ? 1 : 0;
}
