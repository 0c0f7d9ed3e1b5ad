//! Every statement of ksqlDB's own query-validation tests (QTT and RQTT) that ksqlDB
//! accepts must parse. The corpus is read in place from `../shared/conformance/ksql-qtt`
//! (never copied into the repository); where it is absent the test says so and passes.

mod common;

use common::{corpus, strip_comments};

#[test]
fn every_statement_ksqldb_accepts_parses() {
    let Some(dir) = corpus() else {
        eprintln!("ksql-qtt corpus not found next to the repository: skipped");
        return;
    };
    let mut parsed = 0;
    let mut failures = Vec::new();
    for suite in ["query-validation-tests", "rest-query-validation-tests"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(suite))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let text = strip_comments(&std::fs::read_to_string(&file).unwrap());
            let doc: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for case in doc["tests"].as_array().into_iter().flatten() {
                let negative =
                    case.get("expectedException").is_some() || case.get("expectedError").is_some();
                if negative {
                    continue;
                }
                for stmt in case["statements"].as_array().into_iter().flatten() {
                    let stmt = stmt.as_str().unwrap().replace("{FORMAT}", "JSON");
                    match strata_sql::parse_statements(&stmt) {
                        Ok(_) => parsed += 1,
                        Err(e) => failures.push(format!("{}: {e}\n    {stmt}", file.display())),
                    }
                }
            }
        }
    }
    assert!(parsed > 3000, "only {parsed} statements found");
    assert!(
        failures.is_empty(),
        "{} of {} statements failed:\n{}",
        failures.len(),
        parsed + failures.len(),
        failures.join("\n")
    );
}
