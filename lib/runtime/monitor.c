/*
 * Exit hooks: monitors (reki_monitor) and registry links.
 *
 * A hook is added under the proc's lock only while the proc lives, and the
 * exit transition happens under the same lock, so every hook is either added
 * before the transition (and runs) or refused with REKI_EDEAD: exactly once.
 * Registry links run before monitors, so a monitor that fires after an
 * actor's exit finds its key already free to start again.
 */
#include "runtime/runtime.h"

struct monitor {
    struct reki__hook hook;
    reki_down_fn fn;
    void *arg;
    uint64_t id;
};

int reki__proc_add_hook(struct reki__proc *p, struct reki__hook *h, bool link,
                        void (*publish)(void *), void *arg)
{
    reki__spin_lock(&p->lock);
    if (atomic_load_explicit(&p->reason, memory_order_relaxed) != REKI__ALIVE) {
        reki__spin_unlock(&p->lock);
        return REKI_EDEAD;
    }
    struct reki__hook **list = link ? &p->links : &p->monitors;
    h->next = *list;
    *list = h;
    if (publish)
        publish(arg);
    reki__spin_unlock(&p->lock);
    return REKI_OK;
}

void reki__proc_run_marked(struct reki__proc *p)
{
    for (struct reki__hook *h = p->links; h; h = h->next)
        if (h->marked)
            h->marked(h, p->pid);
}

static void run_list(struct reki__hook *h, reki_pid_t pid, int reason)
{
    while (h) {
        struct reki__hook *next = h->next; /* h may be freed by its callback */
        h->exited(h, pid, reason);
        h = next;
    }
}

void reki__proc_run_exited(struct reki__proc *p, int reason)
{
    /* After the transition no hook is added; the lock makes the lists'
     * last writers happen-before this read. */
    reki__spin_lock(&p->lock);
    struct reki__hook *links = p->links, *mons = p->monitors;
    p->links = p->monitors = NULL;
    reki__spin_unlock(&p->lock);
    run_list(links, p->pid, reason);
    run_list(mons, p->pid, reason);
}

static void monitor_fire(struct reki__hook *h, reki_pid_t pid, int reason)
{
    struct monitor *m = REKI__CONTAINER_OF(h, struct monitor, hook);
    m->fn(pid, reason, m->arg);
    reki__free(m);
}

static _Atomic uint64_t next_monitor_id = 1;

int reki_monitor_ex(reki_rt_t *rt, reki_pid_t pid, reki_down_fn fn, void *arg,
                    reki_monitor_ref_t *out)
{
    if (!rt || !fn)
        return REKI_EINVAL;
    if (!reki__pid_alive(&rt->pids, pid))
        return REKI_EDEAD; /* cheap, and a stale pid never sees REKI_ENOMEM */
    struct monitor *m = reki__malloc(sizeof(*m));
    if (!m)
        return REKI_ENOMEM;
    m->hook.marked = NULL;
    m->hook.exited = monitor_fire;
    m->fn = fn;
    m->arg = arg;
    /* Process-wide, so unique within every runtime. Kept in a local: once
     * the hook is on the list, the exit path may fire and free m. */
    uint64_t id = atomic_fetch_add_explicit(&next_monitor_id, 1, memory_order_relaxed);
    m->id = id;
    int rc = REKI_EDEAD;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, pid);
    if (p)
        rc = reki__proc_add_hook(p, &m->hook, false, NULL, NULL);
    reki__rcu_read_unlock();
    if (rc != REKI_OK) {
        reki__free(m);
        return rc;
    }
    if (out) {
        out->pid = pid;
        out->id = id;
    }
    return REKI_OK;
}

int reki_monitor(reki_rt_t *rt, reki_pid_t pid, reki_down_fn fn, void *arg)
{
    return reki_monitor_ex(rt, pid, fn, arg, NULL);
}

int reki_demonitor(reki_rt_t *rt, const reki_monitor_ref_t *ref)
{
    if (!rt || !ref)
        return REKI_EINVAL;
    struct monitor *found = NULL;
    reki__rcu_read_lock();
    struct reki__proc *p = reki__pid_resolve(&rt->pids, ref->pid);
    if (p) {
        /* Under the lock that the exit path takes to detach the list: a
         * monitor still on it while the actor is alive has not fired. */
        reki__spin_lock(&p->lock);
        if (atomic_load_explicit(&p->reason, memory_order_relaxed) == REKI__ALIVE) {
            for (struct reki__hook **hp = &p->monitors; *hp; hp = &(*hp)->next) {
                struct monitor *m = REKI__CONTAINER_OF(*hp, struct monitor, hook);
                if (m->id == ref->id) {
                    *hp = m->hook.next;
                    found = m;
                    break;
                }
            }
        }
        reki__spin_unlock(&p->lock);
    }
    reki__rcu_read_unlock();
    reki__free(found);
    return found ? REKI_OK : REKI_ENOTFOUND;
}
