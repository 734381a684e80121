//! Writes the metrics of a gate that has seen every kind of decision, and the counts they
//! must show, for `ci/metrics.sh` to check with real parsers:
//! `cargo run --example metrics -- OUT_DIR` writes `OUT_DIR/metrics.prom` (Prometheus text),
//! `OUT_DIR/metrics.om` (OpenMetrics) and `OUT_DIR/expected.json`.

#[path = "../tests/common/every_kind.rs"]
mod every_kind;

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: metrics OUT_DIR")?);
    std::fs::create_dir_all(&out)?;
    let work = tempfile::tempdir()?;
    let seen = every_kind::every_kind(work.path());
    std::fs::write(out.join("metrics.prom"), &seen.prometheus)?;
    std::fs::write(out.join("metrics.om"), &seen.openmetrics)?;
    let expected: Vec<_> = seen
        .expected
        .iter()
        .map(|(name, labels, value)| {
            serde_json::json!({ "name": name, "labels": labels, "value": value })
        })
        .collect();
    std::fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected)?,
    )?;
    Ok(())
}
