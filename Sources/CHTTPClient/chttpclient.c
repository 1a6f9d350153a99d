#define _GNU_SOURCE
#include "chttpclient.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void chttpc_set_io_timeout(int fd, int io_timeout_ms) {
    struct timeval tv;
    tv.tv_sec = io_timeout_ms / 1000;
    tv.tv_usec = (io_timeout_ms % 1000) * 1000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/// Connects one address within `deadline`; returns 0, or an errno value (ETIMEDOUT when the deadline passed).
static int connect_one(int fd, const struct sockaddr *addr, socklen_t len, long deadline) {
    if (connect(fd, addr, len) == 0) return 0;
    if (errno != EINPROGRESS) return errno;
    for (;;) {
        long left = deadline - now_ms();
        if (left <= 0) return ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return errno;
        if (r == 0) return ETIMEDOUT;
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return errno;
        return soerr;
    }
}

int chttpc_connect(const char *host, int port, int timeout_ms, int io_timeout_ms, int *kind, char *err, size_t errlen) {
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *res = NULL;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        *kind = CHTTPC_RESOLVE;
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    long deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    int last = 0;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) { last = errno; continue; }
        int e = connect_one(fd, a->ai_addr, a->ai_addrlen, deadline);
        if (e == 0) {
            int flags = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            chttpc_set_io_timeout(fd, io_timeout_ms);
            freeaddrinfo(res);
            *kind = CHTTPC_OK;
            return fd;
        }
        close(fd);
        last = e;
        if (e == ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    switch (last) {
    case ECONNREFUSED: *kind = CHTTPC_REFUSED; break;
    case ETIMEDOUT: *kind = CHTTPC_TIMEOUT; break;
    case ENETUNREACH: case EHOSTUNREACH: *kind = CHTTPC_UNREACHABLE; break;
    default: *kind = CHTTPC_OTHER; break;
    }
    snprintf(err, errlen, "%s", strerror(last));
    return -1;
}

long chttpc_read(int fd, void *buf, size_t len, int *status) {
    for (;;) {
        ssize_t r = recv(fd, buf, len, 0);
        if (r > 0) { *status = CHTTPC_IO_OK; return (long)r; }
        if (r == 0) { *status = CHTTPC_IO_CLOSED; return 0; }
        if (errno == EINTR) continue;
        *status = (errno == EAGAIN || errno == EWOULDBLOCK) ? CHTTPC_IO_TIMEOUT
                  : (errno == ECONNRESET) ? CHTTPC_IO_CLOSED : CHTTPC_IO_ERROR;
        return 0;
    }
}

long chttpc_write(int fd, const void *buf, size_t len, int *status) {
    for (;;) {
        ssize_t r = send(fd, buf, len, MSG_NOSIGNAL);
        if (r > 0) { *status = CHTTPC_IO_OK; return (long)r; }
        if (r < 0 && errno == EINTR) continue;
        *status = (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) ? CHTTPC_IO_TIMEOUT
                  : (r < 0 && (errno == EPIPE || errno == ECONNRESET)) ? CHTTPC_IO_CLOSED : CHTTPC_IO_ERROR;
        return 0;
    }
}

void chttpc_close(int fd) { if (fd >= 0) close(fd); }
