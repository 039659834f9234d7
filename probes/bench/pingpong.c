// Loopback TCP ping-pong: a server process (accepted socket: what perisco captures by
// default) and a client process; prints round trips/s and CPU µs per round trip of each.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_us(void) {
  struct rusage ru; getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
}
static double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }

int main(int argc, char **argv) {
  int port = atoi(argv[1]); long n = atol(argv[2]);
  const char *req = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: pingpong\r\nAccept: */*\r\n\r\n";
  char resp[512]; const char *body = "hello world, this is a small body for the ping pong benchmark.\n";
  int rl = snprintf(resp, sizeof resp, "HTTP/1.1 200 OK\r\nServer: pingpong\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
  int ls = socket(AF_INET, SOCK_STREAM, 0); int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)}; a.sin_addr.s_addr = htonl(0x7f000001);
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 8)) { perror("bind"); return 1; }
  int p[2]; pipe(p);
  pid_t srv = fork();
  char buf[4096];
  if (srv == 0) {
    int c = accept(ls, 0, 0); setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    double c0 = cpu_us(); long i = 0;
    for (;;) { ssize_t r = read(c, buf, sizeof buf); if (r <= 0) break; write(c, resp, rl); i++; }
    double per = (cpu_us() - c0) / (i ? i : 1);
    write(p[1], &per, sizeof per); _exit(0);
  }
  int s = socket(AF_INET, SOCK_STREAM, 0); setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s, (void *)&a, sizeof a)) { perror("connect"); return 1; }
  size_t ql = strlen(req);
  for (long i = 0; i < 2000; i++) { write(s, req, ql); int got = 0; while (got < rl) got += read(s, buf, sizeof buf); }
  double c0 = cpu_us(), t0 = now_s();
  for (long i = 0; i < n; i++) { write(s, req, ql); int got = 0; while (got < rl) { ssize_t r = read(s, buf, sizeof buf); if (r <= 0) return 1; got += r; } }
  double t = now_s() - t0, cc = (cpu_us() - c0) / n;
  close(s); double sc; read(p[0], &sc, sizeof sc); waitpid(srv, 0, 0);
  printf("%.0f rt/s  server %.2f us/rt  client %.2f us/rt\n", n / t, sc, cc);
  return 0;
}
