/* core/topic.c - topic name and filter validation, single-pair matching and $share parsing.
 *
 * Pure functions over borrowed slices; any thread; no allocation. UTF-8 validity is checked by
 * the codec, not here. Multi-subscription matching lives in core/subtree.c and core/retain.c.
 */
#include "core/topic.h"

#include <string.h>

#define TOPIC_SHARE_PREFIX "$share/"
#define TOPIC_SHARE_PREFIX_LEN 7u

STATIC_ASSERT(sizeof(TOPIC_SHARE_PREFIX) - 1 == TOPIC_SHARE_PREFIX_LEN, "prefix length");

bool topic_level_next(struct slice s, uint32_t *pos, struct slice *level)
{
    ASSERT_HOT(pos != NULL && level != NULL);
    uint32_t start = *pos;
    if (start > s.len)
        return false;
    const uint8_t *slash = NULL;
    if (start < s.len)
        slash = memchr(s.ptr + start, '/', s.len - start);
    uint32_t end = slash != NULL ? (uint32_t)(slash - s.ptr) : s.len;
    level->ptr = s.ptr + start;
    level->len = end - start;
    *pos = end + 1; /* past the '/', or past the end: the next call returns false */
    return true;
}

/* Counts the levels of a non-empty `s` (one more than its '/' count). */
static uint32_t level_count(struct slice s)
{
    uint32_t count = 1;
    for (uint32_t i = 0; i < s.len; i++)
        count += s.ptr[i] == '/';
    return count;
}

bool topic_name_valid(struct slice name)
{
    if (name.len == 0 || name.len > TOPIC_LEN_MAX)
        return false;
    if (memchr(name.ptr, '+', name.len) != NULL || memchr(name.ptr, '#', name.len) != NULL)
        return false;
    return level_count(name) <= TOPIC_LEVELS_MAX;
}

bool topic_filter_valid(struct slice filter)
{
    if (filter.len == 0 || filter.len > TOPIC_LEN_MAX)
        return false;
    uint32_t levels = 0;
    uint32_t pos = 0;
    struct slice level;
    while (topic_level_next(filter, &pos, &level)) {
        levels++;
        bool has_plus = memchr(level.ptr, '+', level.len) != NULL;
        bool has_hash = memchr(level.ptr, '#', level.len) != NULL;
        if ((has_plus || has_hash) && level.len != 1)
            return false; /* "a+", "+a", "##": a wildcard must be the whole level */
        if (has_hash && pos <= filter.len)
            return false; /* '#' followed by more levels: "a/#/b" */
    }
    return levels <= TOPIC_LEVELS_MAX;
}

/* Matching walks both strings once, level by level, without splitting them first.
 *
 * At the top of each iteration fi and ni sit at the start of a level in the filter and the
 * name. A '#' level matches everything that is left (validity puts it last). A '+' level skips
 * one name level, possibly empty. A literal level must equal the name level byte for byte and
 * end where the name level ends. After a level both sides sit at a '/' or at their end:
 * both at the end is a match; the filter ending first is a mismatch; the name ending first
 * matches only if what is left of the filter is exactly "/#", because '#' also matches the
 * parent level ("sport/#" matches "sport"). The '$' rule (MQTT-4.7.2-1) is checked up front.
 * Rejected alternative: splitting both into level arrays costs two passes and stack space.
 */
bool topic_match(struct slice filter, struct slice name)
{
    ASSERT_HOT(filter.len > 0 && name.len > 0);
    if (name.ptr[0] == '$' && (filter.ptr[0] == '+' || filter.ptr[0] == '#'))
        return false;
    return topic_match_levels(filter, name);
}

bool topic_match_levels(struct slice filter, struct slice name)
{
    ASSERT_HOT(filter.len > 0);
    const uint8_t *f = filter.ptr;
    const uint8_t *n = name.ptr;
    uint32_t flen = filter.len;
    uint32_t nlen = name.len;
    uint32_t fi = 0;
    uint32_t ni = 0;
    for (;;) {
        if (fi < flen && f[fi] == '#')
            return true;
        if (fi < flen && f[fi] == '+') {
            fi++;
            while (ni < nlen && n[ni] != '/')
                ni++;
        } else {
            while (fi < flen && f[fi] != '/') {
                if (ni >= nlen || n[ni] != f[fi])
                    return false;
                fi++;
                ni++;
            }
            if (ni < nlen && n[ni] != '/')
                return false;
        }
        bool is_filter_end = fi == flen;
        bool is_name_end = ni == nlen;
        if (is_filter_end)
            return is_name_end;
        if (is_name_end)
            return fi + 2 == flen && f[fi + 1] == '#';
        fi++;
        ni++;
    }
}

int topic_shared_parse(struct slice filter, struct slice *group, struct slice *real_filter)
{
    ASSERT(group != NULL && real_filter != NULL);
    if (filter.len < TOPIC_SHARE_PREFIX_LEN ||
        memcmp(filter.ptr, TOPIC_SHARE_PREFIX, TOPIC_SHARE_PREFIX_LEN) != 0)
        return 0;
    struct slice rest = {
        .ptr = filter.ptr + TOPIC_SHARE_PREFIX_LEN,
        .len = filter.len - TOPIC_SHARE_PREFIX_LEN,
    };
    const uint8_t *slash = memchr(rest.ptr, '/', rest.len);
    if (slash == NULL)
        return -1; /* "$share/group": no filter */
    struct slice name = { rest.ptr, (uint32_t)(slash - rest.ptr) };
    if (name.len == 0)
        return -1;
    if (memchr(name.ptr, '+', name.len) != NULL || memchr(name.ptr, '#', name.len) != NULL)
        return -1;
    struct slice inner = { slash + 1, rest.len - name.len - 1 };
    if (!topic_filter_valid(inner))
        return -1; /* empty or malformed filter after the group */
    *group = name;
    *real_filter = inner;
    return 1;
}
