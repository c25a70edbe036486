/* core/iot.c - P2P topics and group/device client ids (core/iot.h). Pure. */
#include "core/iot.h"

#include <string.h>

#define P2P_SUFFIX "/" IOT_P2P_LEVEL "/"
#define P2P_SUFFIX_LEN (sizeof(P2P_SUFFIX) - 1)
#define SEPARATOR_LEN (sizeof(IOT_GROUP_SEPARATOR) - 1)

bool iot_p2p_target(struct slice topic, struct slice *client_id)
{
    ASSERT(client_id != NULL);
    if (topic.len < P2P_SUFFIX_LEN + 2 || topic.ptr[0] == '$')
        return false;
    uint32_t last = topic.len;
    while (last > 0 && topic.ptr[last - 1] != '/')
        last--;
    /* `last` is the start of the last level; "/p2p/" must end there after >= 1 parent byte. */
    if (last == topic.len || last < P2P_SUFFIX_LEN + 1)
        return false;
    if (memcmp(topic.ptr + last - P2P_SUFFIX_LEN, P2P_SUFFIX, P2P_SUFFIX_LEN) != 0)
        return false;
    *client_id = (struct slice){ topic.ptr + last, topic.len - last };
    ASSERT(client_id->len > 0);
    return true;
}

bool iot_group_device_parse(struct slice client_id, uint16_t *group_len)
{
    const uint8_t *sep = NULL;
    for (uint32_t i = 0; i + SEPARATOR_LEN <= client_id.len; i++) {
        if (memcmp(client_id.ptr + i, IOT_GROUP_SEPARATOR, SEPARATOR_LEN) != 0)
            continue;
        if (sep != NULL)
            return false; /* A second separator: the device part would contain one. */
        sep = client_id.ptr + i;
        i += SEPARATOR_LEN - 1;
    }
    if (sep == NULL)
        return false;
    uint32_t group = (uint32_t)(sep - client_id.ptr);
    uint32_t device = client_id.len - group - (uint32_t)SEPARATOR_LEN;
    if (group == 0 || device == 0 || group > IOT_GROUP_LEN_MAX || device > IOT_DEVICE_LEN_MAX)
        return false;
    *group_len = (uint16_t)group;
    return true;
}
