//! `report.html`: one self-contained page (inline SVG charts, inline CSS, nothing fetched) with the run's
//! tables and its charts over time.

use std::fmt::Write as _;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::metrics::MetricChart;
use crate::printer::{mebibytes, request_cells, request_rows, service_cells};
use crate::statistics::{Outcome, RequestName, Timeline};
use crate::summary::Summary;

/// The time series behind the charts, kept in `series.json` so the page can be rendered again later
/// (for instance once the stack's resource figures are known).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub timeline: Timeline,
    pub service_metrics: Vec<MetricChart>,
}

type Line = (String, Vec<(f64, f64)>);

pub fn render(summary: &Summary, series: &Series) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Stress test report</title>\
         <style>{STYLE}</style></head><body><h1>Stress test: {}</h1>",
        escape(&summary.base_url)
    );
    let verdict_class = if summary.verdict.pass { "pass" } else { "fail" };
    let _ = write!(
        page,
        "<p class=\"verdict {verdict_class}\">{}</p>",
        escape(&summary.verdict.line)
    );
    let _ = write!(
        page,
        "<p>Scale {} &middot; rate {} &middot; seed {} &middot; {:.1} s &middot; sessions: {} creation, {} valid search, {} invalid \
         search &middot; payloads {} &middot; terms {}</p>",
        summary.scale,
        summary.rate,
        summary.seed,
        summary.duration_seconds,
        summary.creation_sessions,
        summary.valid_search_sessions,
        summary.invalid_search_sessions,
        escape(&summary.payloads_file),
        escape(&summary.terms_file)
    );

    page.push_str(&requests_table(summary));
    page.push_str(&distribution_and_people(summary));
    if !summary.errors.is_empty() {
        page.push_str("<h2>Errors</h2><table><tr><th>error</th><th>count</th></tr>");
        for (message, count) in &summary.errors {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{count}</td></tr>",
                escape(message)
            );
        }
        page.push_str("</table>");
    }
    page.push_str(&stack_table(summary));

    let timeline = &series.timeline;
    let per_second = |values: &[u64]| {
        values
            .iter()
            .enumerate()
            .map(|(second, value)| (second as f64, *value as f64))
            .collect()
    };
    let per_second_f = |values: &[f64]| {
        values
            .iter()
            .enumerate()
            .map(|(second, value)| (second as f64, *value))
            .collect()
    };
    page.push_str("<h2>Over time</h2>");
    page.push_str(&line_chart(
        "Active users",
        "users",
        &[(
            "active users".to_owned(),
            per_second(&timeline.active_users),
        )],
    ));
    let by_name: Vec<Line> = RequestName::ALL
        .iter()
        .filter_map(|name| {
            timeline
                .requests_per_second
                .get(name.label())
                .map(|values| (name.label().to_owned(), per_second(values)))
        })
        .collect();
    page.push_str(&line_chart("Requests per second", "requests/s", &by_name));
    page.push_str(&line_chart(
        "Response time percentiles (OK requests)",
        "ms",
        &[
            ("p50".to_owned(), per_second_f(&timeline.p50_ms)),
            ("p95".to_owned(), per_second_f(&timeline.p95_ms)),
            ("p99".to_owned(), per_second_f(&timeline.p99_ms)),
            ("max".to_owned(), per_second_f(&timeline.max_ms)),
        ],
    ));
    page.push_str(&line_chart(
        "OK and KO per second",
        "requests/s",
        &[
            ("OK".to_owned(), per_second(&timeline.ok_per_second)),
            ("KO".to_owned(), per_second(&timeline.ko_per_second)),
        ],
    ));

    page.push_str("<h2>Service metrics</h2>");
    if series.service_metrics.is_empty() {
        page.push_str(
            "<p>No replica metrics were scraped (pass <code>--metrics URL</code> per replica).</p>",
        );
    }
    for chart in &series.service_metrics {
        let lines: Vec<Line> = chart
            .series
            .iter()
            .map(|series| (series.label.clone(), series.points.clone()))
            .collect();
        page.push_str(&line_chart(&chart.title, &chart.unit, &lines));
    }
    page.push_str("</body></html>\n");
    page
}

