/*
 * A tiny epoll load generator that speaks the eLock protocol, for the
 * bench's server-vs-server section (bench/native.ts builds it with the
 * machine's cc and runs it). One thread, one outstanding command per
 * connection (like a real client: nothing is pipelined).
 *
 *   loadgen MODE CONNECTIONS WARMUP_MS ROUND_MS ROUNDS PREFIX HOST:PORT...
 *
 * opens CONNECTIONS connections to each server (IPv4 HOST), sends
 * `set_timeout 0` on each (so that what a connection holds when it closes is
 * released at once), warms each server up for WARMUP_MS, then runs ROUNDS
 * rounds in which each server in turn, the order rotating, is loaded for
 * ROUND_MS while the others' connections are idle; the connections stay
 * open across rounds. MODE:
 *   pairs: each connection loops `lock PREFIX-i` / `unlock PREFIX-i` on a
 *          key of its own; every reply counts as one op;
 *   hot:   every connection loops `lock PREFIX 30` / `unlock PREFIX` on the
 *          same key, so all but one wait: counts grants (`200` replies to a
 *          lock) and times each hand-off (an unlock sent -> the next grant).
 * A round ends by sending no new lock and waiting for the replies still
 * due (a waiting lock is granted, then unlocked), so that no lock is left
 * and nothing is left unread when the connections close (no reset).
 *
 * Prints one JSON line per round and server on stdout; exits 1 with a
 * message on stderr when a server refuses, closes or answers unexpectedly.
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

enum step { IDLE, SET_TIMEOUT, LOCK, UNLOCK };

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

/* One server and its connections, each on an epoll set of its own. */
typedef struct {
  const char *name;
  int ep;
  connection *conns;
} target;

static int count, hot;

static void fail(const target *t, const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", t->name, what);
  exit(1);
}

static void send_all(const target *t, connection *c, const char *bytes, int len) {
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
      fail(t, strerror(errno));
    }
    bytes += n;
    len -= (int)n;
  }
}

static void send_step(const target *t, connection *c, uint64_t at) {
  c->sent_at = at;
  if (c->step == LOCK) send_all(t, c, c->lock_cmd, c->lock_len);
  else if (c->step == UNLOCK) send_all(t, c, c->unlock_cmd, c->unlock_len);
  else if (c->step == SET_TIMEOUT) send_all(t, c, "set_timeout 0\n", 14);
}

typedef struct {
  histogram latency, handoff;
  uint64_t ops, grants, refused;
  double seconds;
} figures;

/*
 * Runs `first` on every connection of `t` and the loop after it for
 * `duration` ns (0: until every connection is idle again), and past it until
 * something was counted, then lets it drain. Figures count only the replies
 * received before the end, over the time to the end.
 */
static void phase(target *t, enum step first, uint64_t duration, figures *f) {
  memset(f, 0, sizeof *f);
  uint64_t start = now_ns(), end = start + duration, stopped_at = start, last_unlock = 0;
  int stopping = duration == 0, idle = 0;
  for (int i = 0; i < count; i++) {
    t->conns[i].step = first;
    send_step(t, &t->conns[i], start);
  }
  struct epoll_event events[256];
  static char buffer[65536];
  while (idle < count) {
    uint64_t now = now_ns();
    /* A round lasts `duration` and until it has counted something (a stalled machine). */
    if (!stopping && now >= end && (hot ? f->handoff.total > 0 : f->ops > 0)) {
      stopping = 1;
      stopped_at = now;
    }
    if (!stopping && now > end + 30000000000u) fail(t, "nothing answered for 30 s");
    if (stopping && duration != 0 && now - stopped_at > 10000000000u) {
      fail(t, "replies still due 10 s after the round");
    }
    int n = epoll_wait(t->ep, events, 256, 10);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(t, strerror(errno));
    }
    for (int e = 0; e < n; e++) {
      connection *c = events[e].data.ptr;
      ssize_t got = read(c->fd, buffer, sizeof buffer);
      if (got < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        fail(t, strerror(errno));
      }
      if (got == 0) fail(t, "the server closed a connection");
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
        int counted = !stopping;
        switch (c->step) {
          case IDLE:
            fail(t, "a reply nothing asked for");
            break;
          case SET_TIMEOUT:
            if (!ok) fail(t, "set_timeout 0 was refused");
            c->step = IDLE;
            break;
          case LOCK:
            if (counted) {
              record(&f->latency, at - c->sent_at);
              f->ops++;
            }
            if (ok) {
              if (counted) {
                f->grants++;
                if (hot && last_unlock != 0) record(&f->handoff, at - last_unlock);
              }
              c->step = UNLOCK;
            } else {
              /* Not granted: only a hot key's wait can time out; then try again. */
              if (!hot) fail(t, "a lock on a key of its own was not granted");
              if (counted) f->refused++;
              if (stopping) c->step = IDLE;
            }
            break;
          case UNLOCK:
            if (counted) {
              record(&f->latency, at - c->sent_at);
              f->ops++;
            }
            if (!ok) fail(t, "an unlock was refused");
            c->step = stopping ? IDLE : LOCK;
            break;
        }
        if (c->step == IDLE) {
          idle++;
          continue;
        }
        send_step(t, c, at);
        if (hot && c->step == LOCK) last_unlock = c->sent_at;
      }
    }
  }
  f->seconds = (double)((duration == 0 ? now_ns() : stopped_at) - start) / 1e9;
}

