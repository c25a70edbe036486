/* core/shared.c - shared subscription groups: membership on the owner shard, picking a member
 * per message, and giving unacknowledged deliveries back to the group (core/shared.h).
 *
 * Shard thread only (shared_create/shared_destroy: main thread, before and after the shards
 * run). The owner's state is a table of groups by key and a subscription tree (filter ->
 * group); a member is (client id, home shard, options, subscription identifier, online).
 *
 * Why an owner shard, and not "every shard picks": round robin and sticky need state that one
 * place changes, and a member must be chosen once per message although every shard sees every
 * message. Routing through the owner costs one extra note (and one copy of a message
 * published on another shard) per group delivery, and needs no cross-shard lock.
 */
#include "core/shared.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/catchup.h"
#include "core/conn.h"
#include "core/hash.h"
#include "core/lifetime.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/mqtt.h"
#include "core/offset_set.h"
#include "core/persist.h"
#include "core/session.h"
#include "core/shard.h"
#include "core/subtree.h"
#include "core/topic.h"

#define SHARED_PREFIX "$share/"
#define SHARED_PREFIX_LEN 7u
#define SHARED_MEMBERS_MAX 65536u   /* members per group */
#define SHARED_TABLE_MIN 64u
#define SHARED_BACKLOG_CURSOR_MAX (1u << 20) /* messages a group with a cursor keeps at most */

struct shared_member {
    char *client_id;         /* owned, NUL-terminated */
    uint16_t client_id_len;
    uint16_t home;
    uint8_t options;         /* granted QoS, retain as published */
    bool is_online;
    bool is_persistent;
    uint32_t sub_id;
};

/* The catch-up of a group's cursor against its members' queues (shared_tick). */
enum group_pace {
    PACE_RUN = 0,       /* reads on once the homes answered what was sent */
    PACE_PAUSED = 1,    /* a member's queue was full: what came back is kept; next tick, sent
                         * again */
};

struct shared_group {
    uint64_t key;
    struct shared_group *next;   /* table chain */
    char *name;                  /* owned: "$share/{group}/{filter}" */
    uint16_t name_len;
    struct slice filter;         /* into `name` */
    struct shared_member *members; /* in join order (the hash policy depends on it) */
    uint32_t member_count;
    uint32_t member_cap;
    uint32_t online_count;
    uint32_t next_rr;            /* round robin: where the next search starts */
    uint32_t sticky_idx;         /* sticky: the chosen member, or UINT32_MAX */
    struct session *cursor;      /* the durable group cursor (see below), or NULL */
    uint8_t pace;                /* enum group_pace */
    bool resume_wanted;          /* PACE_PAUSED and a member made room: see shared_poll */
    uint32_t paced_out;          /* paced DELIVERs to other shards not answered yet */
    /* Logged QoS 1/2 deliveries of a group with a cursor from the pick of a member until their
     * home reports their end (DONE) or gives them back (RETURN). */
    struct offset_set outstanding;
    /* Messages kept while no member is online (QoS 1/2, owned by this shard), FIFO ring. */
    struct msg **backlog;
    uint32_t backlog_head;
    uint32_t backlog_len;
    uint32_t backlog_cap;
};

struct shared {
    struct shared_group **table;
    uint32_t table_mask;
    uint32_t group_count;
    struct subtree *tree;        /* real filter -> group */
    struct shared_group **scratch; /* groups matched by one routing pass */
    uint32_t scratch_len;
    uint32_t scratch_cap;
    uint64_t rng;                /* the random and sticky policies (xorshift64) */
    /* Notes to this shard itself while restoring sessions: handled once all are restored, so
     * a group finds its restored cursor (whatever order recovery lists the sessions in). */
    bool is_restoring;
    struct shared_note **deferred;
    uint32_t deferred_len;
    uint32_t deferred_cap;
    uint64_t delivered;
    uint64_t backlogged;
    uint64_t dropped;            /* backlog full, out of memory, or no group to return to */
    uint64_t returned;
    uint64_t untracked;          /* deliveries not counted as outstanding: out of memory */
    uint32_t paused_count;       /* groups not at PACE_RUN */
    uint32_t resume_wanted;      /* groups with resume_wanted set */
    /* DONE notes being filled, per owner shard (shared_delivery_end), posted by shared_poll. */
    struct shared_note *done[SHARD_MAX];
    uint32_t done_cap[SHARD_MAX];  /* entries room of done[i] */
    uint32_t done_pending;         /* owners with a note being filled */
};

struct shared *shared_create(void)
{
    struct shared *sh = calloc(1, sizeof(*sh));
    if (sh == NULL)
        return NULL;
    sh->table = calloc(SHARED_TABLE_MIN, sizeof(*sh->table));
    sh->tree = subtree_create();
    if (sh->table == NULL || sh->tree == NULL) {
        shared_destroy(sh);
        return NULL;
    }
    sh->table_mask = SHARED_TABLE_MIN - 1;
    sh->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)base_now_ms();
    return sh;
}

static void group_free(struct shared_group *g)
{
    for (uint32_t i = 0; i < g->member_count; i++)
        free(g->members[i].client_id);
    free(g->members);
    for (uint32_t i = 0; i < g->backlog_len; i++)
        msg_release(g->backlog[(g->backlog_head + i) % g->backlog_cap]);
    free(g->backlog);
    offset_set_clear(&g->outstanding);
    free(g->name);
    free(g);
}

void shared_destroy(struct shared *sh)
{
    if (sh == NULL)
        return;
    for (uint32_t i = 0; sh->table != NULL && i <= sh->table_mask; i++) {
        struct shared_group *g = sh->table[i];
        while (g != NULL) {
            struct shared_group *next = g->next;
            group_free(g);
            g = next;
        }
    }
    free(sh->table);
    if (sh->tree != NULL)
        subtree_destroy(sh->tree);
    free(sh->scratch);
    free(sh->deferred);
    for (uint32_t i = 0; i < SHARD_MAX; i++)
        free(sh->done[i]);
    free(sh);
}

