//! The verdict's checks as a JUnit XML report, so that a CI system shows each assertion as a test case
//! and a failed one as a failure.

use std::fmt::Write as _;
use std::path::Path;

use quick_xml::escape::escape;

use crate::assertion::Check;

/// Writes `checks` as one test suite called `suite`, which took `seconds` when known.
pub fn write(
    path: &Path,
    suite: &str,
    seconds: Option<f64>,
    checks: &[Check],
) -> Result<(), String> {
    std::fs::write(path, render(suite, seconds, checks))
        .map_err(|error| format!("{}: {error}", path.display()))
}

fn render(suite: &str, seconds: Option<f64>, checks: &[Check]) -> String {
    let failures = checks.iter().filter(|check| !check.pass).count();
    let time = seconds.map_or_else(String::new, |seconds| format!(" time=\"{seconds:.3}\""));
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"replay\" tests=\"{}\" failures=\"{failures}\"{time}>",
        checks.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\"{time}>",
        escape(suite),
        checks.len()
    );
    for check in checks {
        let _ = write!(
            xml,
            "    <testcase classname=\"replay.assertions\" name=\"{}\"",
            escape(check.assertion.as_str())
        );
        if check.pass {
            let _ = writeln!(
                xml,
                "><system-out>{}</system-out></testcase>",
                escape(check.actual.as_str())
            );
        } else {
            let actual = escape(check.actual.as_str());
            let _ = writeln!(
                xml,
                "><failure type=\"assertion\" message=\"{actual}\">{} does not hold: {actual}</failure></testcase>",
                escape(check.assertion.as_str())
            );
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use quick_xml::events::Event;
    use quick_xml::{Reader, XmlVersion};

    use super::*;

    /// Each test case's name and its failure message, if any, as a CI system reads them.
    fn cases(xml: &str) -> Vec<(String, Option<String>)> {
        let mut reader = Reader::from_str(xml);
        let mut cases: Vec<(String, Option<String>)> = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(element) | Event::Empty(element) => {
                    let attribute = |name: &str| {
                        element.try_get_attribute(name).unwrap().map(|attribute| {
                            attribute
                                .normalized_value(XmlVersion::Implicit1_0)
                                .unwrap()
                                .into_owned()
                        })
                    };
                    match element.name().as_ref() {
                        "testcase" => cases.push((attribute("name").unwrap(), None)),
                        "failure" => cases.last_mut().unwrap().1 = attribute("message"),
                        _ => {}
                    }
                }
                Event::Eof => return cases,
                _ => {}
            }
        }
    }

    #[test]
    fn each_check_is_a_test_case_and_a_failed_one_a_failure() {
        let checks = [
            Check {
                assertion: "p99.ok<5ms".to_owned(),
                pass: false,
                actual: "p99.ok 7.250 ms".to_owned(),
            },
            Check {
                assertion: "ko=0".to_owned(),
                pass: true,
                actual: "ko 0".to_owned(),
            },
        ];
        let xml = render("stress test <local>", Some(45.0), &checks);
        assert_eq!(
            cases(&xml),
            [
                ("p99.ok<5ms".to_owned(), Some("p99.ok 7.250 ms".to_owned())),
                ("ko=0".to_owned(), None)
            ]
        );
        assert!(xml.contains("name=\"p99.ok&lt;5ms\""));
        assert!(
            xml.contains("<testsuites name=\"replay\" tests=\"2\" failures=\"1\" time=\"45.000\">")
        );
        assert!(xml.contains("name=\"stress test &lt;local&gt;\""));
        assert!(!render("suite", None, &checks).contains("time="));
    }
}
