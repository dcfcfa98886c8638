/*
 * libgearman_worker: workers as real libgearman worker code runs them (what
 * PHP's GearmanWorker::addFunction + work(), the C API and the `gearman -w`
 * CLI do): one gearman_worker_st per thread, gearman_worker_add_function(),
 * then gearman_worker_work() in a loop. libgearman sends GRAB_JOB_ALL, writes
 * every packet on its own, and sends PRE_SLEEP after every NO_JOB.
 *
 * --mode drain: first fills the queue with --jobs background jobs through
 * libgearman (--fill-clients threads, each looping add_task_background x
 * --batch then run_tasks, as libgearman_submit does; unique NULL, so
 * libgearman makes a uuid per job), reported as fill_jobs_per_s. Then starts
 * --workers threads, each with its own gearman_worker_st (one connection,
 * opened with an ECHO before the clock starts), which loop
 * gearman_worker_work() until the jobs completed by all of them reach the
 * jobs queued (an atomic counter). The function returns its workload as the
 * result (WORK_COMPLETE carries the job's data). The drain runs from the
 * workers' start to the return of the gearman_worker_work() that completed
 * the last job. Afterwards the admin `status` count of the function must be 0.
 *
 * --mode roundtrip: --workers echo workers as above, and --clients threads
 * that each run gearman_client_do() (a foreground job, one at a time, the
 * unique left empty as libgearman does for foreground jobs) until --jobs are
 * done in total. Reports jobs/s and the exact p50/p99/p99.9 latency of
 * gearman_client_do() over every job (sorted samples).
 *
 * Server CPU is utime+stime from /proc/PID/stat of --server-pid over the
 * measured phase only (the drain, or the round trips); client CPU is this
 * process's getrusage over the same phase (libgearman included; in the round
 * trip it is the clients' and the workers' together).
 *
 * Every loop is bounded: by its job count, by --duration (no new batch, job or
 * grab after it; the figures then cover what was done and say
 * stopped_by_duration=1) and by a hard --deadline after which the program
 * reports the phase and how far it got and exits with status 2.
 * gearman_worker_set_timeout() (--worker-timeout-ms) makes every
 * gearman_worker_work() return within that time when there is nothing to do,
 * so a worker thread never blocks for ever. Only TCP to --server (loopback).
 *
 * Output: one human line and, with --json, one JSON line in loadgen's format
 * (scenario, ok, figures, anomalies, error), read by benches/compare.
 *
 * Build: cc -O2 -o libgearman_worker libgearman_worker.c -lgearman -lpthread
 * (Debian: apt-get install libgearman-dev)
 */
#define _GNU_SOURCE
#include <libgearman-1.0/gearman.h>
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { MODE_DRAIN, MODE_ROUNDTRIP };

struct opts {
  char host[256];
  in_port_t port;
  long server_pid;
  enum mode mode;
  long jobs;
  long workers;
  long clients;
  long fill_clients;
  long batch;
  long payload;
  long worker_timeout_ms;
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
    .mode = MODE_DRAIN,
    .jobs = 50000,
    .workers = 4,
    .clients = 4,
    .fill_clients = 4,
    .batch = 100,
    .payload = 100,
    .worker_timeout_ms = 500,
    .duration_s = 0,
    .deadline_s = 300,
    .json = 0,
    .label = NULL,
};

static const char *scenario_name(void) {
  return o.mode == MODE_DRAIN ? "drain-libgearman" : "roundtrip-libgearman";
}

/* ---------------------------------------------------------------- shared */

static char *payload;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static struct timespec deadline; /* CLOCK_REALTIME, for pthread_cond_timedwait */
static double t_start_prog;
/* What the program is doing, for the deadline's message. */
static const char *volatile phase = "starting";


/* Admin `status` line of the function: total queued, running, available
   workers. Returns 0 when read (a function the server does not list has
   0/0/0), -1 with err set when the reply cannot be read. */
static int admin_status(long out[3], char *err, size_t errlen) {
  out[0] = out[1] = out[2] = 0;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    snprintf(err, errlen, "status: socket: %s", strerror(errno));
    return -1;
  }
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
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
  size_t flen = strlen(o.function);
  for (char *line = buf; line && *line;) {
    char *nl = strchr(line, '\n');
    if (strncmp(line, o.function, flen) == 0 && line[flen] == '\t') {
      char *p = line + flen + 1;
      for (int i = 0; i < 3; i++)
        out[i] = strtol(p, &p, 10);
      break;
    }
    line = nl ? nl + 1 : NULL;
  }
  int rc = 0;
  if (!(strcmp(buf, ".\n") == 0 || strstr(buf, "\n.\n"))) {
    snprintf(err, errlen, "status: reply did not end with \".\" (%zu bytes)", len);
    rc = -1;
  }
  free(buf);
  return rc;
}

