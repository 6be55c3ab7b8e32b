/* INFO for reki-resp: Redis's sections where they make sense, and reki's figures. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "io.h"
#include "server.h"

static void line(rbuf_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void line(rbuf_t *t, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        rbuf_put(t, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static unsigned long long load(atomic_ullong *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * sysconf(_SC_PAGESIZE);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void info_text(rbuf_t *t)
{
    size_t clients = 0;
    for (unsigned i = 0; i < srv.o.io_threads; i++)
        clients += atomic_load_explicit(&srv.io[i]->nconns, memory_order_relaxed);
    reki_registry_stats_t ks = {0}, cs = {0};
    reki_registry_stats(srv.keys, &ks);
    reki_registry_stats(srv.channels, &cs);
    long long keys = atomic_load_explicit(&srv.n_keys, memory_order_relaxed);

    line(t, "# Server\r\nredis_version:7.0.0\r\nreki_version:%s\r\n", reki_version_string());
    line(t, "redis_mode:standalone\r\nprocess_id:%ld\r\ntcp_port:%d\r\n", (long)getpid(),
         srv.o.port);
    line(t, "uptime_in_seconds:%llu\r\n", (unsigned long long)(now_ms() - srv.started_ms) / 1000);
    line(t, "io_threads_active:%u\r\nreki_workers:%u\r\n", srv.o.io_threads, srv.o.workers);
    line(t, "\r\n# Clients\r\nconnected_clients:%zu\r\n", clients);
    line(t, "\r\n# Memory\r\nused_memory_rss:%ld\r\n", rss_bytes());
    line(t, "passivated_bytes:%zu\r\n", store_bytes(srv.store));
    line(t, "\r\n# Stats\r\ntotal_connections_received:%llu\r\n", load(&srv.n_connections));
    line(t, "total_commands_processed:%llu\r\n", load(&srv.n_commands));
    line(t, "pubsub_published:%llu\r\n", load(&srv.n_published));
    line(t, "\r\n# Reki\r\nlive_actors:%zu\r\n", ks.live + cs.live);
    line(t, "key_actors:%zu\r\nchannel_actors:%zu\r\n", ks.live, cs.live);
    line(t, "keys:%lld\r\npassivated_keys:%zu\r\n", keys < 0 ? 0 : keys, store_count(srv.store));
    line(t, "actor_starts:%llu\r\nactor_exits:%llu\r\n", load(&srv.n_starts), load(&srv.n_exits));
    line(t, "passivations:%llu\r\nmessages:%llu\r\n", load(&srv.n_passivations),
         load(&srv.n_messages));
    line(t, "key_registry_entries:%zu\r\nkey_registry_reaped:%llu\r\n", ks.entries,
         (unsigned long long)ks.reaped);
    if (srv.cluster)
        cluster_info(t);
    line(t, "\r\n# Keyspace\r\n");
    if (keys > 0)
        line(t, "db0:keys=%lld,expires=0,avg_ttl=0\r\n", keys);
}
