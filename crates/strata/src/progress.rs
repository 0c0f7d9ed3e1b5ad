//! Progress bars for the CLI's long operations (producing a file, consuming to the end, a
//! reassignment). They are drawn on stderr and only when it is a terminal: piped or captured,
//! the commands print exactly what they printed before.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

/// What a bar counts.
#[derive(Clone, Copy)]
pub enum Unit {
    Bytes,
    Records,
}

/// A bar of `total` units (a spinner with a count when the total is unknown), hidden unless
/// stderr is a terminal and, when `needs_quiet_stdout`, stdout is not one (records printed on
/// the same screen would be torn by the redraws).
pub fn bar(total: Option<u64>, unit: Unit, message: &str, needs_quiet_stdout: bool) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::hidden()),
        None => ProgressBar::hidden(),
    };
    let template = match (total.is_some(), unit) {
        (true, Unit::Bytes) => {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
        }
        (true, Unit::Records) => {
            "{msg} [{bar:30}] {human_pos}/{human_len} records {rate} eta {eta}"
        }
        (false, Unit::Bytes) => "{spinner} {msg} {bytes} {binary_bytes_per_sec}",
        (false, Unit::Records) => "{spinner} {msg} {human_pos} records {rate}",
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            // Whole records per second (indicatif's {per_sec} prints four decimals).
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    // Gone from the screen when the operation ends, however it ends.
    let bar = bar.with_finish(ProgressFinish::AndClear);
    let shown =
        std::io::stderr().is_terminal() && !(needs_quiet_stdout && std::io::stdout().is_terminal());
    if shown {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.tick();
    }
    bar
}
