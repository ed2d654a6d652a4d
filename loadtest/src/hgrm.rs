//! `--hgrm`: HdrHistogram's percentile-distribution text (`.hgrm`), the format of Java's
//! `Histogram.outputPercentileDistribution(out, 5, 1000.0)` that HdrHistogram's online plotter
//! (hdrhistogram.github.io/HdrHistogram/plotFiles.html) and wrk2 read: values in milliseconds
//! (ours are recorded in microseconds), the rows of the percentile iterator at 5 ticks per half
//! distance, and the `#[Mean ...]` footer. The `hdrhistogram` crate has the iterator but no text
//! writer (only the binary V2 serialization, behind a feature we leave off), so it is here.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

/// Microseconds per output unit (milliseconds).
const SCALE: f64 = 1000.0;
/// Percentile steps per half distance to 100 %, as HdrHistogram's tools use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The `.hgrm` text of `h` (microseconds in, milliseconds out).
pub fn text(h: &Histogram<u64>) -> String {
    use std::fmt::Write;
    let d = usize::from(h.sigfig());
    let mut o = String::new();
    let _ = write!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / SCALE;
        let q = v.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                o,
                "{value:>12.d$} {q:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(o, "{value:>12.d$} {q:>2.12} {total:>10}");
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:>12.d$}, StdDeviation   = {:>12.d$}]",
        h.mean() / SCALE,
        h.stdev() / SCALE
    );
    let _ = writeln!(
        o,
        "#[Max     = {:>12.d$}, Total count    = {:>12}]",
        h.max() as f64 / SCALE,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    o
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits (private in the crate): the
/// power of two that resolves `2 × 10^sigfig` values one unit apart.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// Where `--hgrm ARG` writes the curves `names`: a directory (`ARG` exists as one or ends in
/// `/`) gets `NAME.hgrm` each; a file name is used as given for a run with one curve, and with
/// several gets each curve's name before its extension (`run.hgrm` → `run.submit.hgrm`,
/// `run.e2e.hgrm`; `.hgrm` is added when `ARG` has no extension).
pub fn paths(arg: &Path, is_dir: bool, names: &[&str]) -> Vec<PathBuf> {
    if is_dir || arg.as_os_str().to_string_lossy().ends_with('/') {
        return names
            .iter()
            .map(|n| arg.join(format!("{n}.hgrm")))
            .collect();
    }
    if names.len() == 1 {
        return vec![arg.to_path_buf()];
    }
    let ext = arg
        .extension()
        .map_or("hgrm".into(), |e| e.to_string_lossy());
    let stem = match arg.extension() {
        Some(_) => arg.with_extension(""),
        None => arg.to_path_buf(),
    };
    names
        .iter()
        .map(|n| {
            let mut s = stem.clone().into_os_string();
            s.push(format!(".{n}.{ext}"));
            PathBuf::from(s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed table row: value (ms), percentile, total count, 1/(1-p) (none on the last).
    type Row = (f64, f64, u64, Option<f64>);

    /// Reads `.hgrm` text back as HdrHistogram's plotter does; checks the layout on the way.
    fn parse(text: &str) -> (Vec<Row>, Vec<(String, String)>) {
        let mut lines = text.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""), "a blank line after the header");
        let (mut rows, mut footer) = (Vec::new(), Vec::new());
        for line in lines {
            if let Some(f) = line.strip_prefix("#[") {
                for pair in f.trim_end_matches(']').split(',') {
                    let (k, v) = pair.split_once('=').unwrap();
                    footer.push((k.trim().to_string(), v.trim().to_string()));
                }
                continue;
            }
            assert!(footer.is_empty(), "a row after the footer: {line}");
            let c: Vec<&str> = line.split_whitespace().collect();
            assert!(c.len() == 4 || c.len() == 3, "{line}");
            rows.push((
                c[0].parse().unwrap(),
                c[1].parse().unwrap(),
                c[2].parse().unwrap(),
                c.get(3).map(|x| x.parse().unwrap()),
            ));
        }
        (rows, footer)
    }

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn parses_back_monotone_to_the_recorded_count() {
        // A long tail: 1..=10,000 us plus a few slow ones.
        let h = histogram((1..=10_000).chain([50_000, 120_000, 2_000_000]));
        let (rows, footer) = parse(&text(&h));
        assert!(rows.len() > 50, "{} rows", rows.len());
        for w in rows.windows(2) {
            assert!(w[1].0 >= w[0].0, "values rise: {w:?}");
            assert!(w[1].1 > w[0].1, "percentiles rise: {w:?}");
            assert!(w[1].2 >= w[0].2, "counts rise: {w:?}");
        }
        for r in &rows[..rows.len() - 1] {
            let inv = r.3.expect("every row but the last has 1/(1-p)");
            assert!(
                (inv - 1.0 / (1.0 - r.1)).abs() < 0.01 * inv.max(1.0),
                "{r:?}"
            );
        }
        let last = rows.last().unwrap();
        assert_eq!((last.1, last.2, last.3), (1.0, h.len(), None));
        assert!((last.0 - 2000.0).abs() < 2.0, "max in ms: {last:?}");
        let get = |k: &str| footer.iter().find(|(a, _)| a == k).unwrap().1.clone();
        assert_eq!(get("Total count"), h.len().to_string());
        let mean: f64 = get("Mean").parse().unwrap();
        assert!((mean - h.mean() / 1000.0).abs() < 0.001, "{mean}");
        assert!(get("StdDeviation").parse::<f64>().unwrap() > 0.0);
        assert_eq!(get("SubBuckets"), "2048");
    }

    #[test]
    fn matches_hdrhistograms_layout() {
        // Java's output for one value of 1 ms (1,000 us), 3 digits, scaled by 1000: columns
        // `%12.3f %2.12f %10d %14.2f`, the last row without the fourth.
        let t = text(&histogram([1000]));
        let mut lines = t.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        lines.next();
        assert_eq!(
            lines.next(),
            Some("       1.000 0.000000000000          1           1.00")
        );
        assert_eq!(lines.next(), Some("       1.000 1.000000000000          1"));
        assert_eq!(
            lines.next(),
            Some("#[Mean    =        1.000, StdDeviation   =        0.000]")
        );
        assert_eq!(
            lines.next(),
            Some("#[Max     =        1.000, Total count    =            1]")
        );
    }

    #[test]
    fn names_files_per_curve() {
        let p = |arg: &str, dir: bool, names: &[&str]| -> Vec<String> {
            paths(Path::new(arg), dir, names)
                .into_iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(p("out/run.hgrm", false, &["submit"]), ["out/run.hgrm"]);
        assert_eq!(
            p("out/run.hgrm", false, &["submit", "e2e"]),
            ["out/run.submit.hgrm", "out/run.e2e.hgrm"]
        );
        assert_eq!(p("run", false, &["a", "b"]), ["run.a.hgrm", "run.b.hgrm"]);
        assert_eq!(p("out/", false, &["a"]), ["out/a.hgrm"]);
        assert_eq!(p("out", true, &["a", "b"]), ["out/a.hgrm", "out/b.hgrm"]);
    }
}
