/* core/shared.h - shared subscriptions: $share/{group}/{filter} (MQTT 5.0 section 4.8.2; also
 * accepted from 3.1.1 clients, as Mosquitto and EMQX do).
 *
 * Shard thread only. A group is the whole "$share/{group}/{filter}" string; two groups with the
 * same filter are independent, and each gets every matching message once. Every message reaches
 * every shard (router notes), but a group must get it once in all, so one shard decides for each
 * group: its owner, hash(group string) % shard count. Members live on their client ids' home
 * shards, as sessions do; the owner learns about them through notes:
 *
 *  - the member's home keeps the subscription in the session's list (journaled like any other,
 *    restored after a restart) but not in its subscription tree, and tells the owner with a
 *    MEMBER note (client id, granted options, subscription identifier, online or not) on
 *    SUBSCRIBE, on connect and on disconnect of a persistent session, and with a LEAVE note on
 *    UNSUBSCRIBE and when the session ends;
 *  - the owner holds the group's filter in a tree of its own. For every message it routes
 *    (its own, and every note from other shards) it picks one online member by
 *    mqtt.shared_subscription_policy and delivers locally or sends a DELIVER note (a message
 *    reference) to the member's home, which queues it in the member's session like any other
 *    delivery, marked with the group;
 *  - unacknowledged deliveries of a member that leaves go back to the owner (RETURN notes) and
 *    on to another member: QoS 1 and 2 when the session ends, QoS 1 (and QoS 2 not yet sent)
 *    when a persistent session disconnects. A QoS 2 message already sent to a persistent
 *    session stays with it, because MQTT 4.8.2 says its delivery MUST be completed when that
 *    client reconnects;
 *  - a group with a persistent member has a durable cursor on the owner: a persistent session
 *    named by the group string, subscribed to the group's filter, never connected. While no
 *    member is online it is BEHIND on every origin and journaled, like an offline session;
 *    when a member comes back it reads what the group missed from the log (catch-up) and
 *    hands it to the online members; this survives a restart and a crash (core/shared.c);
 *    The catch-up is paced by the members: the next answer is asked for only once the homes
 *    have answered every message of the previous ones (ACCEPTED or RETURN), and a member
 *    whose queue is at mqtt.max_queued_messages gives a message read from the log back
 *    instead of dropping it; the owner keeps it and stops reading until its next tick. So
 *    does a live delivery of such a group (a logged QoS 1/2 message): the cursor then stops
 *    taking live messages (BEHIND, like a slow persistent session), and reads them from the
 *    log once the members have room: a group with a cursor never drops one for a full queue;
 *  - deliveries given back while no member is online are kept in memory for the first member
 *    back (at most mqtt.max_queued_messages per group, 2^20 for a group with a cursor; they
 *    are already behind the cursor);
 *    so is everything of a group whose cursor could not be created (out of memory). The
 *    cursor's journaled positions stay at or below the oldest of them (shared_cursor_floor),
 *    so a restart reads them from the log again; what followed them is then delivered again
 *    too (at least once);
 *  - so are the deliveries of a group with a cursor that are on their way or held by a member,
 *    online or not: the owner counts each logged QoS 1/2 delivery as outstanding (origin, log
 *    offset) from the moment it picks a member until the member's home reports its end with a
 *    DONE note (PUBACK, PUBREC, or dropped: expired, too large) or gives it back
 *    (RETURN). A crash then reads them from the log again too. A QoS 2 delivery counts until
 *    its PUBREC: one sent but not PUBREC'd before a crash comes again with a new packet id.
 *
 * Order: a publisher's messages reach the owner in order (rings are FIFO) and the owner's notes
 * to a member's home are FIFO too, so with the hash policy each publisher's messages reach one
 * member in publish order. A membership change reaches the owner a ring hop after the
 * SUBSCRIBE (like the filter registry of core/persist.h): messages routed in that window go to
 * the members the owner knew.
 */
#ifndef KEELMQ_CORE_SHARED_H
#define KEELMQ_CORE_SHARED_H

#include "core/base.h"

struct shard;
struct session;
struct msg;
struct shared;

/* What travels with NOTE_SHARED. Sender's memory, freed by the sender when it reclaims the
 * note (shared_note_release); the receiver only reads it. */
