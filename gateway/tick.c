/* tick.c - the clock of the node's timer wheel (node.h): 100 ms ticks of
 * CLOCK_MONOTONIC, so a wall-clock jump moves no deadline. */
#include "node.h"
#include "pg_util.h"

uint64_t pg_node_tick(void)
{
    return pg_mono_ms() / (1000 / PG_TICKS_PER_SEC);
}

uint64_t pg_node_second(uint64_t tick)
{
    return (tick + PG_TICKS_PER_SEC - 1) / PG_TICKS_PER_SEC * PG_TICKS_PER_SEC;
}
