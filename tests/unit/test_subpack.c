/* tests/unit/test_subpack.c - a session's subscriptions packed in one buffer: add, replace
 * (the identifier's varint growing and shrinking), remove from every place, and what an
 * iteration reads back, against a plain array kept beside it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "core/subpack.h"

static struct slice s(const char *text)
{
    return slice_from_cstr(text);
}

#define MODEL_MAX 64u

struct model_sub {
    char filter[400];
    uint8_t options;
    uint32_t sub_id;
};

struct model {
    struct model_sub subs[MODEL_MAX];
    uint32_t count;
};

/* The packed list holds exactly the model's entries, in the model's order. */
static void check(const struct subpack *p, const struct model *m)
{
    cr_assert_eq(p->count, m->count);
    uint32_t pos = 0;
    uint32_t i = 0;
    uint32_t bytes = 0;
    struct subpack_entry e;
    while (subpack_next(p, &pos, &e)) {
        cr_assert_lt(i, m->count);
        const struct model_sub *want = &m->subs[i];
        cr_assert(slice_eq(e.filter, s(want->filter)), "entry %u", i);
        cr_assert_eq(e.options, want->options);
        cr_assert_eq(e.sub_id, want->sub_id);
        bytes += subpack_entry_len(e.filter, e.sub_id);
        i++;
    }
    cr_assert_eq(i, m->count);
    cr_assert_eq(pos, p->len);
    cr_assert_eq(bytes, p->len);
}

static void model_put(struct model *m, const char *filter, uint8_t options, uint32_t sub_id)
{
    for (uint32_t i = 0; i < m->count; i++) {
        if (strcmp(m->subs[i].filter, filter) == 0) {
            m->subs[i].options = options;
            m->subs[i].sub_id = sub_id;
            return;
        }
    }
    struct model_sub *n = &m->subs[m->count++];
    snprintf(n->filter, sizeof(n->filter), "%s", filter);
    n->options = options;
    n->sub_id = sub_id;
}

static void model_remove(struct model *m, const char *filter)
{
    for (uint32_t i = 0; i < m->count; i++) {
        if (strcmp(m->subs[i].filter, filter) == 0) {
            m->subs[i] = m->subs[--m->count]; /* the last entry takes its place */
            return;
        }
    }
}

Test(subpack, empty_iterates_nothing_and_frees)
{
    struct subpack p = { 0 };
    struct model m = { 0 };
    check(&p, &m);
    cr_assert_not(subpack_find(&p, s("a"), NULL));
    cr_assert_eq(subpack_remove(&p, s("a")), -ENOENT);
    subpack_free(&p);
}

Test(subpack, entries_are_small)
{
    /* options, a 1-byte identifier, a 1-byte length and the filter */
    cr_assert_eq(subpack_entry_len(s("plant/12345/temp"), 0), 19);
    cr_assert_eq(subpack_entry_len(s("plant/12345/temp"), 300), 20);
    cr_assert_eq(subpack_entry_len(s("plant/12345/temp"), SUBPACK_SUB_ID_MAX), 22);
}

Test(subpack, add_replace_and_remove_agree_with_a_plain_list)
{
    static const uint32_t ids[] = { 0, 1, 127, 128, 16383, 16384, 2097151, 2097152,
                                    SUBPACK_SUB_ID_MAX };
    char filters[12][400];
    for (uint32_t i = 0; i < 12; i++) {
        uint32_t len = i == 5 ? 300 : i + 1; /* one with a 2-byte length */
        for (uint32_t k = 0; k < len; k++)
            filters[i][k] = (char)('a' + (i + k) % 26);
        filters[i][len] = '\0';
    }
    struct subpack p = { 0 };
    static struct model m;
    m.count = 0;
    uint32_t seed = 12345;
    for (uint32_t step = 0; step < 5000; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t f = (seed >> 8) % 12;
        uint32_t id = ids[(seed >> 16) % ARRAY_LEN(ids)];
        uint8_t options = (uint8_t)(seed >> 24);
        if ((seed >> 4) % 3 == 0) {
            bool had = subpack_find(&p, s(filters[f]), NULL);
            cr_assert_eq(subpack_remove(&p, s(filters[f])), had ? 0 : -ENOENT);
            model_remove(&m, filters[f]);
        } else {
            bool had = subpack_find(&p, s(filters[f]), NULL);
            cr_assert_eq(subpack_put(&p, s(filters[f]), options, id), had ? 0 : 1);
            model_put(&m, filters[f], options, id);
            struct subpack_entry e;
            cr_assert(subpack_find(&p, s(filters[f]), &e));
            cr_assert_eq(e.sub_id, id);
            cr_assert_eq(e.options, options);
        }
        check(&p, &m);
    }
    subpack_free(&p);
    cr_assert_null(p.buf);
    cr_assert_eq(p.count, 0);
}
