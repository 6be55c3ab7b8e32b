/*
 * A stand-in for the part of Criterion's API that tests/unit uses, so the
 * same test files run in-process under ThreadSanitizer, where Criterion
 * itself cannot start (Snaipe/Criterion#274: its inheritable arena cannot be
 * mapped next to TSan's shadow memory).  Tests run one after another in one
 * process; a failed assertion ends its test (longjmp) and the run goes on.
 * The runner prints Criterion's own "Synthesis:" summary line.
 */
#ifndef REKI_TSAN_CRITERION_SHIM_H
#define REKI_TSAN_CRITERION_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct shim_opts {
    void (*init)(void);
    void (*fini)(void);
    int signal;
    int exit_code;
    bool disabled;
    const char *description;
    double timeout;
};

struct shim_test {
    const char *suite, *name;
    void (*fn)(void);
    struct shim_opts opts;
    struct shim_test *next;
};

struct shim_suite {
    const char *name;
    struct shim_opts opts;
    struct shim_suite *next;
};

void shim_register_test(struct shim_test *t);
void shim_register_suite(struct shim_suite *s);
void shim_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noreturn));

#define Test(suite, name, ...)                                                              \
    static void suite##_##name##_impl(void);                                                \
    __attribute__((constructor)) static void suite##_##name##_reg(void)                     \
    {                                                                                       \
        static struct shim_test t = {#suite, #name, suite##_##name##_impl, {__VA_ARGS__},   \
                                     NULL};                                                 \
        shim_register_test(&t);                                                             \
    }                                                                                       \
    static void suite##_##name##_impl(void)

#define TestSuite(suite, ...)                                                               \
    __attribute__((constructor)) static void suite##_suite_reg(void)                        \
    {                                                                                       \
        static struct shim_suite s = {#suite, {__VA_ARGS__}, NULL};                         \
        shim_register_suite(&s);                                                            \
    }

#define cr_assert(cond, ...)                                                                \
    do {                                                                                    \
        if (!(cond))                                                                        \
            shim_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                           \
    } while (0)
#define cr_expect cr_assert
#define cr_assert_eq(a, b, ...) cr_assert((a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr_assert((a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) cr_assert((a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr_assert((a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) cr_assert((a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr_assert((a) >= (b), __VA_ARGS__)
#define cr_assert_null(a, ...) cr_assert((a) == NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr_assert((a) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_fail(...) shim_fail(__FILE__, __LINE__, "fail", "" __VA_ARGS__)

#endif
