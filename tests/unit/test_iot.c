/* tests/unit/test_iot.c - P2P topic addresses and GroupID@@@DeviceID client ids (core/iot.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "core/iot.h"

static struct slice S(const char *text)
{
    return (struct slice){ (const uint8_t *)text, (uint32_t)strlen(text) };
}

static bool target_is(const char *topic, const char *expected)
{
    struct slice id = { NULL, 0 };
    if (!iot_p2p_target(S(topic), &id))
        return expected == NULL;
    return expected != NULL && id.len == strlen(expected) && memcmp(id.ptr, expected, id.len) == 0;
}

Test(iot, p2p_target_is_the_last_level_after_a_p2p_level)
{
    cr_assert(target_is("app/p2p/dev-1", "dev-1"));
    cr_assert(target_is("a/b/c/p2p/G@@@D", "G@@@D"));
    cr_assert(target_is("x/p2p/p2p", "p2p"));
    cr_assert(target_is("x/p2p/a/p2p/b", "b"));
}

Test(iot, p2p_needs_a_parent_a_client_id_and_no_dollar)
{
    cr_assert(target_is("p2p/dev", NULL));       /* no parent level */
    cr_assert(target_is("/p2p/dev", NULL));      /* the parent is empty */
    cr_assert(target_is("app/p2p/", NULL));      /* empty client id */
    cr_assert(target_is("app/p2p", NULL));
    cr_assert(target_is("app/P2P/dev", NULL));   /* the level is case-sensitive */
    cr_assert(target_is("app/xp2p/dev", NULL));
    cr_assert(target_is("app/p2p/dev/more", NULL));
    cr_assert(target_is("$SYS/p2p/dev", NULL));
    cr_assert(target_is("a", NULL));
}

static bool group_is(const char *client_id, int expected_len)
{
    uint16_t len = 0;
    if (!iot_group_device_parse(S(client_id), &len))
        return expected_len < 0;
    return (int)len == expected_len;
}

Test(iot, group_device_ids)
{
    char longest[IOT_GROUP_LEN_MAX + 3 + IOT_DEVICE_LEN_MAX + 2];
    memset(longest, 'g', IOT_GROUP_LEN_MAX);
    memcpy(longest + IOT_GROUP_LEN_MAX, "@@@", 3);
    memset(longest + IOT_GROUP_LEN_MAX + 3, 'd', IOT_DEVICE_LEN_MAX);
    longest[IOT_GROUP_LEN_MAX + 3 + IOT_DEVICE_LEN_MAX] = '\0';
    cr_assert(group_is("GID_a@@@dev", 5));
    cr_assert(group_is("g@@@d", 1));
    cr_assert(group_is(longest, IOT_GROUP_LEN_MAX));
    longest[IOT_GROUP_LEN_MAX + 3 + IOT_DEVICE_LEN_MAX] = 'd'; /* device one byte too long */
    longest[IOT_GROUP_LEN_MAX + 3 + IOT_DEVICE_LEN_MAX + 1] = '\0';
    cr_assert(group_is(longest, -1));
    cr_assert(group_is("", -1));
    cr_assert(group_is("plain", -1));
    cr_assert(group_is("@@@dev", -1));
    cr_assert(group_is("grp@@@", -1));
    cr_assert(group_is("a@@@b@@@c", -1));
    cr_assert(group_is("a@@b", -1));
    cr_assert(group_is("a@@@@b", 1)); /* split at the first "@@@": device "@b" */
}
