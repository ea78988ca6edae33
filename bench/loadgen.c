/*
 * A tiny epoll load generator that speaks the eLock protocol, for the
 * bench's server-vs-server section (bench/native.ts builds it with the
 * machine's cc and runs it). One thread, one outstanding command per
 * connection (like a real client: nothing is pipelined).
 *
 *   loadgen pairs HOST PORT CONNECTIONS WARMUP_MS RUN_MS PREFIX
 *     each connection loops `lock PREFIX-i` / `unlock PREFIX-i` on a key of
 *     its own; every reply counts as one op.
 *   loadgen hot HOST PORT CONNECTIONS WARMUP_MS RUN_MS PREFIX
 *     every connection loops `lock PREFIX 30` / `unlock PREFIX` on the same
 *     key, so all but one wait; counts grants (`200` replies to a lock) and
 *     times each hand-off (an unlock sent -> the next grant received).
 *
 * Every connection sends `set_timeout 0` first, so that what it holds when
 * it is closed is released at once. Counters and latencies are reset after
 * the warm-up. Prints one JSON line on stdout; exits 1 with a message on
 * stderr when a server refuses, closes or answers unexpectedly.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 64 linear sub-buckets per power of two of nanoseconds (1.6 % wide). */
#define BUCKETS (64 * 40)

typedef struct {
  uint64_t counts[BUCKETS];
  uint64_t total;
} histogram;

static int bucket_of(uint64_t ns) {
  if (ns < 128) return (int)ns;
  int e = 63 - __builtin_clzll(ns);
  int idx = (e - 5) * 64 + (int)((ns >> (e - 6)) & 63);
  return idx < BUCKETS ? idx : BUCKETS - 1;
}

static uint64_t value_of(int idx) {
  if (idx < 128) return (uint64_t)idx;
  int e = idx / 64 + 5;
  return (uint64_t)(64 + idx % 64) << (e - 6);
}

static void record(histogram *h, uint64_t ns) {
  h->counts[bucket_of(ns)]++;
  h->total++;
}

/* The latency at percentile p (0-100), in ms (the middle of its bucket). */
static double percentile_ms(const histogram *h, double p) {
  if (h->total == 0) return 0;
  uint64_t rank = (uint64_t)((p / 100.0) * (double)(h->total - 1)) + 1, seen = 0;
  for (int i = 0; i < BUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      double lo = (double)value_of(i), hi = (double)value_of(i + 1);
      return (lo + hi) / 2 / 1e6;
    }
  }
  return 0;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, errno ? strerror(errno) : "failed");
  exit(1);
}

enum step { SET_TIMEOUT, LOCK, UNLOCK };

typedef struct {
  int fd;
  enum step step;
  uint64_t sent_at;
  char lock_cmd[160], unlock_cmd[160];
  int lock_len, unlock_len;
  /* The first bytes of the reply line being read. */
  char head[4];
  int head_len;
} connection;

static void send_all(connection *c, const char *bytes, int len) {
  while (len > 0) {
    ssize_t n = write(c->fd, bytes, (size_t)len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        /* A command line into an empty socket buffer: only a stalled server gets here. */
        struct timespec pause = {0, 100000};
        nanosleep(&pause, NULL);
        continue;
      }
      die("write");
    }
    bytes += n;
    len -= (int)n;
  }
}

static void send_step(connection *c, uint64_t t) {
  c->sent_at = t;
  if (c->step == LOCK) send_all(c, c->lock_cmd, c->lock_len);
  else if (c->step == UNLOCK) send_all(c, c->unlock_cmd, c->unlock_len);
  else send_all(c, "set_timeout 0\n", 14);
}