bool shared_filter_is_shared(const char *filter, uint32_t filter_len)
{
    return filter_len >= SHARED_PREFIX_LEN && memcmp(filter, SHARED_PREFIX, SHARED_PREFIX_LEN) == 0;
}

static uint64_t group_key(struct slice name)
{
    uint64_t key = hash_bytes(name.ptr, name.len);
    return key != 0 ? key : 1; /* 0 means "not shared" in struct session_out */
}

static uint16_t group_owner(const struct shard *s, uint64_t key)
{
    return (uint16_t)(key % s->count);
}

/* ---- Notes ---------------------------------------------------------------------------- */

/* A note with room for `name` and `client_id` (either may be empty). NULL when out of memory. */
static struct shared_note *note_create(uint8_t op, uint64_t key, struct slice name,
                                       struct slice client_id)
{
    ASSERT(name.len <= UINT16_MAX && client_id.len <= UINT16_MAX);
    struct shared_note *n = calloc(1, sizeof(*n) + name.len + client_id.len);
    if (n == NULL)
        return NULL;
    n->op = op;
    n->key = key;
    n->name_len = (uint16_t)name.len;
    n->client_id_len = (uint16_t)client_id.len;
    if (name.len > 0)
        memcpy(n->text, name.ptr, name.len);
    if (client_id.len > 0)
        memcpy(n->text + name.len, client_id.ptr, client_id.len);
    return n;
}

static struct slice note_name(const struct shared_note *n)
{
    return (struct slice){ (const uint8_t *)n->text, n->name_len };
}

static struct slice note_client_id(const struct shared_note *n)
{
    return (struct slice){ (const uint8_t *)n->text + n->name_len, n->client_id_len };
}

void shared_note_release(struct shared_note *n)
{
    if (n->msg != NULL)
        msg_release(n->msg);
    free(n);
}

/* Sends `n` (taking it) to shard `to`, or handles it at once when that is this shard. */
static void note_send(struct shard *s, uint16_t to, struct shared_note *n)
{
    struct shared *sh = s->shared;
    if (to == s->id && sh->is_restoring) {
        if (sh->deferred_len == sh->deferred_cap) {
            uint32_t cap = sh->deferred_cap ? sh->deferred_cap * 2 : 16;
            struct shared_note **d = realloc(sh->deferred, cap * sizeof(*d));
            if (d == NULL) {
                LOG_WARN("shared", "note_lost reason=out_of_memory");
                shared_note_release(n);
                return;
            }
            sh->deferred = d;
            sh->deferred_cap = cap;
        }
        sh->deferred[sh->deferred_len++] = n;
        return;
    }
    if (to == s->id) {
        shared_on_note(s, n);
        shared_note_release(n);
        return;
    }
    shard_post(s, to, (struct note){ .kind = NOTE_SHARED, .ptr = n });
}

void shared_restore_begin(struct shard *s)
{
    s->shared->is_restoring = true;
}

void shared_restore_end(struct shard *s)
{
    struct shared *sh = s->shared;
    ASSERT(sh->is_restoring);
    sh->is_restoring = false;
    for (uint32_t i = 0; i < sh->deferred_len; i++) {
        shared_on_note(s, sh->deferred[i]);
        shared_note_release(sh->deferred[i]);
    }
    sh->deferred_len = 0;
}

/* ---- Owner: groups and members -------------------------------------------------------- */

static struct shared_group *group_find(const struct shared *sh, uint64_t key)
{
    for (struct shared_group *g = sh->table[key & sh->table_mask]; g != NULL; g = g->next)
        if (g->key == key)
            return g;
    return NULL;
}

static void table_grow(struct shared *sh)
{
    uint32_t cap = (sh->table_mask + 1) * 2;
    struct shared_group **t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return; /* Longer chains; still correct. */
    for (uint32_t i = 0; i <= sh->table_mask; i++) {
        struct shared_group *g = sh->table[i];
        while (g != NULL) {
            struct shared_group *next = g->next;
            g->next = t[g->key & (cap - 1)];
            t[g->key & (cap - 1)] = g;
            g = next;
        }
    }
    free(sh->table);
    sh->table = t;
    sh->table_mask = cap - 1;
}

/* A new group for `name` (a well-formed shared filter). NULL when out of memory or invalid. */
static struct shared_group *group_create(struct shard *s, uint64_t key, struct slice name)
{
    struct shared *sh = s->shared;
    struct slice group_name, filter;
    if (topic_shared_parse(name, &group_name, &filter) != 1)
        return NULL; /* Checked on the home shard; never trusted either. */
    struct shared_group *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->name = malloc(name.len + 1u);
    if (g->name == NULL) {
        free(g);
        return NULL;
    }
    memcpy(g->name, name.ptr, name.len);
    g->name[name.len] = '\0';
    g->name_len = (uint16_t)name.len;
    g->filter = (struct slice){ (const uint8_t *)g->name + (filter.ptr - name.ptr), filter.len };
    g->key = key;
    g->sticky_idx = UINT32_MAX;
    g->cursor = session_find(s->sessions, name); /* restored after a restart, if any */
    if (subtree_add(sh->tree, g->filter, g, 0, 0) < 0) {
        free(g->name);
        free(g);
        return NULL;
    }
    if (sh->group_count >= sh->table_mask) /* load factor 1 */
        table_grow(sh);
    g->next = sh->table[key & sh->table_mask];
    sh->table[key & sh->table_mask] = g;
    sh->group_count++;
    LOG_INFO("shared", "group_created group=%s", g->name);
    return g;
}

