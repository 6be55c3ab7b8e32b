/* Circular doubly linked lists (core.h). */
#include "core/core.h"

void reki__list_init(struct reki__list *l)
{
    l->next = l->prev = l;
}

void reki__list_add(struct reki__list *head, struct reki__list *n)
{
    n->next = head->next;
    n->prev = head;
    head->next->prev = n;
    head->next = n;
}

void reki__list_del(struct reki__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}
