/* tests/unit/test_lifetime.c - message expiry arithmetic and session expiry rules
 * (core/lifetime.h). */
#include <criterion/criterion.h>

#include "core/lifetime.h"
#include "core/msg.h"
#include "core/mqtt.h"

#define SEC 1000000000ull

TestSuite(lifetime);

Test(lifetime, left_is_full_interval_within_first_second)
{
    cr_assert_eq(lifetime_left_s(60, 100 * SEC, 100 * SEC), 60);
    cr_assert_eq(lifetime_left_s(60, 100 * SEC, 100 * SEC + SEC - 1), 60);
}

Test(lifetime, left_drops_one_per_whole_second)
{
    cr_assert_eq(lifetime_left_s(60, 100 * SEC, 101 * SEC), 59);
    cr_assert_eq(lifetime_left_s(60, 100 * SEC, 159 * SEC + SEC - 1), 1);
}

Test(lifetime, expired_at_exactly_the_interval)
{
    cr_assert_eq(lifetime_left_s(1, 100 * SEC, 101 * SEC - 1), 1);
    cr_assert_eq(lifetime_left_s(1, 100 * SEC, 101 * SEC), 0);
    cr_assert_eq(lifetime_left_s(1, 100 * SEC, 500 * SEC), 0);
}

Test(lifetime, zero_interval_is_expired_at_once)
{
    cr_assert_eq(lifetime_left_s(0, 100 * SEC, 100 * SEC), 0);
}

Test(lifetime, clock_going_back_counts_as_no_time)
{
    cr_assert_eq(lifetime_left_s(30, 100 * SEC, 90 * SEC), 30);
}

Test(lifetime, largest_interval_does_not_wrap)
{
    cr_assert_eq(lifetime_left_s(UINT32_MAX, 0, 2 * SEC), UINT32_MAX - 2);
    cr_assert_eq(lifetime_left_s(UINT32_MAX, 0, UINT64_MAX), 0);
}

/* A message whose travelling properties are `block` (wire form, no length prefix). */
static struct msg *message_with(const uint8_t *block, uint32_t len, uint64_t time_ns)
{
    struct mqtt_props props = { .raw = { block, len } };
    struct msg *m = msg_create(slice_from_cstr("a/b"), slice_from_cstr("x"), len ? &props : NULL,
                               slice_from_cstr("c"), 1, false, 0);
    cr_assert_not_null(m);
    m->time_ns = time_ns;
    return m;
}

Test(lifetime, message_without_expiry_never_expires)
{
    struct msg *m = message_with(NULL, 0, 0);
    cr_assert_eq(lifetime_msg_left_s(m, UINT64_MAX), LIFETIME_NO_EXPIRY);
    cr_assert_not(lifetime_msg_expired(m, UINT64_MAX));
    msg_release(m);
}

Test(lifetime, message_expiry_counts_from_its_receive_time)
{
    const uint8_t block[] = {
        MQTT_PROP_MESSAGE_EXPIRY, 0x00, 0x00, 0x00, 0x0a, /* 10 s */
    };
    struct msg *m = message_with(block, sizeof(block), 1000 * SEC);
    cr_assert_eq(lifetime_msg_left_s(m, 1000 * SEC), 10);
    cr_assert_eq(lifetime_msg_left_s(m, 1003 * SEC), 7);
    cr_assert_not(lifetime_msg_expired(m, 1009 * SEC));
    cr_assert(lifetime_msg_expired(m, 1010 * SEC));
    msg_release(m);
}

Test(lifetime, session_expiry_is_capped_by_the_maximum)
{
    cr_assert_eq(lifetime_session_expiry(3600, LIFETIME_NEVER), 3600);
    cr_assert_eq(lifetime_session_expiry(LIFETIME_NEVER, 60), 60);
    cr_assert_eq(lifetime_session_expiry(0, 60), 0);
    cr_assert_eq(lifetime_session_expiry(10, 0), 0);
}

Test(lifetime, session_expires_after_its_interval_offline)
{
    cr_assert_not(lifetime_session_expired(2, 1000, 2999));
    cr_assert(lifetime_session_expired(2, 1000, 3000));
    cr_assert(lifetime_session_expired(0, 1000, 1000), "expiry 0 ends at once");
    cr_assert_not(lifetime_session_expired(LIFETIME_NEVER, 0, UINT64_MAX));
    cr_assert_not(lifetime_session_expired(1, 5000, 4000), "offline in the future: not yet");
}
