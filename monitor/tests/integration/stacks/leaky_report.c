/*
 * A process that leaks connections on both sides, for the call-stack test (stacks.rs):
 * open_report_connection() connects and never closes (its peer, accepted and closed here,
 * leaves it in CLOSE_WAIT); serve_leaky_client() accepts connections whose clients already
 * hung up, and never closes them (CLOSE_WAIT too).
 *
 * Usage: leaky_report PORT_A PORT_B COUNT (on 127.0.0.1). Prints "ready" once every leaked
 * connection exists, then waits to be killed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

static int listen_on(int port) {
    struct sockaddr_in addr = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0) {
        perror("listen");
        exit(1);
    }
    return fd;
}

int open_report_connection(int port) {
    struct sockaddr_in addr = loopback(port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { /* CONNECT_LINE */
        perror("connect");
        exit(1);
    }
    return fd; /* never closed */
}

void handle_request(int port, int count) {
    for (int i = 0; i < count; i++) {
        open_report_connection(port);
    }
}

/* The report connections' peer: accepts each and hangs up at once. */
void close_report_peers(int listener, int count) {
    for (int i = 0; i < count; i++) {
        close(accept(listener, NULL, NULL));
    }
}

/* Clients that connect and hang up before the server accepts them. */
void hang_up_clients(int port, int count) {
    struct sockaddr_in addr = loopback(port);
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("connect");
            exit(1);
        }
        close(fd);
    }
}

void serve_leaky_client(int listener, int count) {
    for (int i = 0; i < count; i++) {
        int fd = accept(listener, NULL, NULL); /* ACCEPT_LINE */
        if (fd < 0) {
            perror("accept");
            exit(1);
        }
        /* never closed */
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT_A PORT_B COUNT\n", argv[0]);
        return 2;
    }
    int port_a = atoi(argv[1]), port_b = atoi(argv[2]), count = atoi(argv[3]);
    int reports = listen_on(port_a), service = listen_on(port_b);
    handle_request(port_a, count);
    close_report_peers(reports, count);
    hang_up_clients(port_b, count);
    serve_leaky_client(service, count);
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        pause();
    }
}
