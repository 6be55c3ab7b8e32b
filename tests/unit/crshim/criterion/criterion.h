/*
 * A stand-in for the subset of <criterion/criterion.h> the unit tests use,
 * for sanitizer builds.  Criterion cannot start under TSan (its BoxFort
 * arena is mapped at a fixed address TSan's mmap interceptor refuses,
 * Snaipe/Criterion#274), and under ASan it passes a test whose process
 * reports a leak at exit or an error in the teardown.  Same test syntax,
 * same output format (including the "Synthesis:" line); each test runs in
 * a child process of its own, as in Criterion, and any non-zero exit of
 * that process fails the test.  The runner is crshim/runner.c.
 *
 * Supported: Test(suite, name, .init, .fini, .timeout), TestSuite(suite,
 * ...), cr_assert, cr_assert_{eq,neq,lt,leq,gt,geq}, cr_assert_{null,
 * not_null}, cr_assert_str_{eq,neq}, each with an optional printf message.
 */
#ifndef REKI_CRSHIM_CRITERION_H
#define REKI_CRSHIM_CRITERION_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct crs_opts {
    int crs_unused; /* keeps `{ .crs_unused = 0, __VA_ARGS__ }` valid when empty */
    void (*init)(void);
    void (*fini)(void);
    double timeout;
};

void crs_register_test(const char *suite, const char *name, void (*fn)(void),
                       const struct crs_opts *opts);
void crs_register_suite(const char *suite, const struct crs_opts *opts);
_Noreturn void crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define CRS_CAT_(a, b) a##b
#define CRS_CAT(a, b) CRS_CAT_(a, b)

#define Test(suite, name, ...)                                                               \
    static void suite##__##name##__impl(void);                                               \
    static const struct crs_opts suite##__##name##__opts = {.crs_unused = 0, __VA_ARGS__};   \
    __attribute__((constructor)) static void suite##__##name##__reg(void)                    \
    {                                                                                        \
        crs_register_test(#suite, #name, suite##__##name##__impl, &suite##__##name##__opts); \
    }                                                                                        \
    static void suite##__##name##__impl(void)

#define TestSuite(suite, ...)                                                           \
    static const struct crs_opts suite##__suite__opts = {.crs_unused = 0, __VA_ARGS__}; \
    __attribute__((constructor)) static void suite##__suite__reg(void)                  \
    {                                                                                   \
        crs_register_suite(#suite, &suite##__suite__opts);                              \
    }                                                                                   \
    extern int CRS_CAT(crs_suite_decl_, suite)

#define CRS_CHECK_(cond, text, ...)                              \
    do {                                                         \
        if (!(cond))                                             \
            crs_fail(__FILE__, __LINE__, text, " " __VA_ARGS__); \
    } while (0)

#define cr_assert(cond, ...) CRS_CHECK_((cond), #cond, __VA_ARGS__)
#define CRS_OP_(a, op, b, ...) CRS_CHECK_((a)op(b), "(" #a ") " #op " (" #b ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) CRS_OP_(a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) CRS_OP_(a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) CRS_OP_(a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) CRS_OP_(a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) CRS_OP_(a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) CRS_OP_(a, >=, b, __VA_ARGS__)
#define cr_assert_null(a, ...) CRS_CHECK_((a) == NULL, #a " is NULL", __VA_ARGS__)
#define cr_assert_not_null(a, ...) CRS_CHECK_((a) != NULL, #a " is not NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) \
    CRS_CHECK_(strcmp((a), (b)) == 0, "(" #a ") equals (" #b ")", __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) \
    CRS_CHECK_(strcmp((a), (b)) != 0, "(" #a ") differs from (" #b ")", __VA_ARGS__)

#endif
