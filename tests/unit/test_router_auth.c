// SPDX-License-Identifier: MIT
/* Unit tests for the fabric's secret and challenge-response (router/auth.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include "router.h"
#include "test.h"

struct router router;

/* Writes n bytes of b to a fresh file with mode; returns its path (static). */
static const char *key_file(const void *b, size_t n, mode_t mode)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/slim-test-auth-%d", (int)getpid());
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, b, n) != (ssize_t)n || fchmod(fd, mode) < 0)
		return NULL;
	close(fd);
	return path;
}

TEST(secret_file_must_be_private_and_long_enough)
{
	uint8_t key[32] = {1, 2, 3};
	const char *p;
	char err[256];

	ASSERT_TRUE(!auth_enabled(), "off at first");
	p = key_file(key, sizeof(key), 0644);
	ASSERT_EQ(auth_load(p, err, sizeof(err)), -EPERM, "mode 0644");
	ASSERT_TRUE(strstr(err, "mode 0600") != NULL, err);
	p = key_file(key, 16, 0600);
	ASSERT_EQ(auth_load(p, err, sizeof(err)), -EINVAL, "16 bytes");
	ASSERT_EQ(auth_load("/nonexistent/key", err, sizeof(err)), -ENOENT, "missing");
	ASSERT_TRUE(!auth_enabled(), "still off after refusals");
	p = key_file(key, sizeof(key), 0600);
	ASSERT_OK(auth_load(p, err, sizeof(err)), err);
	ASSERT_TRUE(auth_enabled(), "on");
	unlink(p);
	auth_clear();
	ASSERT_TRUE(!auth_enabled(), "cleared");
}

TEST(proofs_bind_secret_role_nonces_and_addresses)
{
	uint8_t key[32], other[32], ch[SLIM_AUTH_NONCE], nonce[SLIM_AUTH_NONCE];
	uint8_t mac[SLIM_AUTH_MAC], mac2[SLIM_AUTH_MAC];
	uint32_t d = inet_addr("198.18.0.2"), a = inet_addr("198.18.0.1");
	const char *p;
	char err[256];

	memset(key, 7, sizeof(key));
	memset(other, 8, sizeof(other));
	if (!ASSERT_OK(auth_load(key_file(key, sizeof(key), 0600), err, sizeof(err)), err))
		return;
	ASSERT_OK(auth_nonce(ch), "nonce");
	ASSERT_OK(auth_nonce(nonce), "nonce");
	ASSERT_TRUE(memcmp(ch, nonce, sizeof(ch)) != 0, "nonces differ");
	ASSERT_OK(auth_prove(AUTH_DIALER, ch, nonce, d, a, mac), "prove");
	ASSERT_TRUE(auth_check(AUTH_DIALER, ch, nonce, d, a, mac), "checks");
	ASSERT_TRUE(!auth_check(AUTH_ACCEPTOR, ch, nonce, d, a, mac), "not the other role's");
	ASSERT_TRUE(!auth_check(AUTH_DIALER, nonce, ch, d, a, mac), "nonces swapped");
	ASSERT_TRUE(!auth_check(AUTH_DIALER, ch, nonce, a, d, mac), "addresses swapped");
	ASSERT_OK(auth_prove(AUTH_ACCEPTOR, ch, nonce, d, a, mac2), "prove");
	ASSERT_TRUE(memcmp(mac, mac2, sizeof(mac)) != 0, "roles give different proofs");
	mac[0] ^= 1;
	ASSERT_TRUE(!auth_check(AUTH_DIALER, ch, nonce, d, a, mac), "a flipped bit");
	mac[0] ^= 1;
	p = key_file(other, sizeof(other), 0600);
	if (!ASSERT_OK(auth_load(p, err, sizeof(err)), err))
		return;
	unlink(p);
	ASSERT_TRUE(!auth_check(AUTH_DIALER, ch, nonce, d, a, mac), "another secret");
	auth_clear();
	ASSERT_TRUE(!auth_check(AUTH_DIALER, ch, nonce, d, a, mac), "no secret: nothing checks");
	ASSERT_EQ(auth_prove(AUTH_DIALER, ch, nonce, d, a, mac), -ENOKEY, "no secret: no proof");
}
