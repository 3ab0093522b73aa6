/* ledgerd: the test guest's ledger service (protocol: docs/lab-contract.md).
 *
 *   PUT <text>\n -> record appended to the raw disk, durable, then "OK <seq>\n"
 *   GET\n        -> "REC <seq> <text>\n" for every record, then "END <count>\n"
 *   PING\n       -> "PONG\n"
 *
 * On-disk format: one 512-byte sector per record, sector i holds seq i+1:
 *   u32 magic "CLDG" | u32 crc32 of bytes 8..511 | u64 seq | u32 len | text | zero padding
 * (all little-endian). Recovery scans from sector 0 and stops at the first
 * sector that is not a valid record with the expected seq.
 *
 * One thread, one poll() loop, so seq numbers and disk order are serialised.
 * PUTs read in one loop iteration are written together (group commit: one
 * pwrite with O_DIRECT|O_DSYNC, i.e. data plus a device flush/FUA) and no reply
 * leaves the process before that write returned, so an acknowledged record is
 * always on disk. A write error is fatal: the process exits without sending
 * the pending OKs and init restarts it (it then recovers from the disk).
 *
 * Build: gcc -static -O2 -o ledgerd ledgerd.c
 * Usage: ledgerd [-d /dev/vda] [-p 7000] [-r readyfile]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECTOR 512
#define MAGIC 0x474c4443u      /* "CLDG" */
#define HDR 20
#define MAXTEXT 400
#define MAXBATCH 256           /* records per commit (128 KiB write) */
#define READCHUNK 128          /* sectors per read during recovery/GET */
#define MAXCONN 1000
#define LINEMAX 1024           /* longer than any valid command */
#define OUT_HIGH (256 * 1024)  /* stop reading from a client whose replies pile up */

struct conn {
    int fd, eof, discarding;
    char in[LINEMAX];
    size_t inlen;
    char *out;
    size_t outlen, outoff, outcap;
    uint64_t get_next, get_end;  /* GET in progress while get_next <= get_end */
};

static int disk;
static uint64_t capacity;        /* records that fit on the disk */
static uint64_t ndisk;           /* records durable on disk */
static unsigned char *batch;     /* MAXBATCH sectors, aligned for O_DIRECT */
static int nbatch;
static unsigned char *rbuf;      /* READCHUNK sectors, aligned for O_DIRECT */
static struct conn *conns[MAXCONN];
static int nconn;
static uint32_t crctab[256];