static void report(const target *t, int index, int round, const figures *f) {
  double s = f->seconds > 0 ? f->seconds : 1e-9;
  printf("{\"target\":%d,\"name\":\"%s\",\"round\":%d,\"mode\":\"%s\",\"connections\":%d,"
         "\"seconds\":%.4f,\"ops\":%llu,\"opsPerSec\":%.1f,\"p50Ms\":%.4f,\"p99Ms\":%.4f",
         index, t->name, round, hot ? "hot" : "pairs", count, f->seconds,
         (unsigned long long)f->ops, (double)f->ops / s, percentile_ms(&f->latency, 50),
         percentile_ms(&f->latency, 99));
  if (hot) {
    printf(",\"grants\":%llu,\"grantsPerSec\":%.1f,\"handoffP50Ms\":%.4f,\"handoffP99Ms\":%.4f,"
           "\"refused\":%llu",
           (unsigned long long)f->grants, (double)f->grants / s, percentile_ms(&f->handoff, 50),
           percentile_ms(&f->handoff, 99), (unsigned long long)f->refused);
  }
  printf("}\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc < 8) {
    fprintf(stderr,
            "usage: loadgen pairs|hot CONNECTIONS WARMUP_MS ROUND_MS ROUNDS PREFIX HOST:PORT...\n");
    return 2;
  }
  hot = strcmp(argv[1], "hot") == 0;
  if (!hot && strcmp(argv[1], "pairs") != 0) {
    fprintf(stderr, "loadgen: MODE must be pairs or hot\n");
    return 2;
  }
  count = atoi(argv[2]);
  uint64_t warmup = (uint64_t)atol(argv[3]) * 1000000u, round_ns = (uint64_t)atol(argv[4]) * 1000000u;
  int rounds = atoi(argv[5]);
  const char *prefix = argv[6];
  int ntargets = argc - 7;
  if (count < 1 || rounds < 0 || round_ns == 0 || strlen(prefix) > 100) {
    fprintf(stderr, "loadgen: bad arguments\n");
    return 2;
  }
  target *targets = calloc((size_t)ntargets, sizeof(target));
  if (targets == NULL) die("calloc");
  for (int t = 0; t < ntargets; t++) {
    target *tg = &targets[t];
    tg->name = argv[7 + t];
    char host[64];
    const char *colon = strrchr(tg->name, ':');
    if (colon == NULL || colon - tg->name >= (long)sizeof host || strchr(tg->name, '"')) {
      fprintf(stderr, "loadgen: %s is not HOST:PORT\n", tg->name);
      return 2;
    }
    memcpy(host, tg->name, (size_t)(colon - tg->name));
    host[colon - tg->name] = 0;
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
      fprintf(stderr, "loadgen: %s: HOST must be an IPv4 address\n", tg->name);
      return 2;
    }
    tg->ep = epoll_create1(0);
    if (tg->ep < 0) die("epoll_create1");
    tg->conns = calloc((size_t)count, sizeof(connection));
    if (tg->conns == NULL) die("calloc");
    for (int i = 0; i < count; i++) {
      connection *c = &tg->conns[i];
      c->fd = socket(AF_INET, SOCK_STREAM, 0);
      if (c->fd < 0) die("socket");
      if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        fprintf(stderr, "loadgen: %s: connect: %s\n", tg->name, strerror(errno));
        return 1;
      }
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
      if (hot) {
        c->lock_len = snprintf(c->lock_cmd, sizeof c->lock_cmd, "lock %s-%d 30\n", prefix, t);
        c->unlock_len = snprintf(c->unlock_cmd, sizeof c->unlock_cmd, "unlock %s-%d\n", prefix, t);
      } else {
        c->lock_len = snprintf(c->lock_cmd, sizeof c->lock_cmd, "lock %s-%d-%d\n", prefix, t, i);
        c->unlock_len =
            snprintf(c->unlock_cmd, sizeof c->unlock_cmd, "unlock %s-%d-%d\n", prefix, t, i);
      }
      struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
      if (epoll_ctl(tg->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
  }
  static figures f;
  for (int t = 0; t < ntargets; t++) {
    phase(&targets[t], SET_TIMEOUT, 0, &f);
    if (warmup > 0) phase(&targets[t], LOCK, warmup, &f);
  }
  for (int r = 0; r < rounds; r++) {
    for (int k = 0; k < ntargets; k++) {
      int t = (r + k) % ntargets;
      phase(&targets[t], LOCK, round_ns, &f);
      report(&targets[t], t, r, &f);
    }
  }
  for (int t = 0; t < ntargets; t++) {
    for (int i = 0; i < count; i++) close(targets[t].conns[i].fd);
  }
  return 0;
}
