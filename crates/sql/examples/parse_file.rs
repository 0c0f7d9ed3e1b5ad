//! Parses statements separated by NUL lines from a file and reports the ones that fail
//! (a development aid for measuring the parser against ksqlDB's test corpus).
fn main() {
    let path = std::env::args().nth(1).expect("a file");
    let text = std::fs::read_to_string(path).expect("readable");
    let (mut ok, mut failed) = (0, 0);
    for stmt in text.split("\n\0\n") {
        match strata_sql::parse_statements(stmt) {
            Ok(_) => ok += 1,
            Err(e) => {
                failed += 1;
                println!("{e}\n    {stmt}");
            }
        }
    }
    println!("{ok} parsed, {failed} failed");
}