enum shared_op {
    SHARED_MEMBER = 1,       /* join or update a member: options, sub_id, is_online */
    SHARED_LEAVE = 2,        /* the member unsubscribed or its session ended */
    SHARED_DELIVER = 3,      /* owner -> home: `msg` to the member at `qos` */
    SHARED_RETURN = 4,       /* home -> owner: `msg` was not acknowledged by a member that left,
                              * or could not be given to it */
    SHARED_ACCEPTED = 5,     /* home -> owner: a paced DELIVER was queued for the member */
    SHARED_DONE = 6,         /* home -> owner: tracked deliveries ended (acknowledged, PUBREC'd
                              * or dropped): `count` struct shared_done in `text`, of any of
                              * the owner's groups (one note per loop iteration and owner) */
};
struct shared_note {
    uint8_t op;              /* enum shared_op */
    uint8_t options;         /* MEMBER: the granted subscription options; DELIVER: the QoS */
    bool is_online;          /* MEMBER */
    bool is_persistent;      /* MEMBER: the member's session outlives its connection */
    bool retain;             /* DELIVER: the retain flag to send */
    bool is_paced;           /* DELIVER: read from the log (or kept): answered with exactly
                              * one ACCEPTED or RETURN (is_paced set), and given back (is_full)
                              * rather than dropped when the member's queue is full */
    bool is_full;            /* RETURN: the member's queue was full (paced or tracked) */
    bool is_tracked;         /* DELIVER, RETURN: counted in the group's outstanding set; a
                              * tracked DELIVER is given back rather than dropped when the
                              * member's queue is full, like a paced one */
    uint16_t home;           /* MEMBER, LEAVE: the member's home shard */
    uint16_t name_len;       /* MEMBER, LEAVE: the group string, first in `text` */
    uint16_t client_id_len;  /* MEMBER, LEAVE, DELIVER: the client id, after the name */
    uint32_t sub_id;         /* MEMBER, DELIVER */
    uint64_t key;            /* the group: hash of its string */
    uint32_t count;          /* DONE: entries in `text` */
    struct msg *msg;         /* DELIVER, RETURN: the sender's, one reference held */
    _Alignas(8) char text[]; /* DONE: struct shared_done entries */
};

/* One delivery that ended, in a DONE note. */
struct shared_done {
    uint64_t key;            /* its group */
    uint64_t log_off;        /* the message's log offset */
    uint16_t origin;         /* the message's origin shard */
};
STATIC_ASSERT(offsetof(struct shared_note, text) % _Alignof(struct shared_done) == 0,
              "DONE entries are aligned in a note's text");

/* Per-shard state, created with the shard (main thread) and destroyed with it (main thread,
 * after the shards stopped: it releases the messages it still holds). NULL when out of memory. */
struct shared *shared_create(void);
void shared_destroy(struct shared *sh);

/* Shard setup, around the restore of its persistent sessions: notes a restored member sends
 * to this shard itself wait until every session (the groups' cursors too) is restored. Notes
 * to other shards wait in the rings anyway: no shard reads them before all are set up. */
void shared_restore_begin(struct shard *s);
void shared_restore_end(struct shard *s);

/* True for a "$share/..." filter (whether well-formed or not: topic_shared_parse says). */
bool shared_filter_is_shared(const char *filter, uint32_t filter_len);

/* Home side. `filter` is a well-formed shared filter (topic_shared_parse returned 1). Adds or
 * updates the subscription of `sess` (its list, not the tree) and tells the group's owner.
 * Returns 1 when added, 0 when replaced, -ENOMEM. */
int shared_subscribe(struct shard *s, struct session *sess, struct slice filter, uint8_t options,
                     uint32_t sub_id);
/* Removes it; returns false if `sess` had no such subscription. Deliveries already made stay
 * with the session (MQTT-3.10.4-3). */
bool shared_unsubscribe(struct shard *s, struct session *sess, struct slice filter);

/* The session's connection came (after the window was re-sent) or went (a persistent session,
 * before its queue is dropped), or the session ends (before it is freed): tells the owners of
 * its groups and gives back the deliveries the member will not acknowledge. */
void shared_session_online(struct shard *s, struct session *sess);
void shared_session_offline(struct shard *s, struct session *sess);
void shared_session_end(struct shard *s, struct session *sess);

/* The cursor of a group (core/shared.c) is a session of the owner shard: true for it. */
bool shared_is_cursor(const struct session *sess);
/* Lowers `pos1[o]` (one per shard of the process: the QoS 1/2 positions cursor `c` is about to
 * journal) to the oldest message from origin o its group keeps in memory or counts as
 * outstanding, so that after a restart the cursor reads those again (at least once) instead of
 * losing them. */
void shared_cursor_floor(struct shard *s, const struct session *c, uint64_t *pos1);
/* Whether cursor `c` should read on from the log now (its group has an online member). */
bool shared_cursor_wants(struct shard *s, const struct session *c);
/* After a catch-up answer filled the cursor's queue: gives what it read to the group's online
 * members and asks for more where it is still behind. */
void shared_cursor_pump(struct shard *s, struct session *c);

/* On the shard's tick: resumes the groups whose catch-up paused because a member's queue was
 * full (the kept messages first). */
void shared_tick(struct shard *s);
/* Once per loop iteration: posts the batched DONE notes, and resumes the paused groups whose
 * members made room since (took or acknowledged a delivery). Returns 1 if it did work. */
uint32_t shared_poll(struct shard *s);

/* Home side: a delivery marked `share_tracked` (struct session_out) of group `key` ended
 * without going back to the group: tells the owner (at once on this shard; else batched into
 * one DONE note per owner, posted by shared_poll in the same loop iteration). */
void shared_delivery_end(struct shard *s, uint64_t key, const struct msg *m);

/* Owner side: a message routed on this shard (published here or from a note); every group
 * this shard owns whose filter matches `m->topic` gets it once. `m` is borrowed. */
void shared_route(struct shard *s, const struct msg *m);

/* A NOTE_SHARED from another shard (handled even while stopping: a stopping shard only drops
 * deliveries). */
void shared_on_note(struct shard *s, const struct shared_note *n);
/* Reclaim of a NOTE_SHARED this shard posted: releases its message and frees it. */
void shared_note_release(struct shared_note *n);

#endif