static void die(const char *what)
{
    fprintf(stderr, "ledgerd: FATAL %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint32_t crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    while (n--)
        c = crctab[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (8 * i); }
static uint32_t get32(const unsigned char *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

/* Returns the text length if sector s is the valid record seq, else -1. */
static int decode(const unsigned char *s, uint64_t seq)
{
    uint32_t len = get32(s + 16);
    if (get32(s) != MAGIC || get64(s + 8) != seq || len < 1 || len > MAXTEXT)
        return -1;
    return crc32(s + 8, SECTOR - 8) == get32(s + 4) ? (int)len : -1;
}

static void read_sectors(uint64_t first, int n)
{
    ssize_t want = (ssize_t)n * SECTOR;
    if (pread(disk, rbuf, want, first * SECTOR) != want)
        die("read");
}

static void write_sectors(const unsigned char *buf, uint64_t first, int n)
{
    ssize_t want = (ssize_t)n * SECTOR;
    if (pwrite(disk, buf, want, first * SECTOR) != want)
        die("write");
}

static void recover(void)
{
    for (ndisk = 0; ndisk < capacity;) {
        int n = capacity - ndisk < READCHUNK ? (int)(capacity - ndisk) : READCHUNK;
        read_sectors(ndisk, n);
        int i = 0;
        while (i < n && decode(rbuf + i * SECTOR, ndisk + 1) >= 0)
            i++, ndisk++;
        if (i < n)
            break;
    }
    /* A torn group commit may have left valid-looking records after the first
     * invalid one; they lie within one batch, so zero that range now, or a
     * later commit filling the gap would make them reappear. */
    uint64_t end = ndisk + MAXBATCH < capacity ? ndisk + MAXBATCH : capacity;
    memset(batch, 0, (size_t)MAXBATCH * SECTOR);
    if (end > ndisk)
        write_sectors(batch, ndisk, (int)(end - ndisk));
}

static void commit(void)
{
    if (nbatch == 0)
        return;
    write_sectors(batch, ndisk, nbatch);  /* O_DSYNC: returns once durable */
    ndisk += nbatch;
    nbatch = 0;
}

static void out_append(struct conn *c, const char *s, size_t n)
{
    if (c->outoff > 0 && c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    if (c->outlen + n > c->outcap) {
        if (c->outoff > 0) {  /* compact before growing */
            memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
            c->outlen -= c->outoff;
            c->outoff = 0;
        }
        while (c->outlen + n > c->outcap)
            c->outcap = c->outcap ? 2 * c->outcap : 4096;
        if (!(c->out = realloc(c->out, c->outcap)))
            die("realloc");
    }
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
}

static void reply(struct conn *c, const char *s) { out_append(c, s, strlen(s)); }

static size_t backlog(const struct conn *c) { return c->outlen - c->outoff; }
static int getting(const struct conn *c) { return c->get_end && c->get_next <= c->get_end; }
static int blocked(const struct conn *c) { return getting(c) || backlog(c) >= OUT_HIGH; }

static void do_put(struct conn *c, const char *text, size_t len)
{
    char msg[48];
    const char *err = NULL;
    if (len == 0)
        err = "ERR empty text\n";
    else if (len > MAXTEXT)
        err = "ERR text longer than 400 bytes\n";
    else if (ndisk + nbatch >= capacity)
        err = "ERR disk full\n";
    for (size_t i = 0; i < len && !err; i++)
        if (text[i] < 0x20 || text[i] > 0x7e)
            err = "ERR text must be printable ASCII\n";
    if (err) {
        reply(c, err);
        return;
    }
    uint64_t seq = ndisk + nbatch + 1;
    unsigned char *s = batch + (size_t)nbatch * SECTOR;
    memset(s, 0, SECTOR);
    put32(s, MAGIC);
    put64(s + 8, seq);
    put32(s + 16, (uint32_t)len);
    memcpy(s + HDR, text, len);
    put32(s + 4, crc32(s + 8, SECTOR - 8));
    if (++nbatch == MAXBATCH)
        commit();
    snprintf(msg, sizeof msg, "OK %llu\n", (unsigned long long)seq);
    reply(c, msg);  /* sent only after the main loop's commit() */
}

static void do_line(struct conn *c, char *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = 0;
    if (len == 4 && !memcmp(line, "PING", 4))
        reply(c, "PONG\n");
    else if (len == 3 && !memcmp(line, "GET", 3)) {
        commit();  /* GET must see every PUT answered before it */
        c->get_next = 1;
        c->get_end = ndisk;
        if (ndisk == 0)
            reply(c, "END 0\n");
    } else if (len >= 3 && !memcmp(line, "PUT", 3) && (len == 3 || line[3] == ' '))
        do_put(c, line + 4, len > 4 ? len - 4 : 0);
    else
        reply(c, "ERR unknown command\n");
}

/* Handle the complete lines buffered for c, stopping when c is blocked. */
static void process_input(struct conn *c)
{
    size_t pos = 0;
    while (!blocked(c)) {
        char *nl = memchr(c->in + pos, '\n', c->inlen - pos);
        if (!nl)
            break;
        *nl = 0;
        if (c->discarding) {
            c->discarding = 0;
            reply(c, "ERR line too long\n");
        } else
            do_line(c, c->in + pos, nl - (c->in + pos));
        pos = nl + 1 - c->in;
    }
    memmove(c->in, c->in + pos, c->inlen - pos);
    c->inlen -= pos;
    if (c->inlen == LINEMAX && !memchr(c->in, '\n', LINEMAX)) {  /* overlong line: drop it */
        c->discarding = 1;
        c->inlen = 0;
    }
}

/* Top up the output of a GET in progress from the disk. */
static void fill_get(struct conn *c)
{
    char line[MAXTEXT + 48];
    while (getting(c) && backlog(c) < OUT_HIGH / 2) {
        uint64_t left = c->get_end - c->get_next + 1;
        int n = left < READCHUNK ? (int)left : READCHUNK;
        read_sectors(c->get_next - 1, n);
        for (int i = 0; i < n; i++, c->get_next++) {
            const unsigned char *s = rbuf + i * SECTOR;
            int len = decode(s, c->get_next);
            if (len < 0) {
                fprintf(stderr, "ledgerd: record %llu unreadable\n", (unsigned long long)c->get_next);
                reply(c, "ERR corrupt record\n");
                c->get_end = 0;
                return;
            }
            int k = snprintf(line, sizeof line, "REC %llu ", (unsigned long long)c->get_next);
            memcpy(line + k, s + HDR, len);
            line[k + len] = '\n';
            out_append(c, line, k + len + 1);
        }
        if (c->get_next > c->get_end) {
            snprintf(line, sizeof line, "END %llu\n", (unsigned long long)c->get_end);
            reply(c, line);
        }
    }
}

static void close_conn(int i)
{
    close(conns[i]->fd);
    free(conns[i]->out);
    free(conns[i]);
    conns[i] = conns[--nconn];
}

/* Returns 0 if the connection broke. */
static int flush_out(struct conn *c)
{
    while (backlog(c) > 0) {
        ssize_t n = send(c->fd, c->out + c->outoff, backlog(c), MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        c->outoff += n;
    }
    return 1;
}

static int listen_on(int port)
{
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0)
        die("socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 128) < 0)
        die("bind/listen");
    return fd;
}

int main(int argc, char **argv)
{
    const char *dev = "/dev/vda", *ready = NULL;
    int port = 7000, opt;
    while ((opt = getopt(argc, argv, "d:p:r:")) != -1) {
        if (opt == 'd') dev = optarg;
        else if (opt == 'p') port = atoi(optarg);
        else if (opt == 'r') ready = optarg;
        else { fprintf(stderr, "usage: ledgerd [-d dev] [-p port] [-r readyfile]\n"); return 2; }
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crctab[i] = c;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stderr, NULL, _IOLBF, 0);

    /* O_DIRECT bypasses the page cache; O_DSYNC makes each write durable
     * (the block layer adds FUA or a cache flush) before pwrite returns. */
    if ((disk = open(dev, O_RDWR | O_DIRECT | O_DSYNC)) < 0)
        die(dev);
    uint64_t bytes;
    struct stat st;
    if (ioctl(disk, BLKGETSIZE64, &bytes) < 0) {  /* a plain file, for tests on a dev machine */
        if (fstat(disk, &st) < 0)
            die("fstat");
        bytes = st.st_size;
    }
    capacity = bytes / SECTOR;
    if (posix_memalign((void **)&batch, 4096, (size_t)MAXBATCH * SECTOR) ||
        posix_memalign((void **)&rbuf, 4096, (size_t)READCHUNK * SECTOR))
        die("posix_memalign");
    recover();
    int lfd = listen_on(port);
    fprintf(stderr, "ledgerd: %s holds %llu records (room for %llu), listening on port %d\n",
            dev, (unsigned long long)ndisk, (unsigned long long)capacity, port);
    if (ready)
        close(open(ready, O_WRONLY | O_CREAT | O_TRUNC, 0644));

    static struct pollfd pfd[MAXCONN + 1];
    int busy = 0;  /* buffered work that needs no new event */
    for (;;) {
        pfd[0] = (struct pollfd){.fd = lfd, .events = nconn < MAXCONN ? POLLIN : 0};
        for (int i = 0; i < nconn; i++) {
            struct conn *c = conns[i];
            short ev = 0;
            if (!c->eof && !blocked(c) && c->inlen < LINEMAX)
                ev |= POLLIN;
            if (backlog(c))
                ev |= POLLOUT;
            pfd[i + 1] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int np = nconn;  /* pfd[1..np] match conns[0..np-1] until a close */
        if (poll(pfd, np + 1, busy ? 0 : -1) < 0 && errno != EINTR)
            die("poll");

        for (int i = 0; i < np; i++) {
            struct conn *c = conns[i];
            if (!(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)) || !(pfd[i + 1].events & POLLIN))
                continue;
            ssize_t n = read(c->fd, c->in + c->inlen, LINEMAX - c->inlen);
            if (n > 0)
                c->inlen += n;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                c->eof = 1;  /* answer what was sent, then close */
        }
        while (pfd[0].revents & POLLIN && nconn < MAXCONN) {
            int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), one = 1;
            if (fd < 0)
                break;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (!(conns[nconn] = calloc(1, sizeof(struct conn))))
                die("calloc");
            conns[nconn++]->fd = fd;
        }

        for (int i = 0; i < nconn; i++)
            process_input(conns[i]);
        commit();  /* before any reply leaves */
        busy = 0;
        for (int i = 0; i < nconn; i++) {
            struct conn *c = conns[i];
            fill_get(c);
            int pending = memchr(c->in, '\n', c->inlen) != NULL;
            if (!flush_out(c) || (c->eof && !backlog(c) && !getting(c) && !pending)) {
                close_conn(i--);
                continue;
            }
            if ((getting(c) && backlog(c) < OUT_HIGH / 2) || (!blocked(c) && pending))
                busy = 1;
        }
    }
}
