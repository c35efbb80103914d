/* test_metrics.c - unit tests of the request counters and their Prometheus
 * text (no connection: the NATS lines then say 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("line \"%s\" not in:\n%s", line, text);
}

static void counts_render_exactly(void **state)
{
    natshttp_metrics *m = NULL;
    assert_int_equal(natshttp_metrics_new(&m, NULL), NATSHTTP_OK);
    for (int i = 0; i < 3; i++)
        nh_metrics_begin(m);
    nh_metrics_bytes(m, 10, 1000);
    nh_metrics_end(m, 200, 4000, false);        /* 4 ms: first bucket */
    nh_metrics_end(m, 404, 2000000, false);     /* 2 s: the 2.5 s bucket */
    nh_metrics_bytes(m, 0, 24);
    char *text = natshttp_metrics_render(m);
    assert_non_null(text);
    assert_line(text, "natshttp_requests_total{code=\"200\"} 1");
    assert_line(text, "natshttp_requests_total{code=\"404\"} 1");
    assert_null(strstr(text, "code=\"500\""));
    assert_line(text, "natshttp_request_body_bytes_total 10");
    assert_line(text, "natshttp_response_body_bytes_total 1024");
    assert_line(text, "natshttp_requests_in_flight 1");
    assert_line(text, "natshttp_transfers_aborted_total 0");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"0.005\"} 1");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"1\"} 1");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"2.5\"} 2");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"+Inf\"} 2");
    assert_line(text, "natshttp_request_duration_seconds_sum 2.004000");
    assert_line(text, "natshttp_request_duration_seconds_count 2");
    assert_line(text, "natshttp_nats_reconnects_total 0");
    assert_line(text, "natshttp_nats_connected 0");
    assert_line(text, "# TYPE natshttp_request_duration_seconds histogram");
    free(text);

    nh_metrics_totals t;
    nh_metrics_totals_get(m, &t);
    assert_int_equal(t.requests, 2);
    assert_int_equal(t.errors, 0);
    assert_int_equal(t.duration_us, 2004000);
    natshttp_metrics_free(m);
}

static void errors_and_aborts(void **state)
{
    natshttp_metrics *m = NULL;
    assert_int_equal(natshttp_metrics_new(&m, NULL), NATSHTTP_OK);
    nh_metrics_begin(m);
    nh_metrics_end(m, 200, 1000, true);         /* broke off after the head */
    nh_metrics_begin(m);
    nh_metrics_end(m, 503, 1000, false);
    nh_metrics_begin(m);
    nh_metrics_end(m, 0, 400000000, false);     /* no status; beyond the last bucket */
    nh_metrics_begin(m);
    nh_metrics_end(m, 499, 1000, false);        /* the client left: not our error */
    char *text = natshttp_metrics_render(m);
    assert_non_null(text);
    assert_line(text, "natshttp_requests_total{code=\"0\"} 1");
    assert_line(text, "natshttp_requests_total{code=\"200\"} 1");
    assert_line(text, "natshttp_requests_total{code=\"499\"} 1");
    assert_line(text, "natshttp_requests_total{code=\"503\"} 1");
    assert_line(text, "natshttp_transfers_aborted_total 1");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"300\"} 3");
    assert_line(text, "natshttp_request_duration_seconds_bucket{le=\"+Inf\"} 4");
    assert_line(text, "natshttp_requests_in_flight 0");
    free(text);
    nh_metrics_totals t;
    nh_metrics_totals_get(m, &t);
    assert_int_equal(t.requests, 4);
    assert_int_equal(t.errors, 3);
    assert_int_equal(t.last_error_status, 0);
    assert_false(t.last_error_aborted);
    natshttp_metrics_free(m);
    /* NULL is a no-op everywhere */
    nh_metrics_begin(NULL);
    nh_metrics_bytes(NULL, 1, 1);
    nh_metrics_end(NULL, 200, 1, false);
    natshttp_metrics_free(NULL);
    assert_null(natshttp_metrics_render(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_render_exactly),
        cmocka_unit_test(errors_and_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
