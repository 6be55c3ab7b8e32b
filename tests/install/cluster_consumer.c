/* Built against an installed libreki-cluster.a with pkg-config --static
 * reki-cluster: the header, the library and its private dependencies link,
 * and the contract's first check (bad options) holds. */
#include <stdio.h>

#include <reki/cluster.h>

int main(void)
{
    reki_rt_t *rt;
    reki_registry_t *reg;
    reki_cluster_t *cl = NULL;
    if (reki_rt_new(NULL, &rt) != REKI_OK || reki_registry_new(rt, NULL, &reg) != REKI_OK)
        return 1;
    reki_cluster_opts_t o = {.etcd = "http://127.0.0.1:1", .node = "n", .listen = "127.0.0.1:0"};
    /* No decode, and a registry without start: both REKI_EINVAL. */
    int rc = reki_cluster_join(reg, &o, &cl);
    reki_registry_free(reg);
    reki_rt_free(rt);
    if (rc != REKI_EINVAL || cl) {
        fprintf(stderr, "cluster consumer: join gave %d\n", rc);
        return 1;
    }
    puts("cluster consumer: linked, join refused bad options");
    return 0;
}
