/* core/topicalias.h - server -> client topic aliases (MQTT 5) of one connection.
 *
 * A client that says Topic Alias Maximum N > 0 in CONNECT lets the server replace a topic name
 * by a number 1..N it chose earlier on the same connection (MQTT-3.3.2-9..11). This module
 * keeps which alias stands for which topic on one connection and decides what a PUBLISH
 * carries. It does not encode packets (core/pubout.c does) and knows nothing of sessions.
 *
 * Policy: every topic sent gets an alias. The first PUBLISH of a topic carries the topic name
 * and a new alias while the client's table has room (aliases 1, 2, 3... in order); once all
 * min(N, TOPICALIAS_OUT_MAX) are in use, the least recently used alias is given to the new
 * topic (the PUBLISH carries the name again, which re-maps it in the client). Later PUBLISHes
 * of a topic that holds an alias carry an empty topic name and the alias. A mapping is
 * recorded only once its PUBLISH was written to the connection's output (topicalias_commit),
 * so a dropped packet never leaves the client without a mapping the server relies on.
 *
 * Aliases belong to the network connection, not the session (MQTT-3.3.2-7): a new connection
 * starts empty. Memory: the entry array (allocated on first use) and one copy of each aliased
 * topic. Shard thread only (the owning shard of the connection).
 */
#ifndef KEELMQ_CORE_TOPICALIAS_H
#define KEELMQ_CORE_TOPICALIAS_H

#include "core/base.h"

/* Aliases kept per connection at most, whatever the client allows: a lookup scans the table,
 * so it stays small; the least recently used topics give theirs up. */
#define TOPICALIAS_OUT_MAX 64u

struct topicalias_entry {
    uint64_t hash;          /* of the topic; 0 with topic NULL = unused */
    uint8_t *topic;         /* owned copy */
    uint16_t len;
    uint16_t cap;           /* bytes allocated at `topic` (reused by a later topic) */
    uint32_t last_use;      /* topicalias_out.clock at its last send */
};

struct topicalias_out {
    uint16_t max;           /* aliases usable: min(client's maximum, TOPICALIAS_OUT_MAX); 0 = off */
    uint16_t used;          /* aliases 1..used have been handed out */
    uint32_t clock;         /* counts sends, orders last_use */
    struct topicalias_entry *entries; /* `max` entries once one is used, else NULL */
};

enum topicalias_verdict {
    TOPICALIAS_NONE = 0,    /* send the topic name without an alias */
    TOPICALIAS_KNOWN,       /* send an empty topic name and the alias */
    TOPICALIAS_NEW,         /* send the topic name and the alias (defines or re-maps it) */
};

/* Sets the client's Topic Alias Maximum (`client_max` from CONNECT, 0 = none) on a fresh
 * table. */
void topicalias_init(struct topicalias_out *t, uint16_t client_max);

/* Decides how to send `topic`: returns the verdict and sets *alias (1..t->max) unless NONE.
 * Changes nothing: call topicalias_commit once the PUBLISH is written. */
enum topicalias_verdict topicalias_pick(struct topicalias_out *t, struct slice topic,
                                        uint16_t *alias);

/* Records that a PUBLISH of `topic` with `alias` and `verdict` (from topicalias_pick, not
 * NONE) was written. Out of memory forgets the alias (later sends define it again): safe. */
void topicalias_commit(struct topicalias_out *t, struct slice topic, uint16_t alias,
                       enum topicalias_verdict verdict);

/* Frees what the table holds and turns it off. */
void topicalias_free(struct topicalias_out *t);

#endif
