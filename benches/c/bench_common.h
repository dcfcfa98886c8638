/* What the libgearman bench programs share: clocks, the server's CPU and RSS
 * from /proc (pid <= 0: not measured, -1), and the JSON line's figures.
 * Included by libgearman_submit.c and libgearman_worker.c, each a single
 * translation unit, so these stay static. */
#ifndef GEARBOX_BENCH_COMMON_H
#define GEARBOX_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double self_cpu_s(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0)
    return 0;
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of the server, in seconds; -1 if unknown. */
static double server_cpu_s(long pid) {
  if (pid <= 0)
    return -1;
  char path[64], buf[2048];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  p++;
  /* p starts at field 3 (state); utime is field 14, stime field 15. */
  unsigned long long utime = 0, stime = 0;
  int field = 2;
  char *save = NULL;
  for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    field++;
    if (field == 14)
      utime = strtoull(tok, NULL, 10);
    if (field == 15) {
      stime = strtoull(tok, NULL, 10);
      break;
    }
  }
  long tck = sysconf(_SC_CLK_TCK);
  return (double)(utime + stime) / (double)(tck > 0 ? tck : 100);
}

/* VmRSS of the server in KiB; -1 if unknown. */
static long server_rss_kib(long pid) {
  if (pid <= 0)
    return -1;
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

#define MAX_FIGS 40
static const char *fig_k[MAX_FIGS];
static double fig_v[MAX_FIGS];
static int nfig;
static void fig(const char *k, double v) {
  if (nfig < MAX_FIGS) {
    fig_k[nfig] = k;
    fig_v[nfig++] = v;
  }
}

#endif
