//! `--plot`: the run's latency curves as one SVG percentile-distribution plot, laid out like
//! HdrHistogram's own: x is the percentile on a log scale of 1/(1−p) (ticks 0 %, 90 %, 99 %,
//! 99.9 %, … up to the decade the run's sample count resolves), y the latency in milliseconds,
//! linear from 0. SVG is written by hand: a few dozen elements of text, no plotting crate needed.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::latency::{Curve, Style};
use crate::report::{group, Summary};

/// Canvas width and the plot area's margins, in SVG user units (px).
const WIDTH: f64 = 900.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 70.0;
const PLOT_HEIGHT: f64 = 380.0;
/// Below the plot: tick labels and the x-axis title, then one legend row per curve.
const BELOW: f64 = 70.0;
const LEGEND_ROW: f64 = 20.0;
/// Points sampled per decade of 1/(1−p).
const STEPS_PER_DECADE: u32 = 50;
/// Colours per request kind (`Kind as usize`), service times share their kind's.
const COLOURS: [&str; 5] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd"];
const LAG_COLOUR: &str = "#7f7f7f";

/// Decades of 1/(1−p) on the x axis: as many as `count` samples resolve (10^D ≥ count), from 2
/// (99 %) to 6 (99.9999 %).
pub fn decades(count: u64) -> u32 {
    let mut d = 0;
    while d < 6 && 10u64.pow(d) < count {
        d += 1;
    }
    d.max(2)
}

/// Label of the tick `i` decades in: `0%`, `90%`, `99%`, `99.9%`, ...
pub fn tick_label(i: u32) -> String {
    if i == 0 {
        return "0%".into();
    }
    let decimals = i.saturating_sub(2) as usize;
    format!("{:.*}%", decimals, 100.0 - 100.0 / 10f64.powi(i as i32))
}

/// X of a point `d` decades in, on a plot `decades` wide.
pub fn x_at(d: f64, decades: u32) -> f64 {
    LEFT + d / f64::from(decades) * (WIDTH - LEFT - RIGHT)
}

/// Y of `ms` on an axis from 0 to `top`.
fn y_at(ms: f64, top: f64) -> f64 {
    TOP + PLOT_HEIGHT * (1.0 - ms / top)
}

/// A round step for about five ticks up to `max` (1, 2 or 5 × 10^k) and the axis top (a
/// multiple of the step at or above `max`).
pub fn y_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 0.001 };
    let raw = max / 5.0;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * 0.999_999)
        .unwrap_or(10.0 * mag);
    (step, (max / step - 1e-9).ceil().max(1.0) * step)
}

