/*
 * A tiny epoll "echo" server for the bench's server-vs-server section: it
 * answers every line it receives with the fixed line `200 OK`, all the
 * replies to what one read brought in one write. It is the ceiling an eLock
 * server doing the same round trips can be compared with: no parsing, no
 * state, one thread.
 *
 *   echo [PORT]   listens on 127.0.0.1:PORT (default 0, any free port),
 *                 prints {"port":P} as one line on stdout, and exits when its
 *                 standard input ends or on SIGTERM.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define REPLY "200 OK\n"
#define REPLY_LEN 7

typedef struct {
  int fd;
  /* Reply bytes not yet written (the socket buffer was full). */
  size_t owed;
  /* Whether EPOLLOUT is asked for. */
  int waiting;
} connection;

static void die(const char *what) {
  fprintf(stderr, "echo: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void drop(int ep, connection *c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c);
}

/* Writes what is owed; returns 0 when the connection failed. */
static int flush(int ep, connection *c) {
  static char replies[REPLY_LEN * 4096];
  static int filled = 0;
  if (!filled) {
    for (int i = 0; i < 4096; i++) memcpy(replies + i * REPLY_LEN, REPLY, REPLY_LEN);
    filled = 1;
  }
  while (c->owed > 0) {
    /* Whole replies first, then the tail of a partial one (the pattern repeats every 7 bytes). */
    size_t chunk = c->owed < sizeof replies ? c->owed : sizeof replies;
    size_t offset = (REPLY_LEN - c->owed % REPLY_LEN) % REPLY_LEN;
    if (chunk + offset > sizeof replies) chunk = sizeof replies - offset;
    ssize_t n = write(c->fd, replies + offset, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (!c->waiting) {
          struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
          c->waiting = 1;
        }
        return 1;
      }
      return 0;
    }
    c->owed -= (size_t)n;
  }
  if (c->waiting) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->waiting = 0;
  }
  return 1;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (listener < 0) die("socket");
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(listener, 1024) < 0) die("listen");
  socklen_t len = sizeof addr;
  if (getsockname(listener, (struct sockaddr *)&addr, &len) < 0) die("getsockname");
  printf("{\"port\":%d}\n", ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0) die("epoll_ctl");
  /* Standard input: its end (the harness went away) stops the server. */
  static connection stdin_marker;
  struct epoll_event in = {.events = EPOLLIN, .data.ptr = &stdin_marker};
  int watch_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) == 0;

  struct epoll_event events[256];
  char buffer[65536];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int e = 0; e < n; e++) {
      connection *c = events[e].data.ptr;
      if (c == NULL) {
        for (;;) {
          int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0) break;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          connection *fresh = calloc(1, sizeof(connection));
          if (fresh == NULL) die("calloc");
          fresh->fd = fd;
          struct epoll_event add = {.events = EPOLLIN, .data.ptr = fresh};
          if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &add) < 0) die("epoll_ctl");
        }
        continue;
      }
      if (c == &stdin_marker) {
        if (!watch_stdin) continue;
        ssize_t got = read(0, buffer, sizeof buffer);
        if (got <= 0) return 0;
        continue;
      }
      if (events[e].events & EPOLLOUT) {
        if (!flush(ep, c)) {
          drop(ep, c);
          continue;
        }
      }
      if (!(events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
      ssize_t got = read(c->fd, buffer, sizeof buffer);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) {
        drop(ep, c);
        continue;
      }
      size_t lines = 0;
      for (char *p = buffer, *stop = buffer + got; (p = memchr(p, '\n', (size_t)(stop - p)));
           p++) {
        lines++;
      }
      if (lines == 0) continue;
      c->owed += lines * REPLY_LEN;
      if (!flush(ep, c)) drop(ep, c);
    }
  }
}
