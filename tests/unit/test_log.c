/* test_log.c - the logfmt values of the access log (nh_logfmt). */
#include "internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void plain_values_stay_bare(void **state)
{
    char out[64];
    assert_string_equal(nh_logfmt(out, sizeof out, "/a/b.txt?x"), "/a/b.txt?x");
    assert_string_equal(nh_logfmt(out, sizeof out, "ops.GET.a"), "ops.GET.a");
    assert_string_equal(nh_logfmt(out, sizeof out, "-"), "-");
}

static void special_values_are_quoted(void **state)
{
    char out[64];
    assert_string_equal(nh_logfmt(out, sizeof out, ""), "\"\"");
    assert_string_equal(nh_logfmt(out, sizeof out, "a b"), "\"a b\"");
    assert_string_equal(nh_logfmt(out, sizeof out, "/?q=1"), "\"/?q=1\"");
    assert_string_equal(nh_logfmt(out, sizeof out, "say \"hi\""), "\"say \\\"hi\\\"\"");
    assert_string_equal(nh_logfmt(out, sizeof out, "a\\b"), "\"a\\\\b\"");
}

static void long_values_are_cut_and_still_closed(void **state)
{
    char in[200], out[16];
    memset(in, 'x', sizeof in - 1);
    in[sizeof in - 1] = 0;
    assert_int_equal(strlen(nh_logfmt(out, sizeof out, in)), 15);   /* bare: cut */
    in[0] = ' ';
    nh_logfmt(out, sizeof out, in);
    assert_true(strlen(out) < sizeof out);
    assert_int_equal(out[0], '"');
    assert_int_equal(out[strlen(out) - 1], '"');
    memset(in, '"', sizeof in - 1);   /* every byte escaped: a quote is never left open */
    nh_logfmt(out, sizeof out, in);
    assert_true(strlen(out) < sizeof out);
    assert_int_equal(out[strlen(out) - 1], '"');
    assert_int_equal(out[strlen(out) - 2], '"');
    assert_int_equal(out[strlen(out) - 3], '\\');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_values_stay_bare),
        cmocka_unit_test(special_values_are_quoted),
        cmocka_unit_test(long_values_are_cut_and_still_closed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