static void group_remove(struct shard *s, struct shared_group *g)
{
    struct shared *sh = s->shared;
    struct shared_group **pp = &sh->table[g->key & sh->table_mask];
    while (*pp != g) {
        ASSERT(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = g->next;
    sh->group_count--;
    if (g->pace != PACE_RUN)
        sh->paused_count--;
    if (g->resume_wanted)
        sh->resume_wanted--;
    (void)subtree_remove(sh->tree, g->filter, g); /* Added with the group. */
    if (g->cursor != NULL) {
        struct session *cursor = g->cursor;
        g->cursor = NULL;
        session_destroy(s, cursor); /* Its END is journaled, its filter released. */
    }
    if (g->backlog_len > 0) {
        sh->dropped += g->backlog_len;
        LOG_WARN("shared", "group_gone group=%s dropped=%u", g->name, g->backlog_len);
    }
    LOG_INFO("shared", "group_removed group=%s", g->name);
    group_free(g);
}

static int64_t member_find(const struct shared_group *g, struct slice client_id)
{
    for (uint32_t i = 0; i < g->member_count; i++) {
        const struct shared_member *m = &g->members[i];
        if (m->client_id_len == client_id.len &&
            memcmp(m->client_id, client_id.ptr, client_id.len) == 0)
            return i;
    }
    return -1;
}

/* Adds a member (not yet online). Returns it, or NULL when out of memory or full. */
static struct shared_member *member_add(struct shared_group *g, struct slice client_id,
                                        uint16_t home)
{
    if (g->member_count >= SHARED_MEMBERS_MAX)
        return NULL;
    if (g->member_count == g->member_cap) {
        uint32_t cap = g->member_cap ? g->member_cap * 2 : 4;
        struct shared_member *n = realloc(g->members, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        g->members = n;
        g->member_cap = cap;
    }
    char *id = malloc(client_id.len + 1u);
    if (id == NULL)
        return NULL;
    memcpy(id, client_id.ptr, client_id.len);
    id[client_id.len] = '\0';
    struct shared_member *m = &g->members[g->member_count++];
    *m = (struct shared_member){ .client_id = id, .client_id_len = (uint16_t)client_id.len,
                                 .home = home };
    return m;
}

/* Removes member `i`, keeping the order of the others (the hash policy maps publishers to
 * positions among the online members). */
static void member_remove(struct shared_group *g, uint32_t i)
{
    ASSERT(i < g->member_count);
    if (g->members[i].is_online)
        g->online_count--;
    free(g->members[i].client_id);
    memmove(&g->members[i], &g->members[i + 1], (g->member_count - i - 1) * sizeof(*g->members));
    g->member_count--;
    if (g->sticky_idx != UINT32_MAX && g->sticky_idx > i)
        g->sticky_idx--;
    else if (g->sticky_idx == i)
        g->sticky_idx = UINT32_MAX;
}

/* ---- Owner: picking and delivering ----------------------------------------------------- */

static uint64_t next_random(struct shared *sh)
{
    uint64_t x = sh->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sh->rng = x;
    return x;
}

/* The position of the `nth` online member (nth < online_count). */
static uint32_t nth_online(const struct shared_group *g, uint32_t nth)
{
    ASSERT(nth < g->online_count);
    for (uint32_t i = 0; i < g->member_count; i++) {
        if (!g->members[i].is_online)
            continue;
        if (nth == 0)
            return i;
        nth--;
    }
    ASSERT(false); /* online_count counts the online members */
    return 0;
}

/* The member that gets `m` by the configured policy, or UINT32_MAX when none is online. */
static uint32_t pick_member(struct shard *s, struct shared_group *g, const struct msg *m)
{
    if (g->online_count == 0)
        return UINT32_MAX;
    switch (s->cfg->shared_policy) {
    case SHARED_POLICY_RANDOM:
        return nth_online(g, (uint32_t)(next_random(s->shared) % g->online_count));
    case SHARED_POLICY_STICKY:
        if (g->sticky_idx >= g->member_count || !g->members[g->sticky_idx].is_online)
            g->sticky_idx = nth_online(g, (uint32_t)(next_random(s->shared) % g->online_count));
        return g->sticky_idx;
    case SHARED_POLICY_HASH:
        return nth_online(g, (uint32_t)(hash_bytes(m->client_id.ptr, m->client_id.len) %
                                        g->online_count));
    case SHARED_POLICY_ROUND_ROBIN:
    default:
        for (uint32_t k = 0; k < g->member_count; k++) {
            uint32_t i = (g->next_rr + k) % g->member_count;
            if (g->members[i].is_online) {
                g->next_rr = i + 1;
                return i;
            }
        }
        ASSERT(false); /* online_count > 0 */
        return UINT32_MAX;
    }
}

/* ---- Owner: the durable group cursor --------------------------------------------------
 *
 * A group with a persistent member has a cursor: a persistent session of the owner shard whose
 * client id is the group string (CONNECT refuses client ids starting with "$share/", so none
 * collides; its home is the owner by construction, both are hash(string) % shard count) and
 * whose one subscription is the group's filter at QoS 2. It is never connected and not in the
 * shard's subscription tree; it exists for its log positions. Everything else is the
 * persistent-session machinery as it is: its STATE, CURSOR and END are journaled and restored
 * by recovery, its wildcard filter is in the registry (so every shard indexes the group's
 * messages), and it reads the log with catch-up requests.
 *
 * While a member is online, the group takes a message only where the cursor is LIVE and the
 * message lies past its position (cursor_admit, the same rule as session_deliver), and moves
 * the position. When the last member goes offline, every origin becomes BEHIND and the cursor
 * is journaled: messages are then not copied anywhere. When a member comes back, the cursor
 * catches up origin by origin; each answer's records land in its queue (session_deliver_logged)
 * and go on at once to the online members by the policy (shared_cursor_pump), and at the end
 * of each origin's index it is LIVE again, exactly as for a session. */

static bool group_has_persistent(const struct shared_group *g)
{
    for (uint32_t i = 0; i < g->member_count; i++)
        if (g->members[i].is_persistent)
            return true;
    return false;
}

/* Creates the cursor of `g`. NULL when out of memory (the group then keeps what arrives while
 * it is offline in memory only). */
static struct session *cursor_create(struct shard *s, struct shared_group *g)
{
    ASSERT(group_owner(s, g->key) == s->id);
    struct session *c = session_create(s, (struct slice){ (const uint8_t *)g->name,
                                                          g->name_len });
    if (c == NULL)
        return NULL;
    c->version = MQTT_V5;
    c->persistent = true;
    c->expiry_s = LIFETIME_NEVER; /* ends with its group */
    if (session_sub_add(c, g->filter, 2, 0) != 0) {
        c->persistent = false;
        session_destroy(s, c);
        return NULL;
    }
    session_set_persistent(s, c, true); /* positions, registry, STATE journaled */
    if (c->origins == NULL) {
        session_destroy(s, c);
        return NULL;
    }
    LOG_INFO("shared", "cursor_created group=%s", g->name);
    return c;
}

/* After a membership change: the cursor exists if a member is persistent; with no member
 * online it reads nothing live (BEHIND everywhere, journaled), with one it catches up. */
static void cursor_sync(struct shard *s, struct shared_group *g)
{
    if (g->cursor == NULL && group_has_persistent(g))
        g->cursor = cursor_create(s, g);
    struct session *c = g->cursor;
    if (c == NULL || c->origins == NULL)
        return;
    if (g->online_count == 0) {
        bool is_moved = false;
        for (uint16_t i = 0; i < s->count; i++) {
            if (c->origins[i].mode == ORIGIN_LIVE) {
                c->origins[i].mode = ORIGIN_BEHIND;
                is_moved = true;
            }
        }
        if (is_moved) {
            (void)persist_journal_cursor(s, c); /* Counted and logged by persist on failure. */
            LOG_INFO("shared", "group_offline group=%s", g->name);
        }
        return;
    }
    bool can_read = g->pace == PACE_RUN && g->backlog_len == 0 && g->paced_out == 0 &&
                    !s->stopping;
    for (uint16_t i = 0; i < s->count && can_read; i++)
        if (c->origins[i].mode == ORIGIN_BEHIND)
            catchup_start(s, c, i);
}

/* Whether the group takes routed message `m` now (see above); moves the cursor if so. */
static bool cursor_admit(struct session *c, const struct msg *m)
{
    if (c->origins == NULL || m->log_off == MSG_NOT_LOGGED)
        return true;
    struct session_origin *o = &c->origins[m->origin_shard];
    if (o->mode != ORIGIN_LIVE)
        return false; /* Read from the log when a member is back. */
    uint64_t end = m->log_off + m->log_len;
    uint64_t *pos = m->qos == 0 ? &o->pos0 : &o->pos1;
    if (end <= *pos)
        return false; /* Already read from the log. */
    *pos = end;
    c->cursor_dirty = true;
    return true;
}

bool shared_is_cursor(const struct session *sess)
{
    return shared_filter_is_shared(sess->client_id, sess->client_id_len);
}

static struct shared_group *cursor_group(struct shard *s, const struct session *c)
{
    struct shared_group *g =
        group_find(s->shared, group_key((struct slice){ (const uint8_t *)c->client_id,
                                                        c->client_id_len }));
    return g != NULL && g->cursor == c ? g : NULL;
}

bool shared_cursor_wants(struct shard *s, const struct session *c)
{
    const struct shared_group *g = cursor_group(s, c);
    return g != NULL && g->online_count > 0;
}

void shared_cursor_floor(struct shard *s, const struct session *c, uint64_t *pos1)
{
    const struct shared_group *g = cursor_group(s, c);
    if (g == NULL)
        return;
    for (uint32_t i = 0; i < g->backlog_len; i++) {
        const struct msg *m = g->backlog[(g->backlog_head + i) % g->backlog_cap];
        if (m->log_off != MSG_NOT_LOGGED && m->origin_shard < s->count)
            pos1[m->origin_shard] = MIN(pos1[m->origin_shard], m->log_off);
    }
    offset_set_floor(&g->outstanding, pos1, s->count);
}

/* Whether `m` is older than everything `g` keeps from its origin (it lowers the floor). */
static bool backlog_lowers_floor(const struct shared_group *g, const struct msg *m)
{
    if (m->log_off == MSG_NOT_LOGGED)
        return false;
    for (uint32_t i = 0; i < g->backlog_len; i++) {
        const struct msg *k = g->backlog[(g->backlog_head + i) % g->backlog_cap];
        if (k->origin_shard == m->origin_shard && k->log_off != MSG_NOT_LOGGED &&
            k->log_off <= m->log_off)
            return false;
    }
    return true;
}

/* Keeps `m` (QoS 1/2) for the group until a member comes online; the cursor's journal learns
 * at once when that lowers its floor (shared_cursor_floor). */
static void backlog_push(struct shard *s, struct shared_group *g, const struct msg *m)
{
    struct shared *sh = s->shared;
    /* Room for what the catch-ups in flight may give back (one answer per origin) too. A group
     * with a cursor also takes back what was on its way when its members' queues filled up
     * (then its cursor stops taking live messages: cursor_fall_behind), bounded by the notes
     * in flight; its limit is a guard against memory running away, not a policy. */
    uint32_t max = MAX(s->cfg->max_queued_messages, 2u * CATCHUP_RECORDS * s->count);
    if (g->cursor != NULL)
        max = MAX(max, SHARED_BACKLOG_CURSOR_MAX);
    if (g->backlog_len >= max) {
        if ((sh->dropped++ & 1023) == 0)
            LOG_WARN("shared", "backlog_full group=%s max=%u", g->name, max);
        return;
    }
    if (g->backlog_len == g->backlog_cap) {
        uint32_t cap = g->backlog_cap ? g->backlog_cap * 2 : 16;
        struct msg **n = malloc(cap * sizeof(*n));
        if (n == NULL) {
            sh->dropped++;
            return;
        }
        for (uint32_t i = 0; i < g->backlog_len; i++)
            n[i] = g->backlog[(g->backlog_head + i) % g->backlog_cap];
        free(g->backlog);
        g->backlog = n;
        g->backlog_head = 0;
        g->backlog_cap = cap;
    }
    struct msg *own = msg_keep(m, s->id);
    if (own == NULL) {
        sh->dropped++;
        return;
    }
    bool lowers = g->cursor != NULL && g->cursor->journaled && backlog_lowers_floor(g, m);
    g->backlog[(g->backlog_head + g->backlog_len++) % g->backlog_cap] = own;
    sh->backlogged++;
    if (lowers)
        (void)persist_journal_cursor(s, g->cursor); /* Counted and logged on failure. */
}

/* The members' queues are full: the cursor stops taking live messages (they stay in the log,
 * read when the members have room again, as for a slow persistent session). */
static void cursor_fall_behind(struct shard *s, struct shared_group *g)
{
    struct session *c = g->cursor;
    if (c == NULL || c->origins == NULL)
        return;
    for (uint16_t i = 0; i < s->count; i++)
        if (c->origins[i].mode == ORIGIN_LIVE)
            c->origins[i].mode = ORIGIN_BEHIND;
}

/* A member's queue was full: what came back is kept and sent again once the members answered
 * (shared_poll) or on the tick. */
static void group_pause(struct shard *s, struct shared_group *g)
{
    if (g->pace == PACE_RUN)
        s->shared->paused_count++;
    g->pace = PACE_PAUSED;
    cursor_fall_behind(s, g);
}

/* Whether the delivery of `m` at `qos` to a member counts as outstanding: a logged QoS 1/2
 * message of a group with a cursor. */
static bool is_trackable(const struct shared_group *g, const struct msg *m, uint8_t qos)
{
    return g->cursor != NULL && qos > 0 && m->log_off != MSG_NOT_LOGGED;
}

/* Counts the delivery as outstanding if it is trackable. False when it is not counted. */
static bool track_outstanding(struct shared *sh, struct shared_group *g, const struct msg *m,
                              uint8_t qos)
{
    if (!is_trackable(g, m, qos))
        return false;
    if (offset_set_add(&g->outstanding, m->origin_shard, m->log_off) == 0)
        return true;
    if ((sh->untracked++ & 1023) == 0)
        LOG_WARN("shared", "outstanding_untracked reason=out_of_memory group=%s", g->name);
    return false;
}

/* Gives `m` (borrowed) to one member of `g`, or keeps it while none is online. `is_paced`: it
 * was read from the log or kept, so a member with a full queue gives it back to be kept
 * (pausing the catch-up) instead of dropping it. */
static void group_deliver(struct shard *s, struct shared_group *g, const struct msg *m,
                          bool is_paced)
{
    struct shared *sh = s->shared;
    uint32_t i = pick_member(s, g, m);
    if (i == UINT32_MAX) {
        if (m->qos > 0 && g->member_count > 0)
            backlog_push(s, g, m);
        return;
    }
    const struct shared_member *mb = &g->members[i];
    uint8_t qos = MIN(m->qos, (uint8_t)(mb->options & MQTT_SUBOPT_QOS_MASK));
    bool retain = m->retain && (mb->options & MQTT_SUBOPT_RETAIN_AS_PUBLISHED) != 0;
    sh->delivered++;
    struct slice client_id = { (const uint8_t *)mb->client_id, mb->client_id_len };
    if (mb->home == s->id) {
        struct session *sess = session_find(s->sessions, client_id);
        if (sess == NULL || sess->conn == NULL) /* Online here is known synchronously. */
            return;
        /* A group with a cursor never drops a logged message on a full queue: kept and sent
         * again (catch-up deliveries the same, to pace the reading). */
        if ((is_paced || is_trackable(g, m, qos)) && qos > 0 &&
            sess->queue_len >= s->cfg->max_queued_messages) {
            backlog_push(s, g, m);
            group_pause(s, g);
            return;
        }
        session_deliver_shared(s, sess, m, qos, retain, mb->sub_id, g->key,
                               track_outstanding(sh, g, m, qos));
        return;
    }
    struct msg *own = msg_keep(m, s->id);
    struct shared_note *n = own != NULL ? note_create(SHARED_DELIVER, g->key, (struct slice){ 0 },
                                                      client_id)
                                        : NULL;
    if (n == NULL) {
        if (own != NULL)
            msg_release(own);
        sh->dropped++;
        return;
    }
    n->msg = own;
    n->options = qos;
    n->retain = retain;
    n->is_paced = is_paced;
    n->sub_id = mb->sub_id;
    n->is_tracked = track_outstanding(sh, g, m, qos);
    if (is_paced)
        g->paced_out++; /* answered by ACCEPTED or RETURN */
    shard_post(s, mb->home, (struct note){ .kind = NOTE_SHARED, .ptr = n });
}

void shared_cursor_pump(struct shard *s, struct session *c)
{
    struct shared_group *g = cursor_group(s, c);
    /* What the catch-up read, in log order per origin, to the members online now. */
    while (c->queue_len > 0) {
        struct session_out *e = &c->queue[c->queue_head];
        struct msg *m = e->msg;
        c->queue_head = (c->queue_head + 1) % c->queue_cap;
        c->queue_len--;
        if (g != NULL)
            group_deliver(s, g, m, true);
        msg_release(m);
    }
    if (g != NULL)
        cursor_sync(s, g); /* Asks for more where it is still behind. */
}

/* Hands what the group kept (while nobody was online, or when a member's queue was full) to
 * its members, oldest first. */
static void backlog_flush(struct shard *s, struct shared_group *g)
{
    /* At most what it holds now (a local member with a full queue puts it back at the end),
     * and at most what the online members' queues can take: the rest would come back. */
    uint64_t room = (uint64_t)g->online_count * MAX(s->cfg->max_queued_messages, 1u);
    for (uint32_t n = (uint32_t)MIN(g->backlog_len, room);
         n > 0 && g->online_count > 0 && g->pace != PACE_PAUSED; n--) {
        struct msg *m = g->backlog[g->backlog_head];
        g->backlog_head = (g->backlog_head + 1) % g->backlog_cap;
        g->backlog_len--;
        group_deliver(s, g, m, true);
        msg_release(m);
        if (g->cursor != NULL)
            g->cursor->cursor_dirty = true; /* Its floor may rise: journaled on the tick. */
        if (g->pace == PACE_PAUSED && g->backlog_len > 0) {
            /* It went back to the end (a local member is full): first again, keeping order. */
            struct msg *last = g->backlog[(g->backlog_head + g->backlog_len - 1) %
                                          g->backlog_cap];
            g->backlog_head = (g->backlog_head + g->backlog_cap - 1) % g->backlog_cap;
            g->backlog[g->backlog_head] = last;
        }
    }
    if (g->backlog_len > 0 && g->online_count > 0)
        group_pause(s, g); /* The rest once the members answered (shared_poll) or on the tick. */
}

/* Sends what `g` kept again and reads on (paused by a full member queue). */
static void group_resume(struct shard *s, struct shared_group *g)
{
    ASSERT(g->pace == PACE_PAUSED);
    g->pace = PACE_RUN;
    s->shared->paused_count--;
    backlog_flush(s, g); /* may pause it again (a local member still full) */
    cursor_sync(s, g);
}

void shared_tick(struct shard *s)
{
    struct shared *sh = s->shared;
    for (uint32_t i = 0; sh->paused_count > 0 && i <= sh->table_mask; i++) {
        for (struct shared_group *g = sh->table[i]; g != NULL; g = g->next) {
            if (g->pace == PACE_PAUSED)
                group_resume(s, g);
        }
    }
}

static void collect_group(void *ctx, void *owner, uint8_t options, uint32_t sub_id)
{
    (void)options;
    (void)sub_id;
    struct shared *sh = ctx;
    if (sh->scratch_len == sh->scratch_cap) {
        uint32_t cap = sh->scratch_cap ? sh->scratch_cap * 2 : 16;
        struct shared_group **n = realloc(sh->scratch, cap * sizeof(*n));
        if (n == NULL) {
            sh->dropped++; /* This group misses the message. */
            return;
        }
        sh->scratch = n;
        sh->scratch_cap = cap;
    }
    sh->scratch[sh->scratch_len++] = owner;
}

void shared_route(struct shard *s, const struct msg *m)
{
    struct shared *sh = s->shared;
    if (sh->group_count == 0)
        return;
    /* Collect first: delivering must not run while the tree is walked. One filter per group,
     * so each matching group is reported once. */
    sh->scratch_len = 0;
    subtree_match(sh->tree, m->topic, collect_group, sh);
    for (uint32_t i = 0; i < sh->scratch_len; i++) {
        struct shared_group *g = sh->scratch[i];
        if (g->cursor == NULL || cursor_admit(g->cursor, m))
            group_deliver(s, g, m, false);
    }
    sh->scratch_len = 0;
}

/* MEMBER on the owner: join, or update options and presence. */
static void on_member(struct shard *s, const struct shared_note *n)
{
    struct shared_group *g = group_find(s->shared, n->key);
    if (g == NULL)
        g = group_create(s, n->key, note_name(n));
    if (g == NULL) {
        LOG_WARN("shared", "member_lost reason=out_of_memory client=%.*s", n->client_id_len,
                 n->text + n->name_len);
        return;
    }
    int64_t i = member_find(g, note_client_id(n));
    struct shared_member *mb = i >= 0 ? &g->members[i]
                                      : member_add(g, note_client_id(n), n->home);
    if (mb == NULL) {
        LOG_WARN("shared", "member_lost reason=out_of_memory group=%s", g->name);
        if (g->member_count == 0)
            group_remove(s, g);
        return;
    }
    mb->options = n->options;
    mb->sub_id = n->sub_id;
    mb->home = n->home;
    mb->is_persistent = n->is_persistent;
    if (mb->is_online != n->is_online)
        g->online_count += n->is_online ? 1u : (uint32_t)-1;
    mb->is_online = n->is_online;
    g->paced_out = 0; /* Answers still on their way are not waited for (see on_accepted). */
    LOG_INFO("shared", "member group=%s client=%s online=%d members=%u online_members=%u",
             g->name, mb->client_id, mb->is_online, g->member_count, g->online_count);
    backlog_flush(s, g);
    cursor_sync(s, g);
}

static void on_leave(struct shard *s, const struct shared_note *n)
{
    struct shared_group *g = group_find(s->shared, n->key);
    if (g == NULL)
        return;
    int64_t i = member_find(g, note_client_id(n));
    if (i < 0)
        return;
    member_remove(g, (uint32_t)i);
    LOG_INFO("shared", "left group=%s client=%.*s members=%u online_members=%u", g->name,
             n->client_id_len, n->text + n->name_len, g->member_count, g->online_count);
    if (g->member_count == 0)
        group_remove(s, g);
}

/* True if `sess` holds the shared subscription of group `key`. */
static bool session_in_group(const struct session *sess, uint64_t key)
{
    uint32_t pos = 0;
    struct subpack_entry sub;
    while (subpack_next(&sess->subs, &pos, &sub))
        if (shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len) &&
            group_key(sub.filter) == key)
            return true;
    return false;
}

/* Gives `m` (borrowed) back to the owner of group `key`; `is_full`: a paced or tracked delivery
 * that found the member's queue full (the owner keeps it and pauses). */
static void give_back(struct shard *s, uint64_t key, const struct msg *m, bool is_paced,
                      bool is_full, bool is_tracked)
{
    struct msg *own = msg_keep(m, s->id);
    struct shared_note *n = own != NULL ? note_create(SHARED_RETURN, key, (struct slice){ 0 },
                                                      (struct slice){ 0 })
                                        : NULL;
    if (n == NULL) {
        if (own != NULL)
            msg_release(own);
        s->shared->dropped++;
        return;
    }
    n->msg = own;
    n->is_paced = is_paced;
    n->is_full = is_full;
    n->is_tracked = is_tracked;
    s->shared->returned++;
    note_send(s, group_owner(s, key), n);
}

/* Tells the owner of group `key` that a paced DELIVER was taken. */
static void accepted(struct shard *s, uint64_t key)
{
    struct shared_note *n = note_create(SHARED_ACCEPTED, key, (struct slice){ 0 },
                                        (struct slice){ 0 });
    if (n == NULL) {
        /* The group's catch-up waits until its membership changes (which resets the count). */
        LOG_WARN("shared", "accepted_lost reason=out_of_memory");
        return;
    }
    note_send(s, group_owner(s, key), n);
}

/* DELIVER on the member's home. */
static void on_deliver(struct shard *s, const struct shared_note *n)
{
    struct session *sess = session_find(s->sessions, note_client_id(n));
    if (sess != NULL && sess->conn != NULL && session_in_group(sess, n->key)) {
        /* Paced and tracked (a group with a cursor) deliveries go back rather than dropped. */
        if ((!n->is_paced && !n->is_tracked) || n->options == 0 ||
            sess->queue_len < s->cfg->max_queued_messages) {
            session_deliver_shared(s, sess, n->msg, n->options, n->retain, n->sub_id, n->key,
                                   n->is_tracked);
            if (n->is_paced)
                accepted(s, n->key);
            return;
        }
        /* Full: the owner keeps it, slows down. */
        give_back(s, n->key, n->msg, n->is_paced, true, n->is_tracked);
        return;
    }
    /* It left or went offline after the owner chose it: the owner knows by now (its notes
     * from here are ordered), so it picks another member. */
    if (n->options > 0)
        give_back(s, n->key, n->msg, n->is_paced, false, n->is_tracked);
    else if (n->is_paced)
        accepted(s, n->key); /* QoS 0: dropped, but answered */
}

/* RETURN on the owner. */
static void on_return(struct shard *s, const struct shared_note *n)
{
    struct shared_group *g = group_find(s->shared, n->key);
    if (g == NULL) {
        s->shared->dropped++; /* The group is gone: nobody wants it any more. */
        return;
    }
    if (n->is_paced && g->paced_out > 0) /* 0: reset by a membership change */
        g->paced_out--;
    if (n->is_tracked) /* Counted again if delivered again; the backlog has its own floor. */
        (void)offset_set_remove(&g->outstanding, n->msg->origin_shard, n->msg->log_off);
    if (n->is_full) {
        backlog_push(s, g, n->msg); /* A member's queue was full: kept, tried on the tick. */
        group_pause(s, g);
        return;
    }
    group_deliver(s, g, n->msg, n->is_paced);
    if (n->is_paced)
        cursor_sync(s, g); /* Reads on if that was the last answer awaited. */
}

/* A member made room (it took or acknowledged a delivery): a paused group need not wait for
 * its tick, once the homes have answered everything it sent last (so that one answer does not
 * send everything kept again). Resumed from the loop (shared_poll), never from here: a note
 * from this shard comes from inside a session's PUBACK or queue handling. */
static void want_resume(struct shard *s, struct shared_group *g)
{
    if (g->pace == PACE_PAUSED && g->paced_out == 0 && !s->stopping && !g->resume_wanted) {
        g->resume_wanted = true;
        s->shared->resume_wanted++;
    }
}

/* One ended delivery on the owner. */
static void done_one(struct shard *s, uint64_t key, uint16_t origin, uint64_t log_off)
{
    struct shared_group *g = group_find(s->shared, key);
    if (g == NULL)
        return;
    /* Unknown ones are ignored: the group may be a new one under the same name. */
    (void)offset_set_remove(&g->outstanding, origin, log_off);
    if (g->cursor != NULL)
        g->cursor->cursor_dirty = true; /* Its floor may rise: journaled on the tick. */
    want_resume(s, g);
}

/* DONE on the owner. */
static void on_done(struct shard *s, const struct shared_note *n)
{
    const struct shared_done *d = (const struct shared_done *)(const void *)n->text;
    for (uint32_t i = 0; i < n->count; i++)
        done_one(s, d[i].key, d[i].origin, d[i].log_off);
}

#define DONE_BATCH_MIN 64u
#define DONE_BATCH_MAX 4096u

/* Posts the DONE note being filled for `owner`. */
static void done_post(struct shard *s, uint16_t owner)
{
    struct shared *sh = s->shared;
    struct shared_note *n = sh->done[owner];
    sh->done[owner] = NULL;
    sh->done_pending--;
    shard_post(s, owner, (struct note){ .kind = NOTE_SHARED, .ptr = n });
}

void shared_delivery_end(struct shard *s, uint64_t key, const struct msg *m)
{
    struct shared *sh = s->shared;
    uint16_t owner = group_owner(s, key);
    if (owner == s->id) {
        done_one(s, key, m->origin_shard, m->log_off);
        return;
    }
    struct shared_note *n = sh->done[owner];
    if (n != NULL && n->count == sh->done_cap[owner] && n->count >= DONE_BATCH_MAX) {
        done_post(s, owner);
        n = NULL;
    }
    if (n == NULL || n->count == sh->done_cap[owner]) {
        uint32_t cap = n == NULL ? DONE_BATCH_MIN : n->count * 2;
        struct shared_note *grown =
            realloc(n, sizeof(*n) + (size_t)cap * sizeof(struct shared_done));
        if (grown == NULL) {
            /* The owner counts it until the group ends: a crash would deliver it again. */
            LOG_WARN("shared", "done_lost reason=out_of_memory");
            return;
        }
        if (n == NULL) {
            memset(grown, 0, sizeof(*grown));
            grown->op = SHARED_DONE;
            sh->done_pending++;
        }
        n = grown;
        sh->done[owner] = n;
        sh->done_cap[owner] = cap;
    }
    struct shared_done *d = (struct shared_done *)(void *)n->text;
    d[n->count++] = (struct shared_done){ .key = key, .log_off = m->log_off,
                                          .origin = m->origin_shard };
}

uint32_t shared_poll(struct shard *s)
{
    struct shared *sh = s->shared;
    for (uint16_t i = 0; sh->done_pending > 0 && i < s->count; i++)
        if (sh->done[i] != NULL)
            done_post(s, i);
    if (sh->resume_wanted == 0)
        return 0;
    for (uint32_t i = 0; sh->resume_wanted > 0 && i <= sh->table_mask; i++) {
        for (struct shared_group *g = sh->table[i]; g != NULL; g = g->next) {
            if (!g->resume_wanted)
                continue;
            g->resume_wanted = false;
            sh->resume_wanted--;
            if (g->pace == PACE_PAUSED)
                group_resume(s, g);
        }
    }
    return 1;
}

/* ACCEPTED on the owner. */
static void on_accepted(struct shard *s, const struct shared_note *n)
{
    struct shared_group *g = group_find(s->shared, n->key);
    if (g == NULL)
        return;
    if (g->paced_out > 0 && --g->paced_out == 0) { /* 0: reset by a membership change */
        cursor_sync(s, g);
        want_resume(s, g);
    }
}

void shared_on_note(struct shard *s, const struct shared_note *n)
{
    switch (n->op) {
    case SHARED_MEMBER:
        on_member(s, n);
        break;
    case SHARED_LEAVE:
        on_leave(s, n);
        break;
    case SHARED_DELIVER:
        if (!s->stopping)
            on_deliver(s, n);
        break;
    case SHARED_RETURN:
        if (!s->stopping)
            on_return(s, n);
        break;
    case SHARED_ACCEPTED:
        if (!s->stopping)
            on_accepted(s, n);
        break;
    case SHARED_DONE:
        on_done(s, n); /* Also while stopping: the cursor's last journal counts on it. */
        break;
    default:
        ASSERT(false);
    }
}

/* ---- Home side -------------------------------------------------------------------------- */

/* Tells the owner of `filter`'s group about `sess` (MEMBER, or LEAVE when `leave`). */
static void tell_owner(struct shard *s, const struct session *sess, struct slice filter,
                       uint8_t options, uint32_t sub_id, bool leave)
{
    uint64_t key = group_key(filter);
    struct slice client_id = { (const uint8_t *)sess->client_id, sess->client_id_len };
    struct shared_note *n = note_create(leave ? SHARED_LEAVE : SHARED_MEMBER, key, filter,
                                        client_id);
    if (n == NULL) {
        LOG_WARN("shared", "note_lost reason=out_of_memory client=%s", sess->client_id);
        return;
    }
    n->home = s->id;
    n->options = options;
    n->sub_id = sub_id;
    n->is_online = sess->conn != NULL;
    n->is_persistent = sess->persistent;
    note_send(s, group_owner(s, key), n);
}

int shared_subscribe(struct shard *s, struct session *sess, struct slice filter, uint8_t options,
                     uint32_t sub_id)
{
    bool existed = subpack_find(&sess->subs, filter, NULL);
    if (session_sub_add(sess, filter, options, sub_id) != 0)
        return -ENOMEM;
    tell_owner(s, sess, filter, options, sub_id, false);
    return existed ? 0 : 1;
}

bool shared_unsubscribe(struct shard *s, struct session *sess, struct slice filter)
{
    if (session_sub_remove(sess, filter) != 0)
        return false;
    tell_owner(s, sess, filter, 0, 0, true);
    return true;
}

/* Tells the owners of every group of `sess`: MEMBER with its presence, or LEAVE. */
static void tell_all(struct shard *s, const struct session *sess, bool leave)
{
    uint32_t pos = 0;
    struct subpack_entry sub;
    while (subpack_next(&sess->subs, &pos, &sub))
        if (shared_filter_is_shared((const char *)sub.filter.ptr, sub.filter.len))
            tell_owner(s, sess, sub.filter, sub.options, sub.sub_id, leave);
}

/* Whether a window entry goes back to its group: not PUBREC'd (then the client has it), and
 * QoS 1 unless the session ends (a QoS 2 delivery under way MUST be completed to the same
 * client when it reconnects, MQTT 4.8.2). */
static bool window_entry_returns(const struct session_out *e, bool ending)
{
    return e->share_key != 0 && e->msg != NULL && !e->pubrec_received && !e->unsent &&
           (ending || e->qos == 1);
}

/* Takes the returning deliveries out of the window and the queue of `sess`, in send order, and
 * gives them back to their groups. */
static void give_back_all(struct shard *s, struct session *sess, bool ending)
{
    uint32_t kept = 0;
    for (uint32_t i = 0; i < sess->inflight_len; i++) {
        struct session_out *e = &sess->inflight[(sess->inflight_head + i) % sess->inflight_cap];
        if (!window_entry_returns(e, ending)) {
            sess->inflight[(sess->inflight_head + kept++) % sess->inflight_cap] = *e;
            continue;
        }
        give_back(s, e->share_key, e->msg, false, false, e->share_tracked);
        msg_release(e->msg);
    }
    sess->inflight_len = kept;
    kept = 0;
    for (uint32_t i = 0; i < sess->queue_len; i++) {
        struct session_out *e = &sess->queue[(sess->queue_head + i) % sess->queue_cap];
        if (e->share_key == 0) {
            sess->queue[(sess->queue_head + kept++) % sess->queue_cap] = *e;
            continue;
        }
        give_back(s, e->share_key, e->msg, false, false, e->share_tracked);
        msg_release(e->msg);
    }
    sess->queue_len = kept;
}

void shared_session_online(struct shard *s, struct session *sess)
{
    ASSERT(sess->conn != NULL);
    tell_all(s, sess, false);
}

void shared_session_offline(struct shard *s, struct session *sess)
{
    ASSERT(sess->conn == NULL);
    /* The owner learns first, so what comes back is not given to this member again. */
    tell_all(s, sess, false);
    if (!s->stopping)
        give_back_all(s, sess, false);
}

void shared_session_end(struct shard *s, struct session *sess)
{
    ASSERT(sess->conn == NULL);
    if (shared_is_cursor(sess)) {
        struct shared_group *g = cursor_group(s, sess);
        if (g != NULL)
            g->cursor = NULL; /* Expired (it ends with its group otherwise). */
        return;
    }
    tell_all(s, sess, true);
    if (!s->stopping)
        give_back_all(s, sess, true);
}