int main(int argc, char **argv) {
  if (argc != 8) {
    fprintf(stderr, "usage: loadgen pairs|hot HOST PORT CONNECTIONS WARMUP_MS RUN_MS PREFIX\n");
    return 2;
  }
  int hot = strcmp(argv[1], "hot") == 0;
  if (!hot && strcmp(argv[1], "pairs") != 0) {
    fprintf(stderr, "loadgen: mode must be pairs or hot\n");
    return 2;
  }
  const char *host = argv[2];
  int port = atoi(argv[3]), count = atoi(argv[4]);
  uint64_t warmup = (uint64_t)atol(argv[5]) * 1000000u, run = (uint64_t)atol(argv[6]) * 1000000u;
  const char *prefix = argv[7];
  if (count < 1 || port < 1 || strlen(prefix) > 100) {
    fprintf(stderr, "loadgen: bad arguments\n");
    return 2;
  }

  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "loadgen: HOST must be an IPv4 address\n");
    return 2;
  }
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  connection *conns = calloc((size_t)count, sizeof(connection));
  if (conns == NULL) die("calloc");
  for (int i = 0; i < count; i++) {
    connection *c = &conns[i];
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) die("socket");
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
    if (hot) {
      c->lock_len = snprintf(c->lock_cmd, sizeof c->lock_cmd, "lock %s 30\n", prefix);
      c->unlock_len = snprintf(c->unlock_cmd, sizeof c->unlock_cmd, "unlock %s\n", prefix);
    } else {
      c->lock_len = snprintf(c->lock_cmd, sizeof c->lock_cmd, "lock %s-%d\n", prefix, i);
      c->unlock_len = snprintf(c->unlock_cmd, sizeof c->unlock_cmd, "unlock %s-%d\n", prefix, i);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    c->step = SET_TIMEOUT;
    send_step(c, now_ns());
  }

  static histogram latency, handoff;
  uint64_t ops = 0, grants = 0, refused = 0, last_unlock = 0;
  uint64_t start = now_ns(), measuring_from = start + warmup, end = measuring_from + run;
  int measuring = warmup == 0, ready = 0;
  if (measuring) measuring_from = start;
  struct epoll_event events[256];
  char buffer[65536];
  /* After the run: no new lock; wait for the replies still due (a waiting lock is granted and
     unlocked), so that every connection closes with nothing unread (no reset). */
  int stopping = 0, idle = 0;
  uint64_t stopped_at = 0;
  for (;;) {
    uint64_t t = now_ns();
    if (!measuring && ready == count && t >= measuring_from) {
      measuring = 1;
      measuring_from = t;
      end = t + run;
    }
    if (measuring && !stopping && t >= end) {
      stopping = 1;
      stopped_at = t;
    }
    if (stopping && (idle == count || t - stopped_at > 5000000000u)) break;
    int n = epoll_wait(ep, events, 256, 10);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      connection *c = events[e].data.ptr;
      ssize_t got = read(c->fd, buffer, sizeof buffer);
      if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        die("read");
      }
      if (got == 0) {
        errno = 0;
        die("the server closed a connection");
      }
      for (ssize_t k = 0; k < got; k++) {
        char b = buffer[k];
        if (b != '\n') {
          if (c->head_len < 3) c->head[c->head_len++] = b;
          continue;
        }
        /* A whole reply line. */
        int ok = c->head_len == 3 && c->head[0] == '2' && c->head[1] == '0' && c->head[2] == '0';
        c->head_len = 0;
        uint64_t at = now_ns();
        if (c->step == SET_TIMEOUT) {
          if (!ok) {
            errno = 0;
            die("set_timeout 0 was refused");
          }
          ready++;
          c->step = LOCK;
          send_step(c, at);
          continue;
        }
        if (measuring && !stopping) {
          record(&latency, at - c->sent_at);
          ops++;
        }
        if (c->step == LOCK) {
          if (ok) {
            if (measuring && !stopping) {
              grants++;
              if (hot && last_unlock != 0) record(&handoff, at - last_unlock);
            }
            c->step = UNLOCK;
          } else {
            /* Not granted (a wait timed out): try again. */
            if (measuring && !stopping) refused++;
            if (!hot) {
              errno = 0;
              die("a lock on a key of its own was not granted");
            }
          }
        } else {
          if (!ok) {
            errno = 0;
            die("an unlock was refused");
          }
          c->step = LOCK;
        }
        if (stopping && c->step == LOCK) {
          idle++;
          continue;
        }
        send_step(c, at);
        if (hot && c->step == LOCK) last_unlock = c->sent_at;
      }
    }
  }
  double seconds = (double)(stopped_at - measuring_from) / 1e9;
  if (hot) {
    printf("{\"mode\":\"hot\",\"connections\":%d,\"seconds\":%.4f,\"grants\":%llu,"
           "\"grantsPerSec\":%.1f,\"handoffP50Ms\":%.4f,\"handoffP99Ms\":%.4f,"
           "\"opsPerSec\":%.1f,\"p50Ms\":%.4f,\"p99Ms\":%.4f,\"refused\":%llu}\n",
           count, seconds, (unsigned long long)grants, (double)grants / seconds,
           percentile_ms(&handoff, 50), percentile_ms(&handoff, 99), (double)ops / seconds,
           percentile_ms(&latency, 50), percentile_ms(&latency, 99), (unsigned long long)refused);
  } else {
    printf("{\"mode\":\"pairs\",\"connections\":%d,\"seconds\":%.4f,\"ops\":%llu,"
           "\"opsPerSec\":%.1f,\"p50Ms\":%.4f,\"p99Ms\":%.4f}\n",
           count, seconds, (unsigned long long)ops, (double)ops / seconds,
           percentile_ms(&latency, 50), percentile_ms(&latency, 99));
  }
  fflush(stdout);
  for (int i = 0; i < count; i++) close(conns[i].fd);
  return 0;
}
