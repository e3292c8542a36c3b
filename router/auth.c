// SPDX-License-Identifier: MIT
/*
 * Fabric authentication: the routers' shared secret (the cluster's secret_file) and the
 * HMAC-SHA256 challenge-response each fabric connection starts with (peer.c drives it). The
 * crypto is OpenSSL's libcrypto; nothing here is hand-rolled beyond putting bytes in order.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "router.h"

#define AUTH_KEY_MIN 32 /* bytes: 256 bits, what HMAC-SHA256 can use */
#define AUTH_KEY_MAX 1024

static uint8_t auth_key[AUTH_KEY_MAX];
static size_t auth_keylen; /* 0: no secret, connections are not authenticated */

/* What each side's MAC is over starts with its role, so one side's proof is never the other's. */
static const char *const auth_labels[] = {"slim fabric v1 dialer", "slim fabric v1 acceptor"};

int auth_load(const char *path, char *err, size_t errlen)
{
	uint8_t buf[AUTH_KEY_MAX + 1];
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	/* O_NONBLOCK: a FIFO put there must not hang the start-up. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(err, errlen, "secret_file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "secret_file %s: not a regular file", path);
		ret = -EINVAL;
		goto out;
	}
	/* A secret others can read is no secret: refuse rather than run believing it is. */
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		snprintf(err, errlen,
			 "secret_file %s: must be ours and mode 0600 (is uid %d, %03o)", path,
			 (int)st.st_uid, (unsigned)(st.st_mode & 0777));
		ret = -EPERM;
		goto out;
	}
	n = read(fd, buf, sizeof(buf));
	if (n < 0) {
		ret = -errno;
		snprintf(err, errlen, "secret_file %s: %s", path, strerror(errno));
		goto out;
	}
	if (n < AUTH_KEY_MIN || n > AUTH_KEY_MAX) {
		snprintf(err, errlen, "secret_file %s: %zd bytes (%d-%d random bytes expected)",
			 path, n, AUTH_KEY_MIN, AUTH_KEY_MAX);
		ret = -EINVAL;
		goto out;
	}
	OPENSSL_cleanse(auth_key, sizeof(auth_key));
	memcpy(auth_key, buf, (size_t)n);
	auth_keylen = (size_t)n;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	if (fd >= 0)
		close(fd);
	return ret;
}

void auth_clear(void)
{
	OPENSSL_cleanse(auth_key, sizeof(auth_key));
	auth_keylen = 0;
}

bool auth_enabled(void)
{
	return auth_keylen > 0;
}

int auth_nonce(uint8_t nonce[SLIM_AUTH_NONCE])
{
	return RAND_bytes(nonce, SLIM_AUTH_NONCE) == 1 ? 0 : -EIO;
}

/*
 * HMAC-SHA256(secret, label(role) || challenge || nonce || dialer ip || acceptor ip): both fresh
 * nonces, so neither proof can be replayed, and both addresses, so a proof is not accepted on
 * a connection between two other nodes. 0 or -EIO.
 */
static int auth_compute(enum auth_role role, const uint8_t challenge[SLIM_AUTH_NONCE],
			const uint8_t nonce[SLIM_AUTH_NONCE], uint32_t dialer_ip,
			uint32_t acceptor_ip, uint8_t mac[SLIM_AUTH_MAC])
{
	const char *label = auth_labels[role];
	uint8_t msg[64 + 2 * SLIM_AUTH_NONCE + 8];
	size_t len = strlen(label) + 1;
	unsigned maclen = 0;

	memcpy(msg, label, len);
	memcpy(msg + len, challenge, SLIM_AUTH_NONCE);
	len += SLIM_AUTH_NONCE;
	memcpy(msg + len, nonce, SLIM_AUTH_NONCE);
	len += SLIM_AUTH_NONCE;
	memcpy(msg + len, &dialer_ip, 4);
	len += 4;
	memcpy(msg + len, &acceptor_ip, 4);
	len += 4;
	if (!HMAC(EVP_sha256(), auth_key, (int)auth_keylen, msg, len, mac, &maclen) ||
	    maclen != SLIM_AUTH_MAC)
		return -EIO;
	return 0;
}

int auth_prove(enum auth_role role, const uint8_t challenge[SLIM_AUTH_NONCE],
	       const uint8_t nonce[SLIM_AUTH_NONCE], uint32_t dialer_ip, uint32_t acceptor_ip,
	       uint8_t mac[SLIM_AUTH_MAC])
{
	if (!auth_keylen)
		return -ENOKEY;
	return auth_compute(role, challenge, nonce, dialer_ip, acceptor_ip, mac);
}

bool auth_check(enum auth_role role, const uint8_t challenge[SLIM_AUTH_NONCE],
		const uint8_t nonce[SLIM_AUTH_NONCE], uint32_t dialer_ip, uint32_t acceptor_ip,
		const uint8_t mac[SLIM_AUTH_MAC])
{
	uint8_t want[SLIM_AUTH_MAC];
	bool ok;

	if (!auth_keylen || auth_compute(role, challenge, nonce, dialer_ip, acceptor_ip, want))
		return false;
	ok = CRYPTO_memcmp(want, mac, SLIM_AUTH_MAC) == 0; /* constant time */
	OPENSSL_cleanse(want, sizeof(want));
	return ok;
}
