// SPDX-License-Identifier: MIT
/* Unit tests for IPv4 prefix parsing. */
#include <errno.h>
#include <arpa/inet.h>

#include "cidr.h"
#include "test.h"

TEST(parses_prefix_and_checks_membership)
{
	struct cidr c;

	if (!ASSERT_OK(cidr_parse("10.244.0.0/16", &c), "parse"))
		return;
	ASSERT_EQ(c.len, 16, "len");
	ASSERT_TRUE(cidr_contains(&c, inet_addr("10.244.3.7")), "inside");
	ASSERT_TRUE(!cidr_contains(&c, inet_addr("10.245.0.1")), "outside");
	ASSERT_OK(cidr_parse("198.18.0.1", &c), "bare address");
	ASSERT_EQ(c.len, 32, "bare is /32");
}

TEST(rejects_malformed)
{
	struct cidr c;

	ASSERT_EQ(cidr_parse("10.244.0.1/16", &c), -EINVAL, "host bits");
	ASSERT_EQ(cidr_parse("10.244.0.0/33", &c), -EINVAL, "len");
	ASSERT_EQ(cidr_parse("10.244.0.0/", &c), -EINVAL, "empty len");
	ASSERT_EQ(cidr_parse("hello/8", &c), -EINVAL, "garbage");
	ASSERT_EQ(cidr_parse("", &c), -EINVAL, "empty");
}