/// The curve's points: (decades in, latency in ms), at q = 1 − 10^−d for `STEPS_PER_DECADE`
/// steps per decade up to `decades`.
pub fn points(h: &Histogram<u64>, decades: u32) -> Vec<(f64, f64)> {
    (0..=decades * STEPS_PER_DECADE)
        .map(|j| {
            let d = f64::from(j) / f64::from(STEPS_PER_DECADE);
            let q = 1.0 - 10f64.powf(-d);
            (d, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

/// Title and subtitle for a run's plot.
pub fn titles(s: &Summary) -> (String, String) {
    let i = &s.info;
    let mode = match i.rate {
        Some(r) => format!("open loop at {} req/s", group(r.round() as u64)),
        None => "closed loop".into(),
    };
    let title = format!(
        "loadtest {}: {} connections × pipeline {}, {mode}, {:.1} s",
        i.scenario,
        i.connections,
        i.pipeline,
        s.elapsed.as_secs_f64()
    );
    let mut sub = format!(
        "{}: {} answered ({}/s)",
        i.url,
        group(s.stats.responses()),
        group(s.throughput().round() as u64)
    );
    let finals = s.stats.completed + s.stats.failed + s.stats.timed_out;
    if finals > 0 {
        let _ = write!(
            sub,
            ", {} final ({}/s)",
            group(finals),
            group(s.completed_per_s().round() as u64)
        );
    }
    let _ = write!(sub, "; {} generator thread(s)", i.threads);
    (title, sub)
}

/// The SVG document.
pub fn svg(title: &str, subtitle: &str, curves: &[Curve<'_>]) -> String {
    let count = curves.iter().map(|c| c.hist.len()).max().unwrap_or(0);
    let dec = decades(count);
    let max_ms = curves.iter().map(|c| c.hist.max()).max().unwrap_or(0) as f64 / 1000.0;
    let (step, top) = y_axis(max_ms);
    let height = TOP + PLOT_HEIGHT + BELOW + LEGEND_ROW * curves.len() as f64 + 10.0;
    let (x0, x1, y0, y1) = (
        x_at(0.0, dec),
        x_at(f64::from(dec), dec),
        TOP,
        TOP + PLOT_HEIGHT,
    );
    let mut o = String::new();
    let _ = writeln!(o, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, "<title>{}</title>", esc(title));
    let _ = writeln!(
        o,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        esc(title)
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="44" text-anchor="middle" fill="#444">{}</text>"##,
        WIDTH / 2.0,
        esc(subtitle)
    );

    // Grid and ticks.
    let _ = writeln!(o, r##"<g stroke="#ddd" stroke-width="1">"##);
    for i in 0..=dec {
        let x = x_at(f64::from(i), dec);
        let _ = writeln!(o, r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}"/>"#);
    }
    let n_steps = (top / step).round() as u32;
    for i in 0..=n_steps {
        let y = y_at(f64::from(i) * step, top);
        let _ = writeln!(o, r#"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/>"#);
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(o, r#"<g text-anchor="middle">"#);
    for i in 0..=dec {
        let _ = writeln!(
            o,
            r#"<text class="xtick" x="{:.1}" y="{}">{}</text>"#,
            x_at(f64::from(i), dec),
            y1 + 18.0,
            tick_label(i)
        );
    }
    let _ = writeln!(o, "</g>");
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let _ = writeln!(o, r#"<g text-anchor="end">"#);
    for i in 0..=n_steps {
        let ms = f64::from(i) * step;
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{:.1}">{ms:.decimals$}</text>"#,
            x0 - 6.0,
            y_at(ms, top) + 4.0
        );
    }
    let _ = writeln!(o, "</g>");
    let _ = writeln!(
        o,
        r#"<rect x="{x0}" y="{y0}" width="{:.1}" height="{PLOT_HEIGHT}" fill="none" stroke="black"/>"#,
        x1 - x0
    );
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{}" text-anchor="middle">percentile (log scale of 1/(1−p))</text>"#,
        (x0 + x1) / 2.0,
        y1 + 40.0
    );
    let _ = writeln!(
        o,
        r#"<text x="22" y="{:.1}" text-anchor="middle" transform="rotate(-90 22 {:.1})">latency (ms)</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0
    );

    // Curves, then the legend below the plot (curves rise to the right and may fill any corner).
    for c in curves {
        let (colour, dash) = look(c.style);
        let pts: Vec<String> = points(c.hist, dec)
            .into_iter()
            .map(|(d, ms)| format!("{:.1},{:.1}", x_at(d, dec), y_at(ms, top)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline class="curve" data-name="{}" fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            esc(&c.name),
            pts.join(" ")
        );
    }
    for (n, c) in curves.iter().enumerate() {
        let (colour, dash) = look(c.style);
        let y = y1 + BELOW + LEGEND_ROW * n as f64;
        let h = c.hist;
        let ms = |q: f64| format!("{:.3}", h.value_at_quantile(q) as f64 / 1000.0);
        let stats = format!(
            "p50 {}, p99 {}, p99.9 {}, max {:.3} ms; {} values",
            ms(0.5),
            ms(0.99),
            ms(0.999),
            h.max() as f64 / 1000.0,
            group(h.len())
        );
        let _ = writeln!(
            o,
            r#"<line x1="{x0}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="{colour}" stroke-width="2"{dash}/>"#,
            y - 4.0,
            x0 + 30.0,
            y - 4.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{}" y="{y:.1}">{} — {}</text>"#,
            x0 + 38.0,
            esc(&c.label),
            esc(&stats)
        );
    }
    let _ = writeln!(o, "</svg>");
    o
}

/// Colour and `stroke-dasharray` attribute of a style.
fn look(style: Style) -> (&'static str, &'static str) {
    match style {
        Style::Latency(k) => (COLOURS[k as usize], ""),
        Style::Service(k) => (COLOURS[k as usize], r#" stroke-dasharray="6 4""#),
        Style::Lag => (LAG_COLOUR, r#" stroke-dasharray="2 3""#),
    }
}

/// Text escaped for XML content and attribute values.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            _ => o.push(c),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Kind;

    /// A minimal well-formedness check: every tag closes in order, attribute values are quoted,
    /// `&` only starts a known entity, `<` only starts markup, one root element.
    fn check_xml(s: &str) -> Result<usize, String> {
        let mut stack: Vec<String> = Vec::new();
        let (mut rest, mut elements, mut roots) = (s, 0, 0);
        let text_ok = |t: &str| -> Result<(), String> {
            let mut t = t;
            while let Some(i) = t.find('&') {
                let end = t[i..].find(';').ok_or(format!("bare & in {t:?}"))?;
                let ent = &t[i + 1..i + end];
                let known = ["amp", "lt", "gt", "quot", "apos"].contains(&ent)
                    || (ent.starts_with('#') && ent.len() > 1);
                if !known {
                    return Err(format!("unknown entity &{ent};"));
                }
                t = &t[i + end + 1..];
            }
            Ok(())
        };
        while let Some(i) = rest.find('<') {
            text_ok(&rest[..i])?;
            if stack.is_empty() && !rest[..i].trim().is_empty() {
                return Err(format!("text outside the root: {:?}", &rest[..i]));
            }
            rest = &rest[i..];
            if let Some(r) = rest.strip_prefix("<?") {
                let end = r.find("?>").ok_or("open <?")?;
                rest = &r[end + 2..];
                continue;
            }
            let end = rest.find('>').ok_or("open tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
                if open != name.trim() {
                    return Err(format!("<{open}> closed by </{name}>"));
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(format!("bad tag name in <{tag}>"));
            }
            // Attributes: name="value" pairs, values without < and with known entities.
            let mut attrs = tag[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("unquoted attribute in <{tag}>"))?;
                let aname = attrs[..eq].trim();
                if aname.is_empty() || aname.contains(char::is_whitespace) {
                    return Err(format!("bad attribute name {aname:?}"));
                }
                let v = &attrs[eq + 2..];
                let close = v.find('"').ok_or("open attribute value")?;
                if v[..close].contains('<') {
                    return Err("< in an attribute".into());
                }
                text_ok(&v[..close])?;
                attrs = v[close + 1..].trim_start();
            }
            elements += 1;
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        text_ok(rest)?;
        match (stack.is_empty(), roots, rest.trim().is_empty()) {
            (true, 1, true) => Ok(elements),
            _ => Err(format!("unclosed {stack:?}, {roots} roots, tail {rest:?}")),
        }
    }

    #[test]
    fn the_checker_catches_broken_xml() {
        assert!(check_xml("<a><b/></a>").is_ok());
        for bad in [
            "<a><b></a>",
            "<a>x & y</a>",
            "<a x=1/>",
            "<a/><b/>",
            "<a>",
            "<a>&foo;</a>",
        ] {
            assert!(check_xml(bad).is_err(), "{bad}");
        }
    }

    fn histogram(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn ticks_and_axes_for_known_inputs() {
        assert_eq!(decades(0), 2);
        assert_eq!(decades(100), 2);
        assert_eq!(decades(101), 3);
        assert_eq!(decades(1_000), 3);
        assert_eq!(decades(250_000), 6);
        assert_eq!(decades(u64::MAX), 6);
        let labels: Vec<String> = (0..=5).map(tick_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
        // Ticks evenly spaced over the plot's width, the first at its left edge.
        assert_eq!(x_at(0.0, 5), LEFT);
        assert_eq!(x_at(5.0, 5), WIDTH - RIGHT);
        let w = (WIDTH - LEFT - RIGHT) / 5.0;
        assert!((x_at(3.0, 5) - (LEFT + 3.0 * w)).abs() < 1e-9);
        // Where 99.9 % lands follows from 1/(1-p) = 1000, three decades in.
        assert!((-(1.0f64 - 0.999).log10() - 3.0).abs() < 1e-9);
        assert_eq!(y_axis(9.3), (2.0, 10.0));
        assert_eq!(y_axis(10.0), (2.0, 10.0));
        assert_eq!(y_axis(0.42), (0.1, 0.5));
        assert_eq!(y_axis(1234.0), (500.0, 1500.0));
        assert!((y_axis(0.0).1 - 0.001).abs() < 1e-12);
    }

    #[test]
    fn curves_are_monotone_and_end_at_the_max() {
        let h = histogram((1..=5_000).chain([80_000, 2_000_000]));
        let dec = decades(h.len());
        assert_eq!(dec, 4);
        let pts = points(&h, dec);
        assert_eq!(pts.len(), 4 * STEPS_PER_DECADE as usize + 1);
        assert_eq!(pts[0], (0.0, 0.001), "0 % is the smallest value");
        for w in pts.windows(2) {
            assert!(w[1].0 > w[0].0 && w[1].1 >= w[0].1, "{w:?}");
        }
        let (d, ms) = *pts.last().unwrap();
        assert_eq!(d, 4.0);
        assert!(
            (ms - 2000.0).abs() < 2.0,
            "the 1 - 10^-4 quantile of 5,002 is the max: {ms}"
        );
        // The median: 50 % is 0.301 decades in.
        let mid = pts.iter().find(|p| p.0 >= 0.3).unwrap();
        assert!((2.4..2.6).contains(&mid.1), "{mid:?}");
    }

    #[test]
    fn svg_is_well_formed_with_one_curve_each_and_escaped_text() {
        let a = histogram(1..=1_000);
        let b = histogram((1..=1_000).map(|v| v * 7));
        let lag = histogram([5, 6, 7]);
        let curves = [
            Curve {
                name: "submit".into(),
                label: "submit <x> & \"y\"".into(),
                style: Style::Latency(Kind::Submit),
                hist: &a,
            },
            Curve {
                name: "submit-service".into(),
                label: "submit service".into(),
                style: Style::Service(Kind::Submit),
                hist: &b,
            },
            Curve {
                name: "send-lag".into(),
                label: "send lag".into(),
                style: Style::Lag,
                hist: &lag,
            },
        ];
        let s = svg("t & <title>", "http://h/?a=1&b=2", &curves);
        let elements = check_xml(&s).unwrap_or_else(|e| panic!("{e}\n{s}"));
        assert!(elements > 20);
        assert_eq!(s.matches("class=\"curve\"").count(), 3);
        assert!(s.contains("t &amp; &lt;title&gt;") && s.contains("a=1&amp;b=2"));
        assert!(s.contains(">latency (ms)<") && s.contains(">percentile (log scale"));
        for label in ["0%", "90%", "99%", "99.9%"] {
            assert!(s.contains(&format!(">{label}</text>")), "tick {label}");
        }
        assert!(!s.contains(">99.99%<"), "1,000 values resolve 3 decades");
        // y axis up to the largest max (7 ms), in 2 ms steps, to 8.
        assert!(s.contains(">8</text>") && !s.contains(">10</text>"), "{s}");
        assert!(s.contains("stroke-dasharray=\"6 4\""));
    }

    #[test]
    fn empty_plot_is_still_a_document() {
        check_xml(&svg("nothing", "", &[])).unwrap();
    }
}
