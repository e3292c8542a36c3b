/* SPDX-License-Identifier: MIT */
/*
 * stream: sends or receives one TCP stream of deterministic pseudo-random bytes, so a scenario
 * can check that a transfer arrived intact (every byte in order, nothing more, nothing less).
 *
 *   stream send HOST PORT BYTES SEED   connect, send BYTES bytes of stream SEED, close
 *   stream recv PORT [BYTES SEED]      accept one connection, read to EOF; with BYTES and SEED
 *                                      also check the data is exactly that stream
 *
 * Both print "bytes=N hash=H seconds=S" (H: a 64-bit hash of the bytes in order), so the two
 * ends can be compared even without the check; the sender adds " mss=M retrans=R" from TCP_INFO
 * (its send MSS and the segments it retransmitted), which show the path's MTU and any loss.
 * Byte p of stream SEED is byte p % 8 (little endian) of splitmix64(SEED + p / 8), so the
 * receiver can compute what it expects at any offset.
 * Exit status 0 when all went well, 1 on any error or mismatch. Gives up after --timeout seconds
 * (default 60), so a scenario never hangs on it.
 */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define STREAM_CHUNK (256 * 1024)

static uint64_t stream_word(uint64_t seed, uint64_t index)
{
	uint64_t z = seed + index * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* stream_fill: bytes [off, off + n) of stream seed into buf. */
static void stream_fill(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	uint64_t word = stream_word(seed, off / 8);
	size_t i = 0;

	/* Byte by byte up to a word boundary, then whole words, then the tail. */
	for (; i < n && off % 8; i++, off++)
		buf[i] = (uint8_t)(word >> (8 * (off % 8)));
	for (; n - i >= 8; i += 8, off += 8) {
		word = htole64(stream_word(seed, off / 8));
		memcpy(buf + i, &word, 8);
	}
	if (i < n)
		word = stream_word(seed, off / 8);
	for (; i < n; i++, off++)
		buf[i] = (uint8_t)(word >> (8 * (off % 8)));
}

/* stream_hash: FNV-1a over the bytes, continued from h (order matters, as it should). */
static uint64_t stream_hash(uint64_t h, const uint8_t *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		h = (h ^ buf[i]) * 0x100000001b3ULL;
	return h;
}

#define STREAM_HASH_INIT 0xcbf29ce484222325ULL

static double stream_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int stream_parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	if (errno || end == s || *end || *s == '-')
		return -EINVAL;
	return 0;
}

static int stream_send(const char *host, const char *port, uint64_t bytes, uint64_t seed)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
	struct addrinfo *ai;
	static uint8_t buf[STREAM_CHUNK];
	uint64_t off = 0, h = STREAM_HASH_INIT;
	struct tcp_info ti;
	socklen_t tilen = sizeof(ti);
	double start;
	int fd, err;

	err = getaddrinfo(host, port, &hints, &ai);
	if (err) {
		fprintf(stderr, "stream: %s:%s: %s\n", host, port, gai_strerror(err));
		return 1;
	}
	start = stream_now();
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		fprintf(stderr, "stream: connect %s:%s: %s\n", host, port, strerror(errno));
		freeaddrinfo(ai);
		return 1;
	}
	freeaddrinfo(ai);
	while (off < bytes) {
		size_t n = bytes - off < STREAM_CHUNK ? bytes - off : STREAM_CHUNK;
		size_t done = 0;

		stream_fill(seed, off, buf, n);
		h = stream_hash(h, buf, n);
		while (done < n) {
			ssize_t w = write(fd, buf + done, n - done);

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				fprintf(stderr, "stream: write at offset %" PRIu64 ": %s\n",
					off + done, strerror(errno));
				return 1;
			}
			done += w;
		}
		off += n;
	}
	/* Half-close and wait for the receiver's close, so "sent" means "received". */
	shutdown(fd, SHUT_WR);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tilen) < 0) {
		fprintf(stderr, "stream: TCP_INFO: %s\n", strerror(errno));
		return 1;
	}
	close(fd);
	printf("bytes=%" PRIu64 " hash=%016" PRIx64 " seconds=%.3f mss=%u retrans=%u\n", off, h,
	       stream_now() - start, ti.tcpi_snd_mss, ti.tcpi_total_retrans);
	return 0;
}

static int stream_recv(const char *port, int check, uint64_t bytes, uint64_t seed)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	static uint8_t buf[STREAM_CHUNK], want[STREAM_CHUNK];
	uint64_t off = 0, p, h = STREAM_HASH_INIT;
	double start = 0;
	int lfd, fd, one = 1;

	if (stream_parse_u64(port, &p) || p == 0 || p > 65535) {
		fprintf(stderr, "stream: bad port '%s'\n", port);
		return 1;
	}
	sa.sin_port = htons((uint16_t)p);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
		fprintf(stderr, "stream: listen on port %s: %s\n", port, strerror(errno));
		return 1;
	}
	fd = accept(lfd, NULL, NULL);
	if (fd < 0) {
		fprintf(stderr, "stream: accept: %s\n", strerror(errno));
		return 1;
	}
	close(lfd);
	start = stream_now();
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "stream: read at offset %" PRIu64 ": %s\n", off,
				strerror(errno));
			return 1;
		}
		if (n == 0)
			break;
		if (check) {
			ssize_t i;

			if (off + n > bytes) {
				fprintf(stderr, "stream: more than %" PRIu64 " bytes\n", bytes);
				return 1;
			}
			stream_fill(seed, off, want, n);
			if (memcmp(buf, want, n)) {
				for (i = 0; buf[i] == want[i]; i++)
					;
				fprintf(stderr, "stream: wrong byte at offset %" PRIu64 "\n",
					off + i);
				return 1;
			}
		}
		h = stream_hash(h, buf, n);
		off += n;
	}
	close(fd);
	printf("bytes=%" PRIu64 " hash=%016" PRIx64 " seconds=%.3f\n", off, h,
	       stream_now() - start);
	if (check && off != bytes) {
		fprintf(stderr, "stream: got %" PRIu64 " bytes, expected %" PRIu64 "\n", off,
			bytes);
		return 1;
	}
	return 0;
}

static int stream_usage(void)
{
	fprintf(stderr, "usage: stream [--timeout SEC] send HOST PORT BYTES SEED\n"
			"       stream [--timeout SEC] recv PORT [BYTES SEED]\n");
	return 2;
}

int main(int argc, char **argv)
{
	uint64_t timeout = 60, bytes = 0, seed = 0;

	if (argc > 2 && !strcmp(argv[1], "--timeout")) {
		if (stream_parse_u64(argv[2], &timeout) || timeout == 0 || timeout > 86400)
			return stream_usage();
		argc -= 2;
		argv += 2;
	}
	/* SIGALRM's default action ends the process: the deadline needs no handler. */
	alarm((unsigned int)timeout);
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (argc == 6 && !strcmp(argv[1], "send")) {
		if (stream_parse_u64(argv[4], &bytes) || stream_parse_u64(argv[5], &seed))
			return stream_usage();
		return stream_send(argv[2], argv[3], bytes, seed);
	}
	if ((argc == 3 || argc == 5) && !strcmp(argv[1], "recv")) {
		if (argc == 5 &&
		    (stream_parse_u64(argv[3], &bytes) || stream_parse_u64(argv[4], &seed)))
			return stream_usage();
		return stream_recv(argv[2], argc == 5, bytes, seed);
	}
	return stream_usage();
}
