/* core/topic.h - topic name and topic filter rules, and matching one name against one filter.
 *
 * Pure functions over borrowed slices; any thread. UTF-8 validity is the codec's job
 * (codec_utf8_valid); these check only MQTT's level rules.
 */
#ifndef KEELMQ_CORE_TOPIC_H
#define KEELMQ_CORE_TOPIC_H

#include "core/base.h"

#define TOPIC_LEN_MAX 65535u
#define TOPIC_LEVELS_MAX 256u /* deeper names/filters are rejected (limit, documented) */

/* A PUBLISH topic name: 1..65535 bytes, no '+' or '#', at most TOPIC_LEVELS_MAX levels. */
bool topic_name_valid(struct slice name);

/* A subscription filter: non-empty; '#' only as the whole last level; '+' only as a whole
 * level; at most TOPIC_LEVELS_MAX levels. Shared filters ($share/...) are checked by
 * topic_shared_parse. */
bool topic_filter_valid(struct slice filter);

/* True if `name` matches `filter` (both valid). A name starting with '$' is not matched by a
 * filter whose first level is '+' or '#' (MQTT-4.7.2-1). Empty levels are levels. */
bool topic_match(struct slice filter, struct slice name);
/* topic_match without the '$' rule, for matching from a level other than the first (the
 * subscription tree's tails, core/trie.h): `filter` non-empty, `name` the rest of a topic
 * from the level `filter` starts at, possibly empty (one empty level). */
bool topic_match_levels(struct slice filter, struct slice name);

/* If `filter` starts with "$share/", splits it into the group and the real filter and returns
 * 1; returns 0 for a non-shared filter and -1 for a malformed shared filter (empty or
 * wildcard group, missing filter). */
int topic_shared_parse(struct slice filter, struct slice *group, struct slice *real_filter);

/* Iterates the levels of a non-empty `s`: start with *pos = 0; each call sets *level, advances
 * *pos and returns true, until every level was returned, then returns false. "a//b" yields
 * "a", "", "b"; "a/" yields "a", "". */
bool topic_level_next(struct slice s, uint32_t *pos, struct slice *level);

#endif
