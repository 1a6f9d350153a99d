#ifndef CHTTPSYS_H
#define CHTTPSYS_H
// Linux system calls that Swift's Glibc module does not expose (epoll, eventfd, accept4, sendfile),
// wrapped as plain functions so the Swift side never touches macros or packed structs.
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// Creates an epoll instance (close-on-exec). Returns -1 and sets errno on failure.
int chttp_epoll_create(void);
/// Adds or modifies `fd` with interest `events` (CHTTP_EV_* bits) and user data `token`.
int chttp_epoll_add(int epfd, int fd, uint32_t events, uint64_t token);
int chttp_epoll_mod(int epfd, int fd, uint32_t events, uint64_t token);
int chttp_epoll_del(int epfd, int fd);
/// Waits for events; fills parallel arrays `tokens` and `events`. Returns the count, or -1 with errno.
int chttp_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

extern const uint32_t CHTTP_EV_IN;
extern const uint32_t CHTTP_EV_OUT;
extern const uint32_t CHTTP_EV_ERR;
extern const uint32_t CHTTP_EV_HUP;
extern const uint32_t CHTTP_EV_RDHUP;
extern const uint32_t CHTTP_EV_ET;

/// A non-blocking, close-on-exec eventfd.
int chttp_eventfd(void);
int chttp_eventfd_signal(int fd);
void chttp_eventfd_drain(int fd);

/// accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; fills `addr`/`addrlen` (a sockaddr_storage).
int chttp_accept(int fd, void *addr, unsigned int *addrlen);
/// A non-blocking, close-on-exec TCP socket of `family`.
int chttp_socket(int family);
int chttp_set_nonblocking(int fd);
ssize_t chttp_sendfile(int out_fd, int in_fd, int64_t *offset, size_t count);
/// send() with MSG_NOSIGNAL so a peer that went away gives EPIPE rather than SIGPIPE.
ssize_t chttp_send(int fd, const void *buf, size_t len);
/// writev(); `bases`/`lens` are parallel arrays of `n` buffers.
ssize_t chttp_writev(int fd, const void *const *bases, const size_t *lens, int n);
/// Formats a sockaddr as "1.2.3.4:80" or "[::1]:80" into `out`.
void chttp_format_address(const void *addr, char *out, size_t outlen);
/// The port of a bound socket, or -1.
int chttp_local_port(int fd);
int chttp_errno(void);

#endif