fn requests_table(summary: &Summary) -> String {
    let mut table = String::from(
        "<h2>Requests</h2><p>Response times in ms, exact, over all of a request's responses, over the OK ones \
         and over the KO ones.</p><table><tr><th>request</th><th>set</th><th>count</th><th>min</th><th>mean</th>\
         <th>p50</th><th>p75</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th><th>req/s</th></tr>",
    );
    for (name, outcome, stats) in request_rows(summary) {
        let shown = if outcome == Outcome::All { name } else { "" };
        table_row(
            &mut table,
            shown,
            &request_cells(stats, outcome, summary.duration_seconds),
        );
    }
    table.push_str("</table>");
    table
}

fn distribution_and_people(summary: &Summary) -> String {
    let all = summary.requests.get("all").cloned().unwrap_or_default();
    let optional =
        |count: Option<u64>| count.map_or_else(|| "?".to_owned(), |count| count.to_string());
    format!(
        "<h2>Response time distribution</h2><table><tr><th>t &lt; 800 ms</th><th>800 ms &le; t &lt; 1200 ms</th>\
         <th>t &ge; 1200 ms</th><th>failed</th></tr><tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <h2>People</h2><table><tr><th>created (201)</th><th>count before</th><th>count after</th><th>expected</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <p>Replay: CPU {:.1} s, peak RSS {}, injection lag p99 {:.1} ms, max {:.1} ms.</p>",
        all.under_800_ms,
        all.from_800_to_1200_ms,
        all.over_1200_ms,
        all.ko,
        summary.created_201,
        optional(summary.count_before),
        optional(summary.count_after),
        summary.expected_count,
        summary.replay_cpu_seconds,
        mebibytes(summary.replay_peak_rss_bytes),
        summary.injection_lag.p99_ms,
        summary.injection_lag.max_ms
    )
}

fn stack_table(summary: &Summary) -> String {
    let Some(stack) = &summary.stack else {
        return "<h2>Stack</h2><p>No resource figures for the stack's services.</p>".to_owned();
    };
    let mut table = String::from(
        "<h2>Stack</h2><table><tr><th>service</th><th>CPU s</th><th>CPU limit</th><th>peak memory</th>\
         <th>memory limit</th></tr>",
    );
    for (service, usage) in &stack.services {
        table_row(&mut table, service, &service_cells(usage));
    }
    table.push_str("</table>");
    table
}

/// A table row: the name, then the cells.
fn table_row(table: &mut String, name: &str, cells: &[String]) {
    let _ = write!(table, "<tr><td>{}</td>", escape(name));
    for cell in cells {
        let _ = write!(table, "<td>{}</td>", escape(cell));
    }
    table.push_str("</tr>");
}

/// An SVG line chart, one line per series, with a legend.
fn line_chart(title: &str, unit: &str, lines: &[Line]) -> String {
    let mut svg = String::new();
    let drawn = draw_line_chart(&mut svg, title, unit, lines);
    match drawn {
        Ok(()) => format!("<figure>{svg}</figure>"),
        Err(error) => format!(
            "<p>Chart {} could not be drawn: {}</p>",
            escape(title),
            escape(&error)
        ),
    }
}