#define MAX_ANOM 8
static char anom[MAX_ANOM][512];
static int nanom;
static void anomaly(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void anomaly(const char *fmt, ...) {
  if (nanom >= MAX_ANOM)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(anom[nanom++], sizeof anom[0], fmt, ap);
  va_end(ap);
}

static void emit(const char *error) {
  char server[300];
  snprintf(server, sizeof server, "%s:%u", o.host, (unsigned)o.port);
  double wall_s = now_s() - t_start_prog;
  printf("%s on %s", scenario_name(), server);
  if (o.label)
    printf(" [%s]", o.label);
  if (o.mode == MODE_DRAIN)
    printf(" (function=%s jobs=%ld workers=%ld fill_clients=%ld batch=%ld payload=%ld):", o.function,
           o.jobs, o.workers, o.fill_clients, o.batch, o.payload);
  else
    printf(" (function=%s jobs=%ld clients=%ld workers=%ld payload=%ld):", o.function, o.jobs,
           o.clients, o.workers, o.payload);
  for (int i = 0; i < nfig; i++)
    printf(fig_v[i] >= 100 || fig_v[i] == (long)fig_v[i] ? " %s=%.0f" : " %s=%.3f", fig_k[i],
           fig_v[i]);
  if (nanom) {
    printf(" ANOMALIES:");
    for (int i = 0; i < nanom; i++)
      printf("%s %s", i ? ";" : "", anom[i]);
  }
  if (error)
    printf(" ERROR: %s", error);
  printf("\n");
  if (!o.json) {
    fflush(stdout);
    return;
  }
  printf("{\"scenario\":\"%s\",\"server\":", scenario_name());
  json_str(stdout, server);
  printf(",\"transport\":\"tcp\"");
  if (o.label) {
    printf(",\"label\":");
    json_str(stdout, o.label);
  }
  printf(",\"ok\":%s,\"wall_s\":%.3f,\"params\":{\"function\":", error ? "false" : "true", wall_s);
  json_str(stdout, o.function);
  printf(",\"jobs\":%ld,\"workers\":%ld,\"payload\":%ld,\"worker_timeout_ms\":%ld", o.jobs,
         o.workers, o.payload, o.worker_timeout_ms);
  if (o.mode == MODE_DRAIN)
    printf(",\"fill_clients\":%ld,\"batch\":%ld,\"unique\":\"libgearman-uuid\"", o.fill_clients,
           o.batch);
  else
    printf(",\"clients\":%ld,\"unique\":\"none\"", o.clients);
  printf(",\"libgearman\":");
  json_str(stdout, gearman_version());
  printf("},\"figures\":{");
  for (int i = 0; i < nfig; i++)
    printf("%s\"%s\":%.3f", i ? "," : "", fig_k[i], fig_v[i]);
  printf("},\"series\":{},\"anomalies\":[");
  for (int i = 0; i < nanom; i++) {
    if (i)
      putchar(',');
    json_str(stdout, anom[i]);
  }
  printf("],\"error\":");
  if (error)
    json_str(stdout, error);
  else
    printf("null");
  printf("}\n");
  fflush(stdout);
}

/* The hard deadline: report where the run was and leave without joining the
   threads, which may be stuck inside libgearman. */
static void deadline_hit(const char *detail) {
  char err[800];
  snprintf(err, sizeof err, "deadline of %ld s hit while %s: %s", o.deadline_s, phase, detail);
  emit(err);
  _exit(2);
}

/* Waits until *counter >= target under mu, or the deadline; returns 0 on the
   deadline. Called with mu held. */
static int wait_count(const long *counter, long target) {
  while (*counter < target)
    if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
      return *counter >= target;
  return 1;
}

static int past(const struct timespec *t) {
  struct timespec n;
  clock_gettime(CLOCK_MONOTONIC, &n);
  return n.tv_sec > t->tv_sec || (n.tv_sec == t->tv_sec && n.tv_nsec >= t->tv_nsec);
}

/* CLOCK_MONOTONIC now + --duration (far away when there is none). */
static struct timespec duration_end(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  if (o.duration_s > 0) {
    long ns = t.tv_nsec + (long)((o.duration_s - (long)o.duration_s) * 1e9);
    t.tv_sec += (long)o.duration_s + ns / 1000000000L;
    t.tv_nsec = ns % 1000000000L;
  } else {
    t.tv_sec += 1L << 40;
  }
  return t;
}

static void cpu_figures(double cpu0, double cpu1, double self0, double self1, long jobs) {
  if (cpu0 >= 0 && cpu1 >= 0) {
    double cpu = cpu1 - cpu0;
    fig("server_cpu_s", cpu);
    if (cpu > 0)
      fig("jobs_per_server_cpu_s", (double)jobs / cpu);
    if (jobs > 0)
      fig("server_cpu_us_per_job", cpu * 1e6 / (double)jobs);
  }
  fig("client_cpu_s", self1 - self0);
  if (jobs > 0)
    fig("client_cpu_us_per_job", (self1 - self0) * 1e6 / (double)jobs);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ fill */

struct filler {
  pthread_t thread;
  long index;
  long quota;
  long submitted;
  atomic_long created;
  int stopped_by_duration;
  char error[512];
};

static struct filler *fillers;
static long fill_ready, fill_finished;
static int fill_go;
static struct timespec fill_stop_at;

static gearman_return_t on_created(gearman_task_st *task) {
  struct filler *f = gearman_task_context(task);
  if (f)
    atomic_fetch_add_explicit(&f->created, 1, memory_order_relaxed);
  return GEARMAN_SUCCESS;
}

static void bump(long *counter) {
  pthread_mutex_lock(&mu);
  (*counter)++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void wait_go(const int *flag) {
  pthread_mutex_lock(&mu);
  while (!*flag)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void *run_filler(void *arg) {
  struct filler *f = arg;
  gearman_client_st *c = gearman_client_create(NULL);
  gearman_return_t ret = GEARMAN_SUCCESS;
  if (!c)
    snprintf(f->error, sizeof f->error, "fill client %ld: gearman_client_create failed", f->index);
  else {
    gearman_client_add_options(c, GEARMAN_CLIENT_FREE_TASKS);
    gearman_client_set_created_fn(c, on_created);
    gearman_client_set_timeout(c, 30000);
    ret = gearman_client_add_server(c, o.host, o.port);
    if (ret == GEARMAN_SUCCESS)
      ret = gearman_client_echo(c, "x", 1); /* connect before the clock starts */
    if (ret != GEARMAN_SUCCESS)
      snprintf(f->error, sizeof f->error, "fill client %ld: connect/echo: %s", f->index,
               gearman_client_error(c));
  }
  bump(&fill_ready);
  wait_go(&fill_go);
  while (!f->error[0] && f->submitted < f->quota) {
    if (past(&fill_stop_at)) {
      f->stopped_by_duration = 1;
      break;
    }
    long n = f->quota - f->submitted;
    if (n > o.batch)
      n = o.batch;
    for (long i = 0; i < n; i++) {
      gearman_task_st *t = gearman_client_add_task_background(
          c, NULL, f, o.function, NULL, payload, (size_t)o.payload, &ret);
      if (!t || ret != GEARMAN_SUCCESS) {
        snprintf(f->error, sizeof f->error, "fill client %ld: add_task_background after %ld jobs: %s",
                 f->index, f->submitted, gearman_client_error(c));
        break;
      }
    }
    if (f->error[0])
      break;
    ret = gearman_client_run_tasks(c);
    if (ret != GEARMAN_SUCCESS) {
      snprintf(f->error, sizeof f->error, "fill client %ld: run_tasks after %ld jobs: %s (%s)",
               f->index, f->submitted, gearman_strerror(ret), gearman_client_error(c));
      break;
    }
    f->submitted += n;
  }
  if (c)
    gearman_client_free(c);
  bump(&fill_finished);
  return NULL;
}

/* Queues o.jobs background jobs; returns the jobs created, or -1 after an
   error (emitted). */
static long fill(void) {
  phase = "filling the queue (connecting)";
  fillers = calloc((size_t)o.fill_clients, sizeof *fillers);
  for (long i = 0; i < o.fill_clients; i++) {
    fillers[i].index = i;
    fillers[i].quota = o.jobs / o.fill_clients + (i < o.jobs % o.fill_clients ? 1 : 0);
    atomic_init(&fillers[i].created, 0);
    if (pthread_create(&fillers[i].thread, NULL, run_filler, &fillers[i]) != 0) {
      emit("pthread_create failed (fill)");
      exit(1);
    }
  }
  pthread_mutex_lock(&mu);
  if (!wait_count(&fill_ready, o.fill_clients)) {
    pthread_mutex_unlock(&mu);
    deadline_hit("fill clients not all connected");
  }
  double cpu0 = server_cpu_s(o.server_pid), t0 = now_s();
  fill_stop_at = duration_end();
  phase = "filling the queue";
  fill_go = 1;
  pthread_cond_broadcast(&cv);
  int ok = wait_count(&fill_finished, o.fill_clients);
  pthread_mutex_unlock(&mu);
  double t1 = now_s(), cpu1 = server_cpu_s(o.server_pid);
  long created = 0, submitted = 0, stopped = 0;
  for (long i = 0; i < o.fill_clients; i++) {
    created += atomic_load(&fillers[i].created);
    submitted += fillers[i].submitted;
    stopped |= fillers[i].stopped_by_duration;
  }
  if (!ok) {
    char d[200];
    snprintf(d, sizeof d, "%ld of %ld jobs created", created, o.jobs);
    deadline_hit(d);
  }
  for (long i = 0; i < o.fill_clients; i++)
    pthread_join(fillers[i].thread, NULL);
  fig("fill_jobs_per_s", t1 > t0 ? (double)created / (t1 - t0) : 0);
  if (cpu0 >= 0 && cpu1 > cpu0)
    fig("fill_jobs_per_server_cpu_s", (double)created / (cpu1 - cpu0));
  fig("jobs_queued", (double)created);
  if (stopped)
    fig("fill_stopped_by_duration", 1);
  long rss = server_rss_kib(o.server_pid);
  if (rss >= 0)
    fig("server_rss_queued_kib", (double)rss);
  for (long i = 0; i < o.fill_clients; i++)
    if (fillers[i].error[0]) {
      emit(fillers[i].error);
      exit(1);
    }
  if (created != submitted)
    anomaly("fill: JOB_CREATED callbacks %ld != jobs submitted by run_tasks %ld", created,
            submitted);
  return created;
}

/* --------------------------------------------------------------- workers */

struct wthread {
  pthread_t thread;
  long index;
  long done; /* gearman_worker_work() calls that completed a job */
  long timeouts;
  int stopped_by_duration;
  char error[512];
};

static struct wthread *wts;
static long w_ready, w_finished;
static int w_go;
static atomic_int w_stop;
static struct timespec w_stop_at;
/* Drain: jobs completed by all workers, the goal, and when it was reached. */
static atomic_long completed;
static atomic_long executed; /* calls of the worker function */
static long drain_target = -1; /* -1: no goal (round trip: until w_stop) */
static int drain_complete;
static double drain_end_t;

/* The worker function: returns the job's workload as its result (libgearman
   frees it and sends it in WORK_COMPLETE). */
static void *echo_fn(gearman_job_st *job, void *context, size_t *result_size,
                     gearman_return_t *ret_ptr) {
  (void)context;
  size_t n = gearman_job_workload_size(job);
  void *r = malloc(n ? n : 1);
  if (!r) {
    *ret_ptr = GEARMAN_WORK_FAIL;
    *result_size = 0;
    return NULL;
  }
  if (n)
    memcpy(r, gearman_job_workload(job), n);
  *result_size = n;
  *ret_ptr = GEARMAN_SUCCESS;
  atomic_fetch_add_explicit(&executed, 1, memory_order_relaxed);
  return r;
}

static void *run_worker(void *arg) {
  struct wthread *me = arg;
  gearman_worker_st *w = gearman_worker_create(NULL);
  gearman_return_t ret = GEARMAN_SUCCESS;
  if (!w)
    snprintf(me->error, sizeof me->error, "worker %ld: gearman_worker_create failed", me->index);
  else {
    /* Also sets GEARMAN_WORKER_TIMEOUT_RETURN: work() returns GEARMAN_TIMEOUT
       after this long with nothing to do. */
    gearman_worker_set_timeout(w, (int)o.worker_timeout_ms);
    ret = gearman_worker_add_server(w, o.host, o.port);
    if (ret == GEARMAN_SUCCESS)
      ret = gearman_worker_add_function(w, o.function, 0, echo_fn, NULL);
    if (ret == GEARMAN_SUCCESS)
      ret = gearman_worker_echo(w, "x", 1); /* connect before the clock starts */
    if (ret != GEARMAN_SUCCESS)
      snprintf(me->error, sizeof me->error, "worker %ld: setup/echo: %s", me->index,
               gearman_worker_error(w));
  }
  bump(&w_ready);
  wait_go(&w_go);
  while (!me->error[0] && !atomic_load(&w_stop)) {
    if (drain_target >= 0 && atomic_load(&completed) >= drain_target)
      break;
    if (past(&w_stop_at)) {
      me->stopped_by_duration = 1;
      break;
    }
    ret = gearman_worker_work(w);
    if (ret == GEARMAN_SUCCESS) {
      me->done++;
      long n = atomic_fetch_add(&completed, 1) + 1;
      if (n == drain_target) {
        double t = now_s();
        pthread_mutex_lock(&mu);
        drain_end_t = t;
        drain_complete = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
      }
    } else if (ret == GEARMAN_TIMEOUT || ret == GEARMAN_NO_JOBS || ret == GEARMAN_IO_WAIT) {
      me->timeouts++;
    } else {
      snprintf(me->error, sizeof me->error, "worker %ld: gearman_worker_work after %ld jobs: %s (%s)",
               me->index, me->done, gearman_strerror(ret), gearman_worker_error(w));
    }
  }
  if (w)
    gearman_worker_free(w);
  bump(&w_finished);
  return NULL;
}

static void start_workers(void) {
  phase = "starting the workers";
  wts = calloc((size_t)o.workers, sizeof *wts);
  for (long i = 0; i < o.workers; i++) {
    wts[i].index = i;
    if (pthread_create(&wts[i].thread, NULL, run_worker, &wts[i]) != 0) {
      emit("pthread_create failed (worker)");
      exit(1);
    }
  }
  pthread_mutex_lock(&mu);
  if (!wait_count(&w_ready, o.workers)) {
    pthread_mutex_unlock(&mu);
    deadline_hit("workers not all connected");
  }
  pthread_mutex_unlock(&mu);
}

/* Stops the workers and joins them; each leaves within --worker-timeout-ms. */
static void stop_workers(void) {
  atomic_store(&w_stop, 1);
  phase = "stopping the workers";
  pthread_mutex_lock(&mu);
  int ok = wait_count(&w_finished, o.workers);
  pthread_mutex_unlock(&mu);
  if (!ok) {
    char d[200];
    snprintf(d, sizeof d, "%ld of %ld worker threads returned", w_finished, o.workers);
    deadline_hit(d);
  }
  for (long i = 0; i < o.workers; i++)
    pthread_join(wts[i].thread, NULL);
}

static const char *worker_figures(void) {
  long min = -1, max = 0, timeouts = 0, stopped = 0;
  const char *error = NULL;
  for (long i = 0; i < o.workers; i++) {
    if (min < 0 || wts[i].done < min)
      min = wts[i].done;
    if (wts[i].done > max)
      max = wts[i].done;
    timeouts += wts[i].timeouts;
    stopped |= wts[i].stopped_by_duration;
    if (!error && wts[i].error[0])
      error = wts[i].error;
  }
  fig("jobs_executed", (double)atomic_load(&executed));
  fig("jobs_per_worker_min", (double)min);
  fig("jobs_per_worker_max", (double)max);
  fig("worker_timeouts", (double)timeouts);
  if (stopped)
    fig("stopped_by_duration", 1);
  return error;
}

/* ----------------------------------------------------------------- drain */

static int run_drain(void) {
  long queued = fill();
  char serr[400] = "";
  long st[3];
  if (admin_status(st, serr, sizeof serr) != 0)
    anomaly("before the drain: %s", serr);
  else if (st[0] != queued)
    anomaly("admin status shows %ld jobs for %s before the drain, expected %ld", st[0], o.function,
            queued);
  drain_target = queued;
  start_workers();
  pthread_mutex_lock(&mu);
  double cpu0 = server_cpu_s(o.server_pid), self0 = self_cpu_s(), t0 = now_s();
  w_stop_at = duration_end();
  phase = "draining";
  w_go = 1;
  pthread_cond_broadcast(&cv);
  int timed_out = 0;
  while (!drain_complete && w_finished < o.workers)
    if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT) {
      timed_out = !drain_complete && w_finished < o.workers;
      break;
    }
  double t1 = drain_complete ? drain_end_t : now_s();
  pthread_mutex_unlock(&mu);
  double cpu1 = server_cpu_s(o.server_pid), self1 = self_cpu_s();
  long done = atomic_load(&completed);
  if (timed_out) {
    char d[200];
    snprintf(d, sizeof d, "%ld of %ld jobs completed by the workers", done, queued);
    fig("jobs_completed", (double)done);
    deadline_hit(d);
  }
  stop_workers();
  double wall = t1 - t0;
  fig("drain_jobs_per_s", wall > 0 ? (double)done / wall : 0);
  fig("drain_elapsed_s", wall);
  fig("jobs_completed", (double)done);
  cpu_figures(cpu0, cpu1, self0, self1, done);
  const char *error = worker_figures();
  if (atomic_load(&executed) != done)
    anomaly("worker function ran %ld times, gearman_worker_work completed %ld jobs",
            (long)atomic_load(&executed), done);
  if (!error) {
    if (admin_status(st, serr, sizeof serr) != 0)
      anomaly("after the drain: %s", serr);
    else {
      fig("status_after_drain", (double)st[0]);
      if (st[0] != queued - done || st[1] != 0)
        anomaly("admin status shows %ld queued, %ld running for %s after the drain, expected %ld "
                "and 0",
                st[0], st[1], o.function, queued - done);
    }
  }
  emit(error);
  return error ? 1 : 0;
}

/* ------------------------------------------------------------- roundtrip */

struct cthread {
  pthread_t thread;
  long index;
  long quota;
  long done;
  double *lat_s;
  int stopped_by_duration;
  char error[512];
};

static struct cthread *cts;
static long c_ready, c_finished;
static int c_go;
static struct timespec c_stop_at;

static void *run_client(void *arg) {
  struct cthread *me = arg;
  gearman_client_st *c = gearman_client_create(NULL);
  gearman_return_t ret = GEARMAN_SUCCESS;
  if (!c)
    snprintf(me->error, sizeof me->error, "client %ld: gearman_client_create failed", me->index);
  else {
    gearman_client_set_timeout(c, 30000);
    ret = gearman_client_add_server(c, o.host, o.port);
    if (ret == GEARMAN_SUCCESS)
      ret = gearman_client_echo(c, "x", 1);
    if (ret != GEARMAN_SUCCESS)
      snprintf(me->error, sizeof me->error, "client %ld: connect/echo: %s", me->index,
               gearman_client_error(c));
  }
  bump(&c_ready);
  wait_go(&c_go);
  while (!me->error[0] && me->done < me->quota) {
    if (past(&c_stop_at)) {
      me->stopped_by_duration = 1;
      break;
    }
    size_t size = 0;
    double t = now_s();
    void *r = gearman_client_do(c, o.function, NULL, payload, (size_t)o.payload, &size, &ret);
    double dt = now_s() - t;
    if (ret != GEARMAN_SUCCESS) {
      snprintf(me->error, sizeof me->error, "client %ld: gearman_client_do after %ld jobs: %s (%s)",
               me->index, me->done, gearman_strerror(ret), gearman_client_error(c));
      free(r);
      break;
    }
    if (size != (size_t)o.payload || (size && (!r || memcmp(r, payload, size) != 0))) {
      snprintf(me->error, sizeof me->error,
               "client %ld: job %ld: WORK_COMPLETE data (%zu bytes) is not the job's data (%ld bytes)",
               me->index, me->done, size, o.payload);
      free(r);
      break;
    }
    free(r);
    me->lat_s[me->done++] = dt;
  }
  if (c)
    gearman_client_free(c);
  bump(&c_finished);
  return NULL;
}

static int run_roundtrip(void) {
  start_workers();
  pthread_mutex_lock(&mu);
  /* The workers run until the clients are done (w_stop), not for
     --duration: the clients' last jobs must still be served. */
  w_go = 1; /* the workers send CAN_DO, GRAB_JOB_ALL, NO_JOB, PRE_SLEEP and sleep */
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  /* Wait until the server lists every worker for the function, so no job
     waits for a CAN_DO. */
  phase = "waiting for the workers' CAN_DO (admin status)";
  long st[3] = {0, 0, 0};
  char serr[400] = "";
  for (int i = 0;; i++) {
    if (admin_status(st, serr, sizeof serr) != 0) {
      emit(serr);
      _exit(1);
    }
    if (st[2] >= o.workers)
      break;
    struct timespec n;
    clock_gettime(CLOCK_REALTIME, &n);
    if (n.tv_sec >= deadline.tv_sec || i >= 1000) {
      char d[200];
      snprintf(d, sizeof d, "admin status lists %ld of %ld workers for the function", st[2],
               o.workers);
      deadline_hit(d);
    }
    usleep(10000);
  }

  phase = "round trips (connecting the clients)";
  cts = calloc((size_t)o.clients, sizeof *cts);
  for (long i = 0; i < o.clients; i++) {
    cts[i].index = i;
    cts[i].quota = o.jobs / o.clients + (i < o.jobs % o.clients ? 1 : 0);
    cts[i].lat_s = calloc((size_t)cts[i].quota + 1, sizeof(double));
    if (!cts[i].lat_s || pthread_create(&cts[i].thread, NULL, run_client, &cts[i]) != 0) {
      emit("out of memory or pthread_create failed (client)");
      exit(1);
    }
  }
  pthread_mutex_lock(&mu);
  if (!wait_count(&c_ready, o.clients)) {
    pthread_mutex_unlock(&mu);
    deadline_hit("clients not all connected");
  }
  double cpu0 = server_cpu_s(o.server_pid), self0 = self_cpu_s(), t0 = now_s();
  c_stop_at = duration_end();
  phase = "round trips";
  c_go = 1;
  pthread_cond_broadcast(&cv);
  int ok = wait_count(&c_finished, o.clients);
  pthread_mutex_unlock(&mu);
  double t1 = now_s(), cpu1 = server_cpu_s(o.server_pid), self1 = self_cpu_s();
  long done = 0, stopped = 0;
  for (long i = 0; i < o.clients; i++) {
    done += cts[i].done;
    stopped |= cts[i].stopped_by_duration;
  }
  if (!ok) {
    char d[200];
    snprintf(d, sizeof d, "%ld of %ld jobs done (clients stuck in gearman_client_do)", done,
             o.jobs);
    fig("jobs_done", (double)done);
    deadline_hit(d);
  }
  for (long i = 0; i < o.clients; i++)
    pthread_join(cts[i].thread, NULL);
  stop_workers();

  double wall = t1 - t0;
  fig("jobs_per_s", wall > 0 ? (double)done / wall : 0);
  fig("jobs_done", (double)done);
  fig("measured_s", wall);
  if (stopped)
    fig("clients_stopped_by_duration", 1);
  if (done > 0) {
    double *all = malloc(sizeof(double) * (size_t)done), sum = 0;
    long k = 0;
    for (long i = 0; i < o.clients; i++)
      for (long j = 0; j < cts[i].done; j++) {
        all[k++] = cts[i].lat_s[j];
        sum += cts[i].lat_s[j];
      }
    qsort(all, (size_t)done, sizeof(double), cmp_double);
    const char *names[] = {"p50_us", "p99_us", "p999_us"};
    const double ranks[] = {0.50, 0.99, 0.999};
    for (int i = 0; i < 3; i++) {
      long at = (long)(ranks[i] * (double)done + 0.999999) - 1; /* nearest rank */
      if (at < 0)
        at = 0;
      if (at >= done)
        at = done - 1;
      fig(names[i], all[at] * 1e6);
    }
    fig("mean_us", sum / (double)done * 1e6);
    fig("max_us", all[done - 1] * 1e6);
    free(all);
  }
  cpu_figures(cpu0, cpu1, self0, self1, done);
  const char *werror = worker_figures();
  const char *error = NULL;
  for (long i = 0; i < o.clients && !error; i++)
    if (cts[i].error[0])
      error = cts[i].error;
  if (!error)
    error = werror;
  if (atomic_load(&executed) != done)
    anomaly("workers executed %ld jobs, clients got %ld WORK_COMPLETE", (long)atomic_load(&executed),
            done);
  if (!error) {
    if (admin_status(st, serr, sizeof serr) != 0)
      anomaly("after the round trips: %s", serr);
    else if (st[0] != 0 || st[1] != 0)
      anomaly("admin status shows %ld queued, %ld running for %s after the round trips", st[0],
              st[1], o.function);
  }
  emit(error);
  return error ? 1 : 0;
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: libgearman_worker --mode drain|roundtrip [--server HOST:PORT] [--jobs N]\n"
          "         [--workers W] [--clients C] [--fill-clients F] [--batch B] [--payload BYTES]\n"
          "         [--worker-timeout-ms MS] [--duration SECS] [--deadline SECS]\n"
          "         [--server-pid PID] [--function NAME] [--label TEXT] [--json]\n"
          "Workers through libgearman (one gearman_worker_st per thread, gearman_worker_work()).\n"
          "drain: queue N background jobs through libgearman (F clients, add_task_background x B\n"
          "  + run_tasks), then W workers drain them; reports drain_jobs_per_s and server CPU.\n"
          "roundtrip: C clients each gearman_client_do() one job at a time against W echo\n"
          "  workers, N jobs in total; reports jobs_per_s and exact p50/p99/p99.9 latency.\n"
          "Defaults: 127.0.0.1:4730, 50000 jobs, 4 workers, 4 clients, 4 fill clients, batch 100,\n"
          "100-byte payload, worker timeout 500 ms, no duration limit, deadline 300 s.\n"
          "Exit status 0 done, 1 failed, 2 deadline hit.\n");
}

static long num_arg(const char *name, const char *v) {
  char *end = NULL;
  errno = 0;
  long x = strtol(v ? v : "", &end, 10);
  if (!v || errno || *end || x < 0) {
    fprintf(stderr, "libgearman_worker: bad value for %s: %s\n", name, v ? v : "(missing)");
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
        fprintf(stderr, "libgearman_worker: --server wants HOST:PORT (TCP), got %s\n", v);
        return 1;
      }
      memcpy(o.host, v, (size_t)(colon - v));
      o.host[colon - v] = 0;
      o.port = (in_port_t)num_arg(a, colon + 1);
    } else if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "drain"))
        o.mode = MODE_DRAIN;
      else if (!strcmp(v, "roundtrip"))
        o.mode = MODE_ROUNDTRIP;
      else {
        fprintf(stderr, "libgearman_worker: --mode wants drain or roundtrip, got %s\n", v);
        return 1;
      }
    } else if (!strcmp(a, "--jobs"))
      o.jobs = num_arg(a, v);
    else if (!strcmp(a, "--workers"))
      o.workers = num_arg(a, v);
    else if (!strcmp(a, "--clients"))
      o.clients = num_arg(a, v);
    else if (!strcmp(a, "--fill-clients"))
      o.fill_clients = num_arg(a, v);
    else if (!strcmp(a, "--batch"))
      o.batch = num_arg(a, v);
    else if (!strcmp(a, "--payload"))
      o.payload = num_arg(a, v);
    else if (!strcmp(a, "--worker-timeout-ms"))
      o.worker_timeout_ms = num_arg(a, v);
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
      fprintf(stderr, "libgearman_worker: unknown option %s\n", a);
      usage(stderr);
      return 1;
    }
  }
  if (o.jobs < 1 || o.workers < 1 || o.clients < 1 || o.fill_clients < 1 || o.batch < 1 ||
      o.deadline_s < 1 || o.worker_timeout_ms < 1) {
    fprintf(stderr, "libgearman_worker: --jobs, --workers, --clients, --fill-clients, --batch, "
                    "--worker-timeout-ms and --deadline must be >= 1\n");
    return 1;
  }
  if (!o.function[0]) {
    unsigned r;
    FILE *u = fopen("/dev/urandom", "r");
    if (!u || fread(&r, sizeof r, 1, u) != 1)
      r = (unsigned)getpid() ^ (unsigned)time(NULL);
    if (u)
      fclose(u);
    snprintf(o.function, sizeof o.function, "bench-%s-%08x", scenario_name(), r);
  }
  payload = malloc((size_t)o.payload + 1);
  for (long i = 0; i < o.payload; i++)
    payload[i] = (char)('a' + i % 26);
  atomic_init(&completed, 0);
  atomic_init(&executed, 0);
  atomic_init(&w_stop, 0);
  t_start_prog = now_s();
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += o.deadline_s;
  clock_gettime(CLOCK_MONOTONIC, &w_stop_at);
  w_stop_at.tv_sec += 1L << 40; /* no --duration for the workers until run_drain sets it */
  int rc = o.mode == MODE_DRAIN ? run_drain() : run_roundtrip();
  fflush(stdout);
  return rc;
}
