//! The tests' own Prometheus text-format parser (tests/common), on text written by hand: the
//! other tests trust it to read the exporter's output.

mod common;

use common::{Kind, parse};

const TEXT: &str = r#"# HELP db_connection_total_connected Connections open.
# TYPE db_connection_total_connected gauge
db_connection_total_connected{inet_server_addr="10.0.0.1",path="/services/{id}",method="GET"} 3
db_connection_total_connected{inet_server_addr="10.0.0.2",path="a\\b \"q\" x,y=z\n",method="POST"} 0
# HELP db_errors_total Errors.
# TYPE db_errors_total counter
db_errors_total{reason="refused"} 7 1700000000000
# HELP db_open_seconds Open time.
# TYPE db_open_seconds histogram
db_open_seconds_bucket{bind="default",le="0.005"} 1
db_open_seconds_bucket{bind="default",le="+Inf"} 4
db_open_seconds_sum{bind="default"} 0.25
db_open_seconds_count{bind="default"} 4
db_open_seconds_bucket{bind="bulk",le="+Inf"} 0
db_open_seconds_sum{bind="bulk"} 0
db_open_seconds_count{bind="bulk"} 0
"#;

#[test]
fn parses_labels_with_braces_escapes_and_histograms() {
    let p = parse(TEXT);
    assert_eq!(
        p.names(),
        [
            "db_connection_total_connected",
            "db_errors_total",
            "db_open_seconds"
        ]
    );
    let connected = &p.families["db_connection_total_connected"];
    assert_eq!(connected.kind, Kind::Gauge);
    assert_eq!(connected.help, "Connections open.");
    let labels = [
        ("inet_server_addr", "10.0.0.1"),
        ("method", "GET"),
        ("path", "/services/{id}"),
    ];
    assert_eq!(p.gauge("db_connection_total_connected", &labels), Some(3.0));
    let odd = [
        ("inet_server_addr", "10.0.0.2"),
        ("method", "POST"),
        ("path", "a\\b \"q\" x,y=z\n"),
    ];
    assert_eq!(p.gauge("db_connection_total_connected", &odd), Some(0.0));
    assert_eq!(p.gauge_total("db_connection_total_connected"), 3.0);
    assert_eq!(
        p.counter("db_errors_total", &[("reason", "refused")]),
        Some(7.0)
    );
    assert_eq!(p.counter("db_errors_total", &[("reason", "auth")]), None);
    assert_eq!(
        p.gauge("db_no_such_family", &[]),
        None,
        "absent, not a panic"
    );
    let default = [("bind", "default")];
    assert_eq!(
        p.buckets("db_open_seconds", &default),
        Some(vec![(0.005, 1.0), (f64::INFINITY, 4.0)])
    );
    assert_eq!(p.hist_sum("db_open_seconds", &default), Some(0.25));
    assert_eq!(p.hist_count("db_open_seconds", &default), Some(4.0));
    assert_eq!(
        p.hist_count("db_open_seconds", &[("bind", "bulk")]),
        Some(0.0)
    );
    assert_eq!(p.label_sets("db_open_seconds").len(), 2);
}

#[test]
#[should_panic(expected = "unterminated value of label")]
fn refuses_an_unterminated_label_value() {
    parse("# TYPE x gauge\nx{a=\"b} 1\n");
}

#[test]
#[should_panic(expected = "bad value")]
fn refuses_a_bad_value() {
    parse("# TYPE x gauge\nx{a=\"b\"} one\n");
}