fn draw_line_chart(
    svg: &mut String,
    title: &str,
    unit: &str,
    lines: &[Line],
) -> Result<(), String> {
    let points = || lines.iter().flat_map(|(_, points)| points.iter());
    let x_max = points().map(|point| point.0).fold(1.0, f64::max);
    let y_max = points()
        .map(|point| point.1)
        .filter(|value| value.is_finite())
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    let root = SVGBackend::with_string(svg, (1000, 320)).into_drawing_area();
    root.fill(&WHITE).map_err(|error| error.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|error| error.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .x_label_formatter(&compact_number)
        .y_label_formatter(&compact_number)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|error| error.to_string())?;
    for (index, (label, points)) in lines.iter().enumerate() {
        let color = PALETTE[index % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|error| error.to_string())?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(|error| error.to_string())?;
    root.present().map_err(|error| error.to_string())
}

/// Axis labels without trailing zeros: `700`, `2.5`, `0.25`.
fn compact_number(value: &f64) -> String {
    format!("{}", (value * 100.0).round() / 100.0)
}

/// Distinct colours that stay readable on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1060px}\
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.verdict{font-weight:bold;padding:8px;border-radius:4px}\
.pass{background:#e3f6e3}.fail{background:#fbe3e3}figure{margin:8px 0}";

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::assertion::defaults;
    use crate::metrics::MetricSeries;
    use crate::statistics::{ByOutcome, InjectionLag, RequestStats, ResponseTimes};
    use crate::summary::Verdict;

    /// A small run of three creations, all OK, judged by the default assertions.
    pub(crate) fn summary() -> Summary {
        let times = ResponseTimes {
            min_ms: 0.6,
            mean_ms: 1.5,
            std_dev_ms: 0.4,
            p50_ms: 1.2,
            p75_ms: 2.0,
            p95_ms: 4.1,
            p99_ms: 4.2,
            p999_ms: Some(4.2),
            max_ms: 4.2,
        };
        let stats = RequestStats {
            count: 3,
            ok: 3,
            under_800_ms: 3,
            requests_per_second: 1.0,
            times: ByOutcome {
                all: Some(times),
                ok: Some(times),
                ko: None,
            },
            ..RequestStats::default()
        };
        let requests = BTreeMap::from([
            ("criação".to_owned(), stats.clone()),
            ("all".to_owned(), stats),
        ]);
        let mut summary = Summary {
            base_url: "http://127.0.0.1:9999".to_owned(),
            payloads_file: "p.tsv".to_owned(),
            terms_file: "t.tsv".to_owned(),
            scale: 0.1,
            rate: 1.0,
            seed: 1,
            started_at_unix_seconds: 0.0,
            duration_seconds: 3.0,
            creation_sessions: 3,
            valid_search_sessions: 0,
            invalid_search_sessions: 0,
            verdict: Verdict::default(),
            requests,
            errors: BTreeMap::from([("criação: <timeout>".to_owned(), 1)]),
            created_201: 3,
            count_before: Some(0),
            count_after: Some(3),
            expected_count: 3,
            stack: None,
            replay_cpu_seconds: 0.5,
            replay_peak_rss_bytes: 10 << 20,
            injection_lag: InjectionLag::default(),
        };
        summary.judge(&defaults());
        summary
    }

    #[test]
    fn a_summary_written_before_rate_existed_reads_as_rate_one() {
        let mut earlier = serde_json::to_value(Summary {
            rate: 3.0,
            ..summary()
        })
        .unwrap();
        earlier.as_object_mut().unwrap().remove("rate");
        let read: Summary = serde_json::from_value(earlier).unwrap();
        assert_eq!(read, summary());
    }

    #[test]
    fn the_page_is_self_contained_with_tables_and_charts() {
        let series = Series {
            timeline: Timeline {
                active_users: vec![1, 2, 3],
                requests_per_second: BTreeMap::from([("criação".to_owned(), vec![1, 1, 1])]),
                ok_per_second: vec![1, 1, 1],
                ko_per_second: vec![0, 0, 0],
                p50_ms: vec![1.0, 1.5, 2.0],
                p95_ms: vec![2.0, 2.5, 3.0],
                p99_ms: vec![3.0, 3.5, 4.0],
                max_ms: vec![4.0, 4.5, 5.0],
            },
            service_metrics: vec![MetricChart {
                title: "http_requests_total".to_owned(),
                unit: "per second".to_owned(),
                series: vec![MetricSeries {
                    label: "127.0.0.1:8081 route=/pessoas".to_owned(),
                    points: vec![(1.0, 5.0), (2.0, 7.0)],
                }],
            }],
        };
        let page = render(&summary(), &series);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 5);
        assert!(page.contains("Active users") && page.contains("http_requests_total"));
        assert!(page.contains("criação: &lt;timeout&gt;"));
        assert!(page.contains("PASS: count 3 = expected 3"));
        assert!(
            !page.contains("src=") && !page.contains("<link") && !page.contains("<script"),
            "nothing is fetched"
        );
    }
}
