// egress steering: a tc classifier on the host side of every pod veth
// (ingress = packets from the pod). It decides, per packet, whether the packet
// belongs to an egress NAT policy and, if so, marks it so policy routing sends
// it to the gateway node that holds the policy's egress_source_ip.
//
// Cost per packet is constant: one hash lookup (pod -> selection group), one
// LPM lookup (is the destination in-cluster), one LPM lookup keyed by
// (group, destination) -> policy, one array lookup (policy -> action).
// Precedence between a group's policies (priority, exclusions, longest prefix,
// name) is resolved in user space: each trie entry already holds the answer.
// A "selection group" is a distinct set of policies selecting a pod, so the
// trie holds each group's CIDRs once, not once per pod.
#include <uapi/linux/bpf.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/pkt_cls.h>

#define ACTION_LOCAL 0  // this node holds the source IP: leave to routing, SNAT here
#define ACTION_STEER 1  // set skb->mark = mark: policy routing to the gateway node
#define ACTION_DROP 2   // no node holds the source IP: fail closed, never leak the node IP
#define NOT_STEERED 0   // egress_dsts value of a hole; policy ids start at 1

struct group_dst_key {
    u32 prefixlen;  // 32 (group) + destination prefix length
    u32 group;
    u32 daddr;      // network byte order
};

struct v4_key {
    u32 prefixlen;
    u32 daddr;
};

struct policy_action {
    u32 action;
    u32 mark;
};

struct policy_counter {
    u64 packets;
    u64 bytes;
    u64 dropped;
};

BPF_HASH(egress_pods, u32, u32, MAX_PODS);                                   // pod IPv4 -> group
BPF_LPM_TRIE(egress_dsts, struct group_dst_key, u32, MAX_DSTS);              // (group, dst) -> policy
BPF_LPM_TRIE(egress_internal, struct v4_key, u32, 1024);                    // never steered
BPF_ARRAY(egress_policies, struct policy_action, MAX_POLICIES);              // policy -> action
BPF_PERCPU_ARRAY(egress_counters, struct policy_counter, MAX_POLICIES);      // policy -> counters

int egress_steer(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return TC_ACT_OK;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return TC_ACT_OK;

    u32 saddr = ip->saddr;
    u32 *group = egress_pods.lookup(&saddr);
    if (!group)
        return TC_ACT_OK;

    struct v4_key in = {.prefixlen = 32, .daddr = ip->daddr};
    if (egress_internal.lookup(&in))
        return TC_ACT_OK;

    struct group_dst_key key = {.prefixlen = 64, .group = *group, .daddr = ip->daddr};
    u32 *policy = egress_dsts.lookup(&key);
    if (!policy)
        return TC_ACT_OK;
    u32 id = *policy;
    if (id == NOT_STEERED)  // a hole: an excluded CIDR, or space a higher-priority policy leaves unsteered
        return TC_ACT_OK;
    struct policy_action *act = egress_policies.lookup(&id);
    if (!act)
        return TC_ACT_OK;

    struct policy_counter *c = egress_counters.lookup(&id);
    if (act->action == ACTION_DROP) {
        if (c)
            c->dropped++;
        return TC_ACT_SHOT;
    }
    if (c) {
        c->packets++;
        c->bytes += skb->len;
    }
    if (act->action == ACTION_STEER)
        skb->mark = act->mark;
    return TC_ACT_OK;
}
